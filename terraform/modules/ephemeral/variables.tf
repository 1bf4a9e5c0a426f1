variable "name" {
  type        = string
  description = "Prefix of the launch template and security group names."
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$", var.name))
    error_message = "name must be 1-48 characters of A-Z a-z 0-9 _ -."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the instances' security group (the subnets in the hook's provider.subnetIds must be in it)."
}

variable "image_id" {
  type        = string
  description = "AMI of the per-job instances. It must already have Docker, rsync, GNU tar, cloud-init, systemd and ssh_user (see the README): the hook replaces any user data with its own."
}

variable "image_owners" {
  type        = list(string)
  description = "Owners the AMI is looked up among (to read its root device): account ids, self, amazon, aws-marketplace. Add the account that shares a private AMI with you."
  default     = ["self", "amazon", "aws-marketplace"]
}

variable "instance_type" {
  type        = string
  description = "Instance type of the template. null: none (then the hook's provider.instanceTypes must name them)."
  default     = null
}

variable "root_volume_size_gib" {
  type        = number
  description = "Size of the encrypted gp3 root volume in GiB. null: the AMI's size."
  default     = 50
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the root volume. null: the account's default EBS key."
  default     = null
}

variable "ssh_port" {
  type        = number
  description = "sshd port of the image (the hook's provider.sshPort)."
  default     = 22
  validation {
    condition     = var.ssh_port >= 1 && var.ssh_port <= 65535 && floor(var.ssh_port) == var.ssh_port
    error_message = "ssh_port must be an integer 1-65535."
  }
}

variable "ingress_security_group_ids" {
  type        = list(string)
  description = "Security groups of the runner hosts: the only sources (with ingress_cidr_blocks) allowed to reach ssh_port."
  default     = []
}

variable "ingress_cidr_blocks" {
  type        = list(string)
  description = "IPv4 CIDR blocks allowed to reach ssh_port, besides ingress_security_group_ids. At least one of the two must be given."
  default     = []
  validation {
    condition     = alltrue([for c in var.ingress_cidr_blocks : tonumber(split("/", c)[1]) >= 8])
    error_message = "ingress_cidr_blocks must be blocks of /8 or narrower (a /0 or /1 would let most of the internet reach sshd): give the runner hosts' addresses or security groups."
  }
}

variable "egress_rules" {
  type = list(object({
    description = string
    protocol    = string
    from_port   = number
    to_port     = number
    cidr_blocks = list(string)
  }))
  description = "Outbound rules of the instances. The default allows HTTPS and HTTP only; add what your jobs need."
  default = [
    { description = "HTTPS: registries, packages", protocol = "tcp", from_port = 443, to_port = 443, cidr_blocks = ["0.0.0.0/0"] },
    { description = "HTTP: package mirrors", protocol = "tcp", from_port = 80, to_port = 80, cidr_blocks = ["0.0.0.0/0"] },
  ]
}

variable "instance_profile_arn" {
  type        = string
  description = "Instance profile for the instances. null (recommended): none, the hook needs no AWS access on the instance. With one, the runner-iam module needs its role in instance_role_arns (iam:PassRole)."
  default     = null
}

variable "detailed_monitoring" {
  type        = bool
  description = "One-minute CloudWatch metrics for the instances."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags on the launch template and security group. Put instance tags in the hook's provider.tags: the hook tags every instance at launch."
  default     = {}
}
