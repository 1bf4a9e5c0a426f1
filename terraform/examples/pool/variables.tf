variable "region" {
  type        = string
  description = "AWS region of the pool (the hook's provider.region)."
}

variable "name" {
  type        = string
  description = "Name of the Auto Scaling group (provider.autoScalingGroup) and prefix of the pool's resources."
  default     = "rch-pool"
}

variable "vpc_id" {
  type        = string
  description = "VPC of the pool."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets of the members (reachable from the runner hosts)."
}

variable "image_id" {
  type        = string
  description = "AMI of the members. null: the latest Amazon Linux 2023."
  default     = null
}

variable "instance_type" {
  type        = string
  description = "Instance type of the members."
  default     = "m7i.large"
}

variable "pool_public_key" {
  type        = string
  description = "Public half of the pool key (contents of pool_identity_file + \".pub\"): the only key the members accept."
}

variable "pool_identity_file" {
  type        = string
  description = "provider.identityFile: path of the pool key's private half on the runner hosts (mode 0600, no passphrase)."
  default     = "/etc/remote-container-hooks/pool_ed25519"
}

variable "ssh_user" {
  type        = string
  description = "SSH user on the members (provider.user)."
  default     = "ec2-user"
}

variable "work_root" {
  type        = string
  description = "remote.workRoot on the members."
  default     = "/srv/rch"
}

variable "min_size" {
  type        = number
  description = "Fewest members."
  default     = 1
}

variable "max_size" {
  type        = number
  description = "Most members: the hook scales out up to it."
  default     = 4
}

variable "desired_capacity" {
  type        = number
  description = "Members at creation (later the hook sets it)."
  default     = 1
}

variable "warm_pool_enabled" {
  type        = bool
  description = "Keep booted, stopped members ready in a warm pool."
  default     = false
}

variable "connect_address" {
  type        = string
  description = "provider.connect.address: private-ip, public-ip, public-dns or tag:<TagName>."
  default     = "private-ip"
}

variable "lease_ttl_seconds" {
  type        = number
  description = "provider.lease.ttlSeconds: a lease not renewed for this long lapses (renewed every third of it while the runner lives)."
  default     = 120
}

variable "max_jobs_per_vm" {
  type        = number
  description = "provider.reuse.maxJobsPerVm: a member that served this many jobs is recycled (1: one job per member, the hook's default). Raise it only for jobs you trust: a job is root on its member, and a later job there is within its reach."
  default     = 1
}

variable "max_vm_age_minutes" {
  type        = number
  description = "provider.reuse.maxVmAgeMinutes: a member older than this is recycled at its next release."
  default     = 720
}

variable "max_disk_percent" {
  type        = number
  description = "provider.reuse.maxDiskPercent: a member whose work root's or Docker's file system is fuller than this is recycled."
  default     = 90
}

variable "scale_out_enabled" {
  type        = bool
  description = "provider.scaleOut.enabled: raise the desired capacity (up to max_size) when every member is busy."
  default     = true
}

variable "wait_timeout_seconds" {
  type        = number
  description = "provider.waitTimeoutSeconds: how long a job waits for a free member before it fails."
  default     = 600
}

variable "runner_ingress_security_group_ids" {
  type        = list(string)
  description = "Security groups of the runner hosts, allowed to reach sshd on the members."
  default     = []
}

variable "runner_ingress_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks of the runner hosts, allowed to reach sshd on the members (besides the security groups)."
  default     = []
}

variable "runner_role_names" {
  type        = list(string)
  description = "IAM roles of the runner hosts to attach the kind: ec2-pool policy to. Empty: attach the output runner_policy_arn yourself."
  default     = []
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
