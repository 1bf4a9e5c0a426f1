output "table_name" {
  description = "Name of the table: the hook's fleet.ledger.table."
  value       = aws_dynamodb_table.ledger.name
}

output "table_arn" {
  description = "ARN of the table (for the runner-iam module's ledger_table_arns)."
  value       = aws_dynamodb_table.ledger.arn
}
