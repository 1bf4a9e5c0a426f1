output "hook_config" {
  description = "The hook's configuration as JSON: write it to the file named by REMOTE_HOOKS_CONFIG (a name ending in .json) on every runner host of the pool."
  value       = jsonencode(local.hook_config)
}

output "autoscaling_group_name" {
  description = "Name of the pool's Auto Scaling group."
  value       = module.pool.autoscaling_group_name
}

output "security_group_id" {
  description = "Security group of the members."
  value       = module.pool.security_group_id
}

output "runner_policy_arn" {
  description = "ARN of the kind: ec2-pool policy for the runner hosts."
  value       = module.runner_iam.pool_policy_arn
}

output "runner_policy_json" {
  description = "The kind: ec2-pool policy document, as JSON."
  value       = module.runner_iam.pool_policy_json
}

output "ledger_table_name" {
  description = "Name of the fleet ledger's DynamoDB table (the hook's fleet.ledger.table)."
  value       = module.ledger.table_name
}
