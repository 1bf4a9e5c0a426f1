// The DynamoDB table the ledger needs, as data: the hook's doctor checks a table against it, the
// tests create theirs from it, and the Terraform module's offline check compares with it.
// `pk` is every item's key. The open reservations also carry `open` = "1", which puts them (and only
// them: settling removes it) into the sparse index OPEN_INDEX, so listing them reads a few items
// instead of the whole table's history.
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb'

export const LEDGER_KEY = 'pk'
export const OPEN_INDEX = 'open-index'
export const OPEN_ATTR = 'open'

export function ledgerTableShape(): Pick<CreateTableCommandInput, 'AttributeDefinitions' | 'KeySchema' | 'GlobalSecondaryIndexes'> {
  return {
    AttributeDefinitions: [
      { AttributeName: LEDGER_KEY, AttributeType: 'S' },
      { AttributeName: OPEN_ATTR, AttributeType: 'S' }
    ],
    KeySchema: [{ AttributeName: LEDGER_KEY, KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      { IndexName: OPEN_INDEX, KeySchema: [{ AttributeName: OPEN_ATTR, KeyType: 'HASH' }], Projection: { ProjectionType: 'ALL' } }
    ]
  }
}
