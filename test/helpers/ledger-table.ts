// A fleet ledger table on the test environment's moto, shaped as the ledger needs it (src/fleet/ledger-table.ts).
import { CreateTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { ledgerTableShape } from '../../src/fleet/ledger-table'

export async function createLedgerTable(ddb: DynamoDBClient, name: string): Promise<string> {
  await ddb.send(new CreateTableCommand({ TableName: name, BillingMode: 'PAY_PER_REQUEST', ...ledgerTableShape() }))
  return name
}
