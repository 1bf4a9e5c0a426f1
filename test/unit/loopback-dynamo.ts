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

export const NOON = Date.UTC(2026, 11, 1, 12)
export const RESERVATION_ID = '6f1c2a64-9a57-4c1e-8d0e-2d1f7c3b9e10'

/** The fixed part of one reservation made at 11:00 of 2026-12-01 (the item's `fixed` attribute). */
export function fixedReservation(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    repository: 'acme/widgets',
    workflow: 'ci',
    runId: '1',
    job: 'build',
    runner: 'r1',
    instanceType: 't3.medium',
    vcpus: 2,
    maxLifetimeMinutes: 60,
    id: RESERVATION_ID,
    day: '2026-12-01',
    reservedAt: NOON - 3_600_000,
    priceMicroPerHour: 41_600,
    reservedMicro: 41_600,
    ...extra
  }
}
