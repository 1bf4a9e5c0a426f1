variable "name" {
  type        = string
  description = "Name of the Auto Scaling group (the hook's provider.autoScalingGroup) and prefix of every resource of the pool."
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,29}$", var.name))
    error_message = "name must be 1-30 characters of A-Z a-z 0-9 _ - (it also prefixes the IAM role, whose name_prefix AWS's provider takes up to 38 characters, with \"-member-\")."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the pool's security group."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets the Auto Scaling group launches members into (private subnets the runner hosts can reach)."
  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "image_id" {
  type        = string
  description = "AMI of the members. null: the latest Amazon Linux 2023 for the architecture of instance_type, from the public SSM parameter. The user data supports dnf (Amazon Linux 2023) and apt (Debian, Ubuntu) images with cloud-init and systemd."
  default     = null
}

variable "architecture" {
  type        = string
  description = "CPU architecture of the default AMI when image_id is null: x86_64 or arm64. Must match instance_type."
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "instance_type" {
  type        = string
  description = "Instance type of the members."
  default     = "m7i.large"
}

variable "root_volume_size_gib" {
  type        = number
  description = "Size of the encrypted gp3 root volume in GiB (images, job files and containers live here)."
  default     = 50
  validation {
    condition     = var.root_volume_size_gib >= 8 && var.root_volume_size_gib <= 16384
    error_message = "root_volume_size_gib must be 8-16384."
  }
}

variable "root_device_name" {
  type        = string
  description = "Root device of the AMI (/dev/xvda on Amazon Linux, /dev/sda1 on Ubuntu and Debian). Another name adds a second volume instead of sizing the root one."
  default     = "/dev/xvda"
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the root volume. null: the account's default EBS key."
  default     = null
}

variable "ssh_user" {
  type        = string
  description = "SSH user on the members (the hook's provider.user). Created when the image lacks it, put in group docker."
  default     = "ec2-user"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_.-]{0,31}$", var.ssh_user)) && var.ssh_user != "root"
    error_message = "ssh_user must be a plain user name ([a-z_][a-z0-9_.-]*, at most 32 characters) other than root."
  }
}

variable "ssh_port" {
  type        = number
  description = "Port sshd listens on (the hook's provider.sshPort)."
  default     = 22
  validation {
    condition     = var.ssh_port >= 1 && var.ssh_port <= 65535 && floor(var.ssh_port) == var.ssh_port
    error_message = "ssh_port must be an integer 1-65535."
  }
}

variable "client_public_key" {
  type        = string
  description = "The pool key's public half (the .pub of the hook's provider.identityFile), one OpenSSH line. It is the only key authorized for ssh_user."
  validation {
    condition     = can(regex("^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]*)?$", trimspace(var.client_public_key)))
    error_message = "client_public_key must be one OpenSSH public key line (ssh-ed25519, ecdsa-sha2-nistp* or ssh-rsa), with an optional plain comment."
  }
}

variable "work_root" {
  type        = string
  description = "The hook's remote.workRoot on every member: created owned by ssh_user, mode 0700. An absolute path, or ~/path for one under ssh_user's home."
  default     = "/srv/rch"
  validation {
    condition     = can(regex("^(/|~/)[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.work_root)) && !can(regex("(^|/)\\.\\.?(/|$)", var.work_root))
    error_message = "work_root must be a normalised absolute path (or ~/path) of A-Z a-z 0-9 . _ - (no . or .. component, no trailing /), other than /."
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
  description = "Outbound rules of the members. The default allows HTTPS (image pulls, the EC2 API for the host-key tag, packages) and HTTP (package mirrors) only; add what your jobs need. Amazon DNS and the instance metadata service are not filtered by security groups."
  default = [
    { description = "HTTPS: registries, the EC2 API, packages", protocol = "tcp", from_port = 443, to_port = 443, cidr_blocks = ["0.0.0.0/0"] },
    { description = "HTTP: package mirrors", protocol = "tcp", from_port = 80, to_port = 80, cidr_blocks = ["0.0.0.0/0"] },
  ]
}

variable "min_size" {
  type        = number
  description = "Fewest members the group keeps."
  default     = 0
}

variable "max_size" {
  type        = number
  description = "Most members: the hook scales out up to it (scaleOut.enabled) and never beyond."
  default     = 4
}

variable "desired_capacity" {
  type        = number
  description = "Members at creation. Terraform ignores later changes of the desired capacity: the hook sets it when all members are busy."
  default     = 1
}

variable "warm_pool_enabled" {
  type        = bool
  description = "Keep a warm pool of booted, then stopped, members (pool_state Stopped): a scale-out starts one of them instead of booting a new instance."
  default     = false
}

variable "warm_pool_min_size" {
  type        = number
  description = "Stopped members the warm pool keeps at least."
  default     = 1
}

variable "warm_pool_max_group_prepared_capacity" {
  type        = number
  description = "Most members in service plus warm. null: max_size."
  default     = null
}

variable "instance_refresh_min_healthy_percentage" {
  type        = number
  description = "Instance refresh (on every launch template change): percentage of the group kept in service while members are replaced. For members a job holds, see instance_refresh_protected_members."
  default     = 50
}

variable "instance_refresh_protected_members" {
  type        = string
  description = "What an instance refresh does with members a job holds (the hook protects them from scale-in while it does): Wait replaces each once its job gives it back, and fails the refresh if one is still held after an hour; Refresh replaces them at once, failing their jobs; Ignore leaves them on the old launch template until the hook recycles them (reuse limits)."
  default     = "Wait"
  validation {
    condition     = contains(["Wait", "Refresh", "Ignore"], var.instance_refresh_protected_members)
    error_message = "instance_refresh_protected_members must be Wait, Refresh or Ignore."
  }
}

variable "instance_warmup_seconds" {
  type        = number
  description = "Seconds a new member needs to boot, install its packages and publish its host key (instance refresh and health check grace)."
  default     = 300
}

variable "detailed_monitoring" {
  type        = bool
  description = "One-minute CloudWatch metrics for the members."
  default     = true
}

variable "additional_instance_policy_arns" {
  type        = list(string)
  description = "Managed policies also attached to the members' role. Every job gets what they grant: a job is root on its member and reaches the role's credentials. Empty by default: the role may only publish the member's own host key. Never ec2:CreateTags/DeleteTags, nor broad reads (AmazonSSMManagedInstanceCore, for one, lets a job read every SSM parameter)."
  default     = []
}

variable "ssm_agent" {
  type        = bool
  description = "Keep the AWS Systems Manager agent the image ships running on the members. false: the setup stops and disables it, since where the account turns on Default Host Management Configuration, Session Manager opens a root shell on any member to whoever may call ssm:StartSession (the members accept only the pool key otherwise)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags on every resource of the pool, and on the members, their volumes and network interfaces. Keys of the hook's own namespace (remote-container-hooks:) are refused: on the members they would mean what the hook and reap read there (an owner, a host key, keep)."
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(k, "remote-container-hooks:")])
    error_message = "tags must not use the hook's own keys (remote-container-hooks:…): on the members they would be read as the hook's (owner, host-key, keep, recycle…)."
  }
}
