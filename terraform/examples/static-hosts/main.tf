# Nothing to create: static hosts exist already. This root only renders the hook's configuration
# for them, so it is kept next to the pool and per-job configurations in one place.

locals {
  hook_config = {
    provider = {
      kind                  = "static"
      acquireTimeoutSeconds = var.acquire_timeout_seconds
      hosts = [for h in var.hosts : {
        host           = h.host
        port           = h.port
        user           = h.user
        identityFile   = h.identity_file
        knownHostsFile = h.known_hosts_file
        slots          = h.slots
      }]
    }
    remote = {
      workRoot     = var.work_root
      dockerSocket = var.docker_socket
    }
    images = { pullPolicy = var.pull_policy }
    log    = { level = var.log_level }
  }
}
