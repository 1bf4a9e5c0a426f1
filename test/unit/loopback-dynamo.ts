// A DynamoDB ledger pointed at a stand-in HTTP server on loopback (the unit tests' own endpoint).
import { createServer, type Server } from 'node:http'
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

export type Send = (status: number, text: string) => void

/** A DynamoDB error answer of `type`, as the SDK reads it. */
export const dynamoError = (type: string, extra: object = {}): string =>
  JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message: type, ...extra })

/** A DynamoDB stand-in listening on loopback: each call's operation (GetItem, UpdateItem, …) and body go to `answer`. */
export async function dynamoStandIn<I>(answer: (op: string, input: I, send: Send) => void): Promise<Server> {
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const op = String(req.headers['x-amz-target']).split('.')[1]
      answer(
        op,
        JSON.parse(body) as I,
        (status, text) => void res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0' }).end(text)
      )
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return server
}

/** Ends a stand-in, its open connections too. */
export async function closeStandIn(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
}
