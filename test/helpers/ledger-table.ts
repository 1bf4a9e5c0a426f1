// A fleet ledger table on the test environment's moto, shaped as the ledger needs it (src/fleet/ledger-table.ts).
import { CreateTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { ledgerTableShape } from '../../src/fleet/ledger-table'

export async function createLedgerTable(ddb: DynamoDBClient, name: string): Promise<string> {
  await ddb.send(new CreateTableCommand({ TableName: name, BillingMode: 'PAY_PER_REQUEST', ...ledgerTableShape() }))
  return name
}

/** A ledger table as the ledger module made it before the time index: the open-reservations index only. */
export async function createOlderLedgerTable(ddb: DynamoDBClient, name: string): Promise<string> {
  const shape = ledgerTableShape()
  await ddb.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: shape.KeySchema,
      AttributeDefinitions: shape.AttributeDefinitions!.filter((a) => ['pk', 'open'].includes(a.AttributeName!)),
      GlobalSecondaryIndexes: shape.GlobalSecondaryIndexes!.filter((g) => g.IndexName === 'open-index')
    })
  )
  return name
}
