variable "name" {
  type        = string
  description = "Name of the DynamoDB table: the hook's fleet.ledger.table."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.name))
    error_message = "name must be 3-255 characters of A-Z a-z 0-9 _ . -."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the table (set false before a terraform destroy that should remove it)."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "A customer-managed KMS key for the table's encryption at rest. null: the AWS-managed key for DynamoDB."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags for the table."
  default     = {}
}
