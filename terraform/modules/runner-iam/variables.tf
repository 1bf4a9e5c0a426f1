variable "name_prefix" {
  type        = string
  description = "Prefix of the IAM policy names."
  default     = "remote-container-hooks"
  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.name_prefix))
    error_message = "name_prefix must be 1-64 characters of A-Z a-z 0-9 + = , . @ _ -."
  }
}

variable "region" {
  type        = string
  description = "Region of the instances or the pool (the hook's provider.region)."
}

variable "account_id" {
  type        = string
  description = "Account of the instances or the pool. null: the account of the Terraform credentials."
  default     = null
}

variable "create_ec2_policy" {
  type        = bool
  description = "Create the policy for kind: ec2 (a new instance per job)."
  default     = false
}

variable "create_pool_policy" {
  type        = bool
  description = "Create the policy for kind: ec2-pool (leases from an Auto Scaling group)."
  default     = false
}

variable "image_ids" {
  type        = list(string)
  description = "kind: ec2: the AMIs instances may be launched from (the launch template's or provider.imageId)."
  default     = []
}

variable "subnet_ids" {
  type        = list(string)
  description = "kind: ec2: the subnets instances may be launched into (provider.subnetIds, or the template's or default subnet)."
  default     = []
}

variable "security_group_ids" {
  type        = list(string)
  description = "kind: ec2: the security groups instances may get (provider.securityGroupIds or the template's)."
  default     = []
}

variable "launch_template_ids" {
  type        = list(string)
  description = "kind: ec2: the launch templates instances may be launched from (provider.launchTemplate)."
  default     = []
}

variable "scope_tags" {
  type        = map(string)
  description = "kind: ec2: tag pairs every instance of this deployment carries; put the same pairs in the hook's provider.tags. Launches must set them, and only instances that carry them may be ended or marked by reap, so runner hosts of another deployment (another policy, other pairs) cannot end this one's instances. Empty: any instance with the hook's owner tag in the account and region."
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.scope_tags : length(k) >= 1 && length(k) <= 128 && !startswith(k, "aws:") && !startswith(k, "remote-container-hooks:") && length(v) >= 1 && length(v) <= 256])
    error_message = "scope_tags keys must be 1-128 characters, not starting with aws: or remote-container-hooks: (the hook's own tags), and values 1-256 characters (the hook sends no empty tag value)."
  }
}

variable "instance_types" {
  type        = list(string)
  description = "kind: ec2: the instance types launches may use (provider.instanceTypes, or the launch template's). Empty: any type."
  default     = []
}

variable "require_imdsv2" {
  type        = bool
  description = "kind: ec2: deny a launch whose instance would not require IMDSv2 tokens, or whose PUT response hop limit is over 1 or not stated (the hook sets both when the launch template states no metadata options; the ephemeral module's template sets both)."
  default     = true
}

variable "kms_key_arns" {
  type        = list(string)
  description = "Customer-managed KMS keys that encrypt the instances' volumes (kind ec2: the launch template's or the account's default EBS key; kind ec2-pool: the pool's kms_key_arn, for starting stopped members): the grants EC2 needs to use them, only through EC2. Empty: AWS-managed keys only."
  default     = []
  validation {
    condition     = alltrue([for a in var.kms_key_arns : can(regex("^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", a))])
    error_message = "kms_key_arns must be KMS key ARNs (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "instance_role_arns" {
  type        = list(string)
  description = "kind: ec2: roles of the instance profiles a launch template gives the instances (iam:PassRole, only to EC2). Empty: no PassRole."
  default     = []
}

variable "allow_spot" {
  type        = bool
  description = "kind: ec2: allow Spot launches (provider.market spot or spot-with-on-demand-fallback): adds the spot-instances-request resource, which a spot launch creates and tags with the instance's tags."
  default     = false
}

variable "autoscaling_group_names" {
  type        = list(string)
  description = "kind: ec2-pool: names of the pools' Auto Scaling groups (provider.autoScalingGroup): their members (tag aws:autoscaling:groupName) may be started and tagged."
  default     = []
}

variable "autoscaling_group_arns" {
  type        = list(string)
  description = "kind: ec2-pool: ARNs of the same Auto Scaling groups (the pool module's autoscaling_group_arn): they may be scaled out, and members recycled, taken out of Standby and protected from scale-in while a job holds them."
  default     = []
}

variable "ledger_table_arns" {
  type        = list(string)
  description = "ARNs of the fleet ledger's DynamoDB tables (the ledger module's table_arn), for fleet.ledger kind dynamodb: both policies may read and write items there. Empty: no DynamoDB access (kind local)."
  default     = []
  validation {
    condition     = alltrue([for a in var.ledger_table_arns : can(regex("^arn:[a-z-]+:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}$", a))])
    error_message = "ledger_table_arns must be DynamoDB table ARNs (arn:aws:dynamodb:<region>:<account>:table/<name>)."
  }
}

variable "attach_to_role_names" {
  type        = list(string)
  description = "Roles of the runner hosts (instance profile or other) to attach the created policies to. Empty: attach them yourself (outputs *_policy_arn)."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Tags on the IAM policies."
  default     = {}
}
