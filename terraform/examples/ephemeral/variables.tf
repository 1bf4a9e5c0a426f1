variable "region" {
  type        = string
  description = "AWS region of the per-job instances (the hook's provider.region)."
}

variable "name" {
  type        = string
  description = "Prefix of the created resources."
  default     = "rch-ephemeral"
}

variable "vpc_id" {
  type        = string
  description = "VPC of the instances."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets the hook launches into, tried in order on capacity errors (provider.subnetIds)."
}

variable "image_id" {
  type        = string
  description = "AMI with Docker, rsync, GNU tar, cloud-init, systemd and ssh_user (see the ephemeral module's README)."
}

variable "instance_types" {
  type        = list(string)
  description = "Instance types, tried in order on capacity errors (provider.instanceTypes)."
  default     = ["m7i.large", "m6i.large", "m5.large"]
}

variable "market" {
  type        = string
  description = "provider.market: on-demand, spot or spot-with-on-demand-fallback."
  default     = "on-demand"
  validation {
    condition     = contains(["on-demand", "spot", "spot-with-on-demand-fallback"], var.market)
    error_message = "market must be on-demand, spot or spot-with-on-demand-fallback."
  }
}

variable "ssh_user" {
  type        = string
  description = "SSH user that exists in the image (provider.user)."
  default     = "ec2-user"
}

variable "ssh_port" {
  type        = number
  description = "sshd port of the image (provider.sshPort)."
  default     = 22
}

variable "connect_address" {
  type        = string
  description = "provider.connect.address: private-ip, public-ip, public-dns or tag:<TagName>."
  default     = "private-ip"
}

variable "work_root" {
  type        = string
  description = "remote.workRoot on the instances (created by the hook's user data, owned by ssh_user)."
  default     = "/home/ec2-user/rch"
}

variable "max_lifetime_minutes" {
  type        = number
  description = "provider.maxLifetimeMinutes: an instance ends itself this long after boot, whatever happens to the runner. Above your longest job."
  default     = 360
}

variable "acquire_timeout_seconds" {
  type        = number
  description = "provider.acquireTimeoutSeconds: one deadline for launch, boot and SSH."
  default     = 600
}

variable "runner_ingress_security_group_ids" {
  type        = list(string)
  description = "Security groups of the runner hosts, allowed to reach sshd on the instances."
  default     = []
}

variable "runner_ingress_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks of the runner hosts, allowed to reach sshd on the instances (besides the security groups)."
  default     = []
}

variable "runner_role_names" {
  type        = list(string)
  description = "IAM roles of the runner hosts to attach the kind: ec2 policy to. Empty: attach the output runner_policy_arn yourself."
  default     = []
}

variable "instance_tags" {
  type        = map(string)
  description = "provider.tags: extra tags the hook puts on every instance and volume at launch; also the runner-iam policy's scope_tags, so these runner hosts may end only instances carrying them. Give each deployment its own pair (a key such as rch-deployment, with the team's name)."
  default     = {}
}

variable "tags" {
  type        = map(string)
  description = "Default tags of every resource Terraform creates here."
  default     = {}
}

variable "ledger_deletion_protection" {
  type        = bool
  description = "Refuse to delete the fleet ledger's table (set false before a terraform destroy that should remove it)."
  default     = true
}

variable "fleet_max_instances" {
  type        = number
  description = "fleet.caps.instances: at most this many instances the hook launched or added at once, across all runner hosts. null: no cap."
  default     = null
}

variable "fleet_max_vcpus" {
  type        = number
  description = "fleet.caps.vcpus: at most this many vCPUs of such instances at once. null: no cap."
  default     = null
}

variable "fleet_max_instances_per_repository" {
  type        = number
  description = "fleet.caps.perRepository.instances: at most this many such instances per repository at once. null: no cap."
  default     = null
}

variable "fleet_budget_per_day_usd" {
  type        = number
  description = "fleet.budget.perDayUsd: launches stop for the day once their reserved cost would pass this. null: no budget."
  default     = null
}

variable "fleet_budget_timezone" {
  type        = string
  description = "fleet.budget.timezone: where the budget day starts at midnight (an IANA name)."
  default     = "UTC"
}

variable "fleet_prices" {
  type        = map(number)
  description = "fleet.budget.prices: USD per instance-hour by instance type; with a budget, a type without a price is refused."
  default     = {}
}
