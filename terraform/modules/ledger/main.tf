# The fleet ledger's DynamoDB table, shared by every runner host: each reservation is one
# conditional transaction on it, so the caps and the day's budget hold across hosts. The hook reads
# and writes items by `pk` only (string partition key, no sort key, no index).

resource "aws_dynamodb_table" "ledger" {
  #checkov:skip=CKV_AWS_119:always encrypted at rest with KMS (the AWS-managed key by default); kms_key_arn selects a customer-managed key where policy requires one
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  point_in_time_recovery {
    enabled = true
  }

  tags = merge(var.tags, { "remote-container-hooks:ledger" = var.name })
}
