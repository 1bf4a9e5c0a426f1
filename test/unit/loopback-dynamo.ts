// A DynamoDB ledger pointed at a stand-in HTTP server on loopback (the unit tests' own endpoint).
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'

export function loopbackLedger(
  server: Server,
  opts: { table: string; now: () => number; attemptMs: number; callMs: number }
): DynamoLedger {
  const fleet: FleetConfig = FleetSchema.parse({
    ledger: {
      kind: 'dynamodb',
      table: opts.table,
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    }
  })
  return new DynamoLedger(fleet, fleet.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: opts.now },
    client: { credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } },
    attemptMs: opts.attemptMs,
    callMs: opts.callMs
  })
}
