variable "hosts" {
  type = list(object({
    host             = string
    port             = optional(number, 22)
    user             = string
    identity_file    = string
    known_hosts_file = string
    slots            = optional(number, 1)
  }))
  description = "The VMs, tried in this order: host name or IP, sshd port, SSH user (in group docker, owns work_root), and on the runner host the private key and the known_hosts file that pins the VM's host key."
  validation {
    condition     = length(var.hosts) > 0
    error_message = "hosts needs at least one VM."
  }
  validation {
    condition     = alltrue([for h in var.hosts : startswith(h.identity_file, "/") && startswith(h.known_hosts_file, "/")])
    error_message = "identity_file and known_hosts_file must be absolute paths on the runner host."
  }
}

variable "work_root" {
  type        = string
  description = "remote.workRoot: folder on every VM owned by the SSH user."
  default     = "/srv/rch"
}

variable "docker_socket" {
  type        = string
  description = "remote.dockerSocket: the VMs' Docker socket."
  default     = "/var/run/docker.sock"
}

variable "acquire_timeout_seconds" {
  type        = number
  description = "provider.acquireTimeoutSeconds: how long prepare_job waits for a free host slot."
  default     = 600
}

variable "pull_policy" {
  type        = string
  description = "images.pullPolicy: missing, always or never."
  default     = "missing"
  validation {
    condition     = contains(["missing", "always", "never"], var.pull_policy)
    error_message = "pull_policy must be missing, always or never."
  }
}

variable "log_level" {
  type        = string
  description = "log.level of the hook's file log: error, warn, info or debug."
  default     = "info"
}
