output "hook_config" {
  description = "The hook's configuration as JSON: write it to the file named by REMOTE_HOOKS_CONFIG (a name ending in .json)."
  value       = jsonencode(local.hook_config)
}

output "launch_template_id" {
  description = "Id of the per-job launch template."
  value       = module.ephemeral.launch_template_id
}

output "security_group_id" {
  description = "Security group of the per-job instances."
  value       = module.ephemeral.security_group_id
}

output "runner_policy_arn" {
  description = "ARN of the kind: ec2 policy for the runner hosts."
  value       = module.runner_iam.ec2_policy_arn
}

output "runner_policy_json" {
  description = "The kind: ec2 policy document, as JSON."
  value       = module.runner_iam.ec2_policy_json
}

output "ledger_table_name" {
  description = "Name of the fleet ledger's DynamoDB table (the hook's fleet.ledger.table)."
  value       = module.ledger.table_name
}
