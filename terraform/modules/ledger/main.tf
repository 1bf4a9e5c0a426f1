# The fleet ledger's DynamoDB table, shared by every runner host: each reservation is one
# conditional transaction on it, so the caps and the day's budget hold across hosts. Items are
# read and written by `pk` (string partition key, no sort key); the open reservations alone carry
# `open`, so the sparse index open-index lists them without reading the table's history (reap);
# reservations and job records carry `span` (kind and UTC month) and `at` (their time), so
# time-index reads one range of them (report) instead of the whole table.
# The hook's src/fleet/ledger-table.ts is the same shape; the offline check compares the two.

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

  attribute {
    name = "open"
    type = "S"
  }

  attribute {
    name = "span"
    type = "S"
  }

  attribute {
    name = "at"
    type = "N"
  }

  global_secondary_index {
    name            = "open-index"
    hash_key        = "open"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "time-index"
    hash_key        = "span"
    range_key       = "at"
    projection_type = "ALL"
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
