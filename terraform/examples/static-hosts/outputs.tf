output "hook_config" {
  description = "The hook's configuration as JSON: write it to the file named by REMOTE_HOOKS_CONFIG (a name ending in .json)."
  value       = jsonencode(local.hook_config)
}
