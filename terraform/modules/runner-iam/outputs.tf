output "ec2_policy_json" {
  description = "The kind: ec2 policy document, as JSON (also when create_ec2_policy is false, to use elsewhere)."
  value       = jsonencode(local.ec2_policy)
}

output "pool_policy_json" {
  description = "The kind: ec2-pool policy document, as JSON (also when create_pool_policy is false, to use elsewhere)."
  value       = jsonencode(local.pool_policy)
}

output "ledger_policy_json" {
  description = "The fleet ledger's statements alone, as JSON: for runner hosts of kind static with fleet.ledger kind dynamodb, or a machine that only runs report (its Statement is empty without ledger_table_arns)."
  value       = jsonencode(local.ledger_policy)
}

output "ec2_policy_arn" {
  description = "ARN of the kind: ec2 policy, or null when create_ec2_policy is false."
  value       = one(aws_iam_policy.ec2[*].arn)
}

output "pool_policy_arn" {
  description = "ARN of the kind: ec2-pool policy, or null when create_pool_policy is false."
  value       = one(aws_iam_policy.pool[*].arn)
}
