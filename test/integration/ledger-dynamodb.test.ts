/**
 * The DynamoDB fleet ledger against moto's DynamoDB (the test environment's moto server): caps
 * and the daily budget hold exactly when three processes ("runner hosts") reserve at once, and
 * settlement frees capacity. Each test makes its own table (unique name), so files may run in parallel.
 *
 * The ledger talks to moto through ledger-serial-proxy.ts: moto applies a transaction without a
 * lock, so under a race it lets through what DynamoDB refuses (seen here: 13 reservations against
 * a budget for 12); the proxy restores DynamoDB's per-request atomicity, no more.
 */
import { DeleteTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import type { ReserveRequest, ReserveResult } from '../../src/fleet/ledger'
import { RESERVE_REQ } from '../helpers/reserve-request'
import { DUMMY_CREDENTIALS, loadMoto, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable } from '../helpers/ledger-table'
import { raceHosts, removeWorkerBundle } from '../unit/fleet-procs'
import { startSerialProxy, type SerialProxy } from './ledger-serial-proxy'

const motoEndpoint = loadMoto().endpoint
let proxy: SerialProxy
let endpoint: string
beforeAll(async () => {
  proxy = await startSerialProxy(motoEndpoint)
  endpoint = proxy.endpoint
})
const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint: motoEndpoint, credentials: DUMMY_CREDENTIALS })
const tables: string[] = []
let seq = 0

async function newTable(): Promise<string> {
  const name = `rch-fleet-${process.pid}-${Date.now()}-${seq++}`
  await createLedgerTable(ddb, name)
  tables.push(name)
  return name
}

afterAll(async () => {
  for (const t of tables) await ddb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)
  ddb.destroy()
  await proxy?.close()
  removeWorkerBundle()
})

const fleetFor = (table: string, extra: object): FleetConfig =>
  FleetSchema.parse({ ledger: { kind: 'dynamodb', table, region: TEST_REGION, endpoint }, ...extra })

const REQ: ReserveRequest = { ...RESERVE_REQ, runId: '1' }
const NOW = Date.UTC(2026, 11, 1, 12)

const ledgerFor = (fleet: FleetConfig, now = NOW): DynamoLedger =>
  new DynamoLedger(fleet, fleet.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: () => now },
    client: { credentials: DUMMY_CREDENTIALS }
  })

const counter = async (table: string, pk: string, attr: string): Promise<number> =>
  Number((await ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: pk } }, ConsistentRead: true }))).Item?.[attr]?.N ?? 0)

const race = (fleet: FleetConfig, now = NOW): Promise<ReserveResult[]> =>
  raceHosts([0, 1, 2].map((h) => ({ fleet, localRoot: '/nonexistent', count: 20, req: { ...REQ, runner: `host${h}` }, now }))).then((r) =>
    r.flat()
  )

test('3 runner hosts × 20 concurrent reserves against caps.instances 10: exactly 10 ok, 50 refused with the line, never 11', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, { caps: { instances: 10 }, budget: { perDayUsd: 50, prices: { 't3.medium': 0.0416 } } })
  const results = await race(fleet)
  const ok = results.filter((r) => r.ok)
  const refused = results.filter((r): r is { ok: false; line: string } => !r.ok)
  expect(results).toHaveLength(60)
  expect(ok).toHaveLength(10)
  expect(new Set(ok.map((r) => (r as { id: string }).id)).size).toBe(10)
  // 10 reserved hours at 0.0416 = 0.416 USD -> "0.42" (rounded up)
  for (const r of refused) expect(r.line).toBe('fleet cap reached: 10 of 10 instances (budget today 0.42 of 50.00 USD)')
  expect(await counter(table, 'counter#instances', 'n')).toBe(10)
  expect(await counter(table, 'counter#vcpus', 'n')).toBe(20)
  const ledger = ledgerFor(fleet)
  expect(await ledger.unsettled()).toHaveLength(10)
  ledger.close()
})

test('the daily budget under the same race: exactly as many as it pays for, refused the same day, allowed the next', async () => {
  const table = await newTable()
  // 1 h of t3.large at 0.0832 reserves 83200 micro-USD; 1.00 USD pays for 12 of them (998400), not 13.
  const fleet = fleetFor(table, { budget: { perDayUsd: 1, prices: { 't3.large': 0.0832 } } })
  const req = { ...REQ, instanceType: 't3.large' }
  const results = (
    await raceHosts([0, 1, 2].map((h) => ({ fleet, localRoot: '/nonexistent', count: 20, req: { ...req, runner: `host${h}` }, now: NOW })))
  ).flat()
  expect(results.filter((r) => r.ok)).toHaveLength(12)
  for (const r of results.filter((r) => !r.ok))
    expect((r as { line: string }).line).toBe(
      'fleet budget reached: budget today 1.00 of 1.00 USD (this t3.large reserves 0.09 USD for up to 60 min; 12 instances running)'
    )
  expect(await counter(table, 'day#2026-12-01', 'usd')).toBe(12 * 83200)
  const nextDay = ledgerFor(fleet, NOW + 24 * 3600_000)
  expect(await nextDay.reserve(req)).toMatchObject({ ok: true })
  expect(await counter(table, 'day#2026-12-02', 'usd')).toBe(83200)
  nextDay.close()
})

test('settle frees capacity, replaces the reserved cost with the real one, and is idempotent', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, {
    caps: { instances: 2, perRepository: { instances: 2 } },
    budget: { perDayUsd: 50, prices: { 't3.medium': 0.0416 } }
  })
  const ledger = ledgerFor(fleet)
  const a = await ledger.reserve(REQ)
  const b = await ledger.reserve(REQ)
  expect([a.ok, b.ok]).toEqual([true, true])
  expect(await ledger.reserve(REQ)).toEqual({ ok: false, line: 'fleet cap reached: 2 of 2 instances (budget today 0.09 of 50.00 USD)' })
  const id = (a as { id: string }).id
  await ledger.attach(id, 'i-0123')
  await ledger.recordTimings(id, { acquire: 1200, boot: 30_000 })
  const settled = await ledger.settle(id, { endedAt: NOW + 90_500 })
  expect(settled).toMatchObject({ instanceId: 'i-0123', billedSeconds: 91, actualMicro: Math.ceil((41600 * 91) / 3600) })
  expect(await counter(table, 'day#2026-12-01', 'usd')).toBe(41600 + Math.ceil((41600 * 91) / 3600))
  expect(await counter(table, 'counter#instances', 'n')).toBe(1)
  const again = await ledger.settle(id, { endedAt: NOW + 3600_000 })
  expect(again.actualMicro).toBe(settled.actualMicro)
  expect(await counter(table, 'counter#instances', 'n')).toBe(1)
  expect(await counter(table, 'repo#acme/widgets', 'n')).toBe(1)
  expect(await ledger.reserve(REQ)).toMatchObject({ ok: true })
  const recs = await ledger.records({ since: NOW, until: NOW + 1 })
  expect(recs).toHaveLength(3)
  expect(recs.find((r) => r.id === id)).toMatchObject({
    timings: { acquire: 1200, boot: 30_000 },
    reservedMicro: 41600,
    endedAt: NOW + 90_500
  })
  expect(await ledger.records({ since: NOW + 1 })).toHaveLength(0)
  expect((await ledger.unsettled()).map((r) => r.id)).not.toContain(id)
  ledger.close()
})

test('per-repository cap: another repository still launches', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, { caps: { perRepository: { instances: 1 } } })
  const ledger = ledgerFor(fleet)
  expect(await ledger.reserve(REQ)).toMatchObject({ ok: true })
  expect(await ledger.reserve(REQ)).toEqual({ ok: false, line: 'fleet cap reached: 1 of 1 instances of acme/widgets' })
  expect(await ledger.reserve({ ...REQ, repository: 'acme/gadgets' })).toMatchObject({ ok: true })
  ledger.close()
})

test('a transaction cancelled by a conflict or throttled is retried; one refused by a condition is not', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, { caps: { instances: 1 } })
  const ledger = ledgerFor(fleet)
  const conflict = {
    CancellationReasons: [{ Code: 'None' }, { Code: 'TransactionConflict' }, { Code: 'None' }, { Code: 'None' }, { Code: 'None' }]
  }
  proxy.fail({ target: 'TransactWriteItems', times: 2, status: 400, type: 'TransactionCanceledException', extra: conflict })
  proxy.fail({ target: 'TransactWriteItems', times: 1, status: 400, type: 'ThrottlingException' })
  const before = proxy.calls.filter((c) => c === 'TransactWriteItems').length
  expect(await ledger.reserve(REQ)).toMatchObject({ ok: true })
  expect(proxy.calls.filter((c) => c === 'TransactWriteItems').length - before).toBe(4)
  // positive control of the refusal: the transaction reached moto once and was not sent again
  const mid = proxy.calls.filter((c) => c === 'TransactWriteItems').length
  expect(await ledger.reserve(REQ)).toEqual({ ok: false, line: 'fleet cap reached: 1 of 1 instances' })
  expect(proxy.calls.filter((c) => c === 'TransactWriteItems').length - mid).toBe(1)
  expect(await counter(table, 'counter#instances', 'n')).toBe(1)
  ledger.close()
})

test('a reservation whose answer was lost is not counted twice, nor reported refused, when its retry finds the cap full', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, { caps: { instances: 1 } })
  const ledger = ledgerFor(fleet)
  // moto ignores ClientRequestToken, so the retry reaches the conditions: the cap (now full with
  // this very reservation) and the reservation item (now there) both fail
  proxy.fail({ target: 'TransactWriteItems', times: 1, status: 500, type: 'InternalServerError', forward: true })
  const r = await ledger.reserve(REQ)
  expect(r).toEqual({ ok: true, id: expect.any(String) })
  expect(await counter(table, 'counter#instances', 'n')).toBe(1)
  expect((await ledger.unsettled()).map((u) => u.id)).toEqual([(r as { id: string }).id])
  expect(await ledger.reserve(REQ)).toEqual({ ok: false, line: 'fleet cap reached: 1 of 1 instances' })
  ledger.close()
})

test('beats, zero-cost settlement and job records round-trip through the table', async () => {
  const table = await newTable()
  const fleet = fleetFor(table, { caps: { instances: 1 }, budget: { perDayUsd: 5, prices: { 't3.medium': 0.0416 } } })
  let now = NOW
  const ledger = new DynamoLedger(fleet, fleet.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: () => now },
    client: { credentials: DUMMY_CREDENTIALS }
  })
  const a = (await ledger.reserve({ ...REQ, jobId: 'j1', runnerHost: 'rh1' })) as { id: string }
  await ledger.beat(a.id, NOW + 5000)
  await ledger.beat(a.id, NOW + 1000)
  expect((await ledger.unsettled())[0]).toMatchObject({ heartbeatAt: NOW + 5000, jobId: 'j1', runnerHost: 'rh1' })
  // The beating host's clock stepped back 30 minutes: its beats are taken, not dropped until it catches up.
  await ledger.beat(a.id, NOW + 5000 - 1_800_000)
  expect((await ledger.unsettled())[0].heartbeatAt).toBe(NOW + 5000 - 1_800_000)
  await ledger.beat(a.id, NOW + 5000)
  expect(await ledger.settle(a.id, { endedAt: NOW + 600_000, launched: false })).toMatchObject({ billedSeconds: 0, actualMicro: 0 })
  expect(await counter(table, 'day#2026-12-01', 'usd')).toBe(0)
  expect(await counter(table, 'counter#instances', 'n')).toBe(0)

  await ledger.recordJob({
    jobId: 'j1',
    repository: 'acme/widgets',
    job: 'build',
    provider: 'ec2',
    timings: { acquire: 1200, boot: 30_000 }
  })
  now = NOW + 60_000
  await ledger.recordJob({ jobId: 'j1', endedAt: NOW + 90_000, machine: 'i-0abc', timings: { cleanup: 800, boot: 31_000 } })
  await ledger.recordJob({ jobId: 'j1', lost: 'inside' })
  await ledger.recordJob({ jobId: 'j1', lost: 'spot' }) // the first cause stays
  await ledger.recordJob({ jobId: 'j0', repository: 'acme/gadgets', provider: 'static', startedAt: NOW - 1000 })
  const jobs = await ledger.jobs()
  expect(jobs.map((j) => j.jobId)).toEqual(['j0', 'j1'])
  expect(jobs[1]).toEqual({
    jobId: 'j1',
    repository: 'acme/widgets',
    workflow: '',
    runId: '',
    job: 'build',
    runner: '',
    runnerHost: '',
    provider: 'ec2',
    machine: 'i-0abc',
    startedAt: NOW,
    endedAt: NOW + 90_000,
    timings: { acquire: 1200, boot: 31_000, cleanup: 800 },
    lost: 'inside'
  })
  expect((await ledger.jobs({ since: NOW })).map((j) => j.jobId)).toEqual(['j1'])
  // Job items are not reservations, nor the other way round.
  expect((await ledger.records()).map((r) => r.id)).toEqual([a.id])
  ledger.close()
})

// Reap reads a reservation without an instance and settles it as unlaunched; an attach landing in
// between would be settled at no cost, its counts freed while its instance runs.
test('a reservation with an instance attached is not settled as unlaunched; settled with its time it is (control)', async () => {
  const table = await newTable()
  const ledger = ledgerFor(fleetFor(table, { caps: { instances: 1 } }))
  const b = (await ledger.reserve(REQ)) as { id: string }
  await ledger.attach(b.id, 'i-b', NOW + 1000)
  await expect(ledger.settle(b.id, { endedAt: NOW + 600_000, launched: false })).rejects.toThrow(
    `fleet ledger: reservation ${b.id} cannot be settled as unlaunched: an instance is attached to it`
  )
  expect(await counter(table, 'counter#instances', 'n')).toBe(1)
  expect(await ledger.settle(b.id, { endedAt: NOW + 61_000 })).toMatchObject({ billedSeconds: 60 })
  expect(await counter(table, 'counter#instances', 'n')).toBe(0)
  ledger.close()
})
