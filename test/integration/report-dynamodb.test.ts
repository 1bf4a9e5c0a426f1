/**
 * `report` through dist/index.js against a DynamoDB ledger on moto: the test writes known
 * reservations, settlements and job records with the ledger's own calls, then checks the report's
 * totals against numbers worked out by hand here. Nothing races, so moto is reached directly.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import {
  type AttributeValue,
  DeleteItemCommand,
  DeleteTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand
} from '@aws-sdk/client-dynamodb'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import type { ReserveRequest } from '../../src/fleet/ledger'
import { DUMMY_CREDENTIALS, loadMoto, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable, createOlderLedgerTable } from '../helpers/ledger-table'

const hook = resolve(__dirname, '..', '..', 'dist', 'index.js')
const endpoint = loadMoto().endpoint
const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint, credentials: DUMMY_CREDENTIALS })
const table = `rch-report-${process.pid}-${Date.now()}`
const dir = mkdtempSync(join(tmpdir(), 'rch-report-it-'))
const H = 3_600_000
const T0 = Date.UTC(2026, 10, 20, 9)
const PRICES = { 't3.medium': 0.0416, 't3.large': 0.0832 }
const fleetCfg = { ledger: { kind: 'dynamodb', table, region: TEST_REGION, endpoint }, budget: { perDayUsd: 100, prices: PRICES } }
const fleet: FleetConfig = FleetSchema.parse(fleetCfg)
const configFile = join(dir, 'config.json')
let cAttachedAt = 0
let aKey = ''
let cKey = ''

const ledgerAt = (now: number): DynamoLedger =>
  new DynamoLedger(fleet, fleet.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: () => now },
    client: { credentials: DUMMY_CREDENTIALS }
  })

const req = (repository: string, workflow: string, runner: string, instanceType: string): ReserveRequest => ({
  repository,
  workflow,
  runId: '9',
  job: 'build',
  runner,
  instanceType,
  vcpus: 2,
  maxLifetimeMinutes: 120,
  runnerHost: 'host-a'
})

/**
 *   A widgets/ci/r1      t3.medium T0,    +15 s, ended 5400 s later → 5400 s, 41600 × 1.5 = 62400 µ$
 *   B widgets/release/r2 t3.large  T0+1h, +5 s,  ended 90 s later   → 90 s, 83200 × 90/3600 = 2080 µ$
 *   C gadgets/ci/r1      t3.large  T0+2h, +10 s, still running      → up to now (bounds taken around the run)
 *   D gadgets/ci/r2      t3.medium T0+3h, settled as never launched → not a launch
 *   E widgets/ci/r1      t3.medium T0-1d, settled                   → before --since
 *   F widgets/ci/r1      t3.medium T0+1d exactly = --until          → out
 * Jobs: j1 widgets/ci/r1 T0 acquire 400 boot 30000; j2 widgets/release/r2 T0+1h 600 34000;
 *       j3 gadgets/ci/r1 T0+2h 800 41000; j4 gadgets/ci/r2 T0+3h 300 -; j5 widgets T0-1d (out); j6 widgets T0+1d (out).
 */
beforeAll(async () => {
  await createLedgerTable(ddb, table)
  const l = ledgerAt(T0)
  const reserve = async (r: ReserveRequest, at: number): Promise<string> => {
    const res = await l.reserve(r, at)
    if (!res.ok) throw new Error(res.line)
    return res.id
  }
  const a = await reserve(req('acme/widgets', 'ci', 'r1', 't3.medium'), T0)
  await l.attach(a, 'i-a', T0 + 15_000)
  await l.settle(a, { endedAt: T0 + 15_000 + 5400_000 })
  const b = await reserve(req('acme/widgets', 'release', 'r2', 't3.large'), T0 + H)
  await l.attach(b, 'i-b', T0 + H + 5000)
  await l.settle(b, { endedAt: T0 + H + 95_000 })
  const c = await reserve(req('acme/gadgets', 'ci', 'r1', 't3.large'), T0 + 2 * H)
  cAttachedAt = T0 + 2 * H + 10_000
  await l.attach(c, 'i-c', cAttachedAt)
  const d = await reserve(req('acme/gadgets', 'ci', 'r2', 't3.medium'), T0 + 3 * H)
  await l.settle(d, { endedAt: T0 + 3 * H + 2000, launched: false })
  const e = await reserve(req('acme/widgets', 'ci', 'r1', 't3.medium'), T0 - 24 * H)
  await l.settle(e, { endedAt: T0 - 24 * H + 600_000 })
  const f = await reserve(req('acme/widgets', 'ci', 'r1', 't3.medium'), T0 + 24 * H)
  await l.settle(f, { endedAt: T0 + 24 * H + 600_000 })
  const job = (jobId: string, repository: string, workflow: string, runner: string, startedAt: number, timings: Record<string, number>) =>
    l.recordJob({
      jobId,
      repository,
      workflow,
      runner,
      runId: '9',
      job: 'build',
      runnerHost: 'host-a',
      provider: 'ec2',
      startedAt,
      timings
    })
  await job('j1', 'acme/widgets', 'ci', 'r1', T0, { acquire: 400, boot: 30000 })
  await job('j2', 'acme/widgets', 'release', 'r2', T0 + H, { acquire: 600, boot: 34000 })
  await job('j3', 'acme/gadgets', 'ci', 'r1', T0 + 2 * H, { acquire: 800, boot: 41000 })
  await job('j4', 'acme/gadgets', 'ci', 'r2', T0 + 3 * H, { acquire: 300 })
  await job('j5', 'acme/widgets', 'ci', 'r1', T0 - 24 * H, { acquire: 9000, boot: 9000 })
  await job('j6', 'acme/widgets', 'ci', 'r1', T0 + 24 * H, { acquire: 9000, boot: 9000 })
  await l.recordJob({ jobId: 'j2', lost: 'spot' }) // a Spot interruption under one of j2's steps
  l.close()
  // A and j1 as a hook of an earlier version wrote them: without the time index's attributes.
  aKey = `res#${a}`
  cKey = `res#${c}`
  for (const pk of [aKey, 'job#j1'])
    await ddb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: pk } },
        UpdateExpression: 'REMOVE span, #a',
        ExpressionAttributeNames: { '#a': 'at' }
      })
    )
  writeFileSync(
    configFile,
    JSON.stringify({
      provider: { kind: 'ec2', region: TEST_REGION, endpoint, imageId: 'ami-1', instanceTypes: ['t3.medium'] },
      remote: { workRoot: '/srv/rch' },
      fleet: fleetCfg
    })
  )
})

afterAll(async () => {
  await ddb.send(new DeleteTableCommand({ TableName: table })).catch(() => undefined)
  ddb.destroy()
  rmSync(dir, { recursive: true, force: true })
})

const RANGE = ['--since', '2026-11-20T00:00:00Z', '--until', '2026-11-21T09:00:00Z']

function run(args: string[], command = 'report'): { code: number | null; out: string; err: string; before: number; after: number } {
  const before = Date.now()
  const r = spawnSync(process.execPath, [hook, command, configFile, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' }
  })
  return { code: r.status, out: r.stdout, err: r.stderr, before, after: Date.now() }
}

/** C's running seconds and micro-dollars at `now`: per second from attach, t3.large 83200 µ$/h, rounded up. */
const running = (now: number): { s: number; micro: number } => {
  const s = Math.ceil((now - cAttachedAt) / 1000)
  return { s, micro: Math.ceil((83200 * s) / 3600) }
}

/** Before `index-ledger` the report reads the whole table (saying so); after it, only its range through the index: the same totals. */
describe.each([
  ['without', false],
  ['with', true]
])('%s the time index in use', (_, indexed) => {
  beforeAll(() => {
    if (!indexed) return
    const r = run([], 'index-ledger')
    // 6 reservations and 6 jobs; A and j1 lacked the attributes
    expect(r).toMatchObject({ code: 0, err: '' })
    expect(r.out).toBe(
      `index-ledger: DynamoDB ${table}: 12 reservations and job records, 2 given the index's attributes; report reads through time-index from now on\n`
    )
  })

  test('report --json over a DynamoDB ledger: the totals worked out by hand', () => reportByHand(indexed))
})

test('through the index, an item without its attributes is not read (control); index-ledger run again gives them', async () => {
  // B's reservation again, under another id and without span/at: what a hook of an earlier version writes after index-ledger ran
  const b = (await ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: aKey } }, ConsistentRead: true }))).Item!
  const planted: Record<string, AttributeValue> = { ...b, pk: { S: 'res#planted' } }
  delete planted.span
  delete planted.at
  await ddb.send(new PutItemCommand({ TableName: table, Item: planted }))
  const launches = (): number => JSON.parse(run([...RANGE, '--json']).out).groups[1].launches
  try {
    expect(launches()).toBe(2) // A B: the planted copy is not in the index
    // --json: the same counts as one document
    expect(JSON.parse(run(['--json'], 'index-ledger').out)).toEqual({ ledger: 'dynamodb', table, items: 13, indexed: 1 })
    expect(launches()).toBe(3)
  } finally {
    await ddb.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: 'res#planted' } } }))
  }
})

test("through the index, a running reservation without its attributes (an earlier version's) still counts, from the open index", async () => {
  const c = (await ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: cKey } }, ConsistentRead: true }))).Item!
  // Its own id (in the item's fixed part), as a reservation of its own.
  const fixed = { S: JSON.stringify({ ...JSON.parse(c.fixed.S!), id: 'planted-open' }) }
  const planted: Record<string, AttributeValue> = { ...c, pk: { S: 'res#planted-open' }, fixed }
  delete planted.span
  delete planted.at
  const gadgets = () =>
    JSON.parse(run([...RANGE, '--json']).out).groups.find((g: { repository: string }) => g.repository === 'acme/gadgets')
  const before = gadgets()
  await ddb.send(new PutItemCommand({ TableName: table, Item: planted }))
  try {
    const after = gadgets()
    expect(after.runningLaunches).toBe(before.runningLaunches + 1)
    expect(after.launches).toBe(before.launches + 1)
    // control: settled, it is no longer open, and a ranged read through the index does not see it
    await ddb.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: 'res#planted-open' } },
        UpdateExpression: 'REMOVE #o SET settledAt = :s',
        ExpressionAttributeNames: { '#o': 'open' },
        ExpressionAttributeValues: { ':s': { N: String(T0 + 3 * H) } }
      })
    )
    expect(gadgets().launches).toBe(before.launches)
  } finally {
    await ddb.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: 'res#planted-open' } } }))
  }
})

function reportByHand(indexed: boolean): void {
  const r = run([...RANGE, '--json'])
  expect(r.code).toBe(0)
  if (indexed) expect(r.err).toBe('')
  else
    expect(r.err).toBe(
      `report: fleet ledger ${table}: read the whole table 2 times (38 items, each billed as read) because its time index is not in use; run \`remote-hooks index-ledger\` once (docs/operations.md) and later reports read only their range\n`
    )
  const j = JSON.parse(r.out)
  expect(j).toMatchObject({ by: 'repository', since: '2026-11-20T00:00:00.000Z', until: '2026-11-21T09:00:00.000Z', timeZone: 'UTC' })
  const [gadgets, widgets] = j.groups
  expect(widgets).toEqual({
    repository: 'acme/widgets',
    jobs: 2, // j1 j2 (j5 before, j6 at --until)
    launches: 2, // A B (E before, F at --until)
    runningLaunches: 0,
    instanceSeconds: 5490, // 5400 + 90
    instanceHours: 1.525,
    runningInstanceSeconds: 0,
    costUsd: 0.06448, // 62400 + 2080 µ$
    runningCostUsd: 0,
    unpricedLaunches: 0,
    acquireSeconds: { samples: 2, p50: 0.4, p95: 0.6 },
    bootSeconds: { samples: 2, p50: 30, p95: 34 },
    lostMachines: { spot: 1, inside: 0, lifetime: 0, api: 0, other: 0, running: 0, gone: 0 }
  })
  // C runs: its time is bounded by the clock before and after the command
  const lo = running(r.before)
  const hi = running(r.after)
  expect(gadgets).toMatchObject({ repository: 'acme/gadgets', jobs: 2, launches: 1, runningLaunches: 1 }) // D never ran
  expect(gadgets.runningInstanceSeconds).toBeGreaterThanOrEqual(lo.s)
  expect(gadgets.runningInstanceSeconds).toBeLessThanOrEqual(hi.s)
  expect(gadgets.instanceSeconds).toBe(gadgets.runningInstanceSeconds)
  expect(Math.round(gadgets.costUsd * 1e6)).toBeGreaterThanOrEqual(lo.micro)
  expect(Math.round(gadgets.costUsd * 1e6)).toBeLessThanOrEqual(hi.micro)
  expect(gadgets.acquireSeconds).toEqual({ samples: 2, p50: 0.3, p95: 0.8 }) // [300 800]: rank 1, 2
  expect(gadgets.bootSeconds).toEqual({ samples: 1, p50: 41, p95: 41 })
  expect(j.total).toMatchObject({
    jobs: 4,
    launches: 3,
    runningLaunches: 1,
    instanceSeconds: 5490 + gadgets.runningInstanceSeconds,
    acquireSeconds: { samples: 4, p50: 0.4, p95: 0.8 }, // [300 400 600 800]: rank 2, 4
    bootSeconds: { samples: 3, p50: 34, p95: 41 } // [30000 34000 41000]: rank 2, 3
  })
  expect(Math.round(j.total.costUsd * 1e6)).toBe(64480 + Math.round(gadgets.costUsd * 1e6))
}

test('report --by runner over a range and --openmetrics (all time) over the same ledger', () => {
  const byRunner = JSON.parse(run([...RANGE, '--json', '--by', 'runner']).out)
  expect(byRunner.groups.map((g: Record<string, unknown>) => [g.runner, g.jobs, g.launches])).toEqual([
    ['r1', 2, 2], // j1 j3; A C
    ['r2', 2, 1] // j2 j4; B (D never ran)
  ])
  // All time (a range is refused with --openmetrics): j5 and j6, outside RANGE, count too.
  expect(run([...RANGE, '--openmetrics']).code).toBe(64)
  const om = run(['--openmetrics'])
  expect(om.code).toBe(0)
  const lines = om.out.trimEnd().split('\n')
  expect(lines[lines.length - 1]).toBe('# EOF')
  // settled only in the counters, of all time: widgets A 5400 + B 90 + E 600 + F 600 s, and
  // 0.06448 USD + 2 × 6934 µ$ (600 s of t3.medium); gadgets' one launch runs, so 0 there
  expect(lines).toContain('rch_instance_seconds_total{repository="acme/widgets"} 6690')
  expect(lines).toContain('rch_cost_usd_total{repository="acme/widgets"} 0.078348')
  expect(lines).toContain('rch_jobs_total{repository="acme/widgets"} 4')
  expect(lines).toContain('rch_instance_seconds_total{repository="acme/gadgets"} 0')
  expect(lines).toContain('rch_running_instances{repository="acme/gadgets"} 1')
  expect(lines).toContain('rch_jobs_total{repository="acme/gadgets"} 2')
})

test('index-ledger on a table without the time index (an earlier module made it): refused, naming the fix, exit 78; a local ledger: nothing to do', async () => {
  const older = await createOlderLedgerTable(ddb, `${table}-older`)
  const cfg = join(dir, 'older.json')
  const local = join(dir, 'local.json')
  try {
    const base = JSON.parse(readFileSync(configFile, 'utf8'))
    writeFileSync(cfg, JSON.stringify({ ...base, fleet: { ...fleetCfg, ledger: { ...fleetCfg.ledger, table: older } } }))
    writeFileSync(local, JSON.stringify({ ...base, fleet: { ledger: { kind: 'local', path: join(dir, 'ledger') } } }))
    const r = spawnSync(process.execPath, [hook, 'index-ledger', cfg], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' }
    })
    expect({ code: r.status, out: r.stdout, err: r.stderr }).toEqual({
      code: 78,
      out: '',
      err: `index-ledger: DynamoDB ${older} (${TEST_REGION}) has no index time-index: apply terraform/modules/ledger of this version (it adds it), then run this again\n`
    })
    const l = spawnSync(process.execPath, [hook, 'index-ledger', local], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir } })
    expect({ code: l.status, out: l.stdout, err: l.stderr }).toEqual({
      code: 0,
      out: 'index-ledger: nothing to do: fleet.ledger is local (report reads its files by range already)\n',
      err: ''
    })
    const lj = spawnSync(process.execPath, [hook, 'index-ledger', local, '--json'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: dir }
    })
    expect({ code: lj.status, out: JSON.parse(lj.stdout) }).toEqual({ code: 0, out: { ledger: 'local', items: 0, indexed: 0 } })
  } finally {
    await ddb.send(new DeleteTableCommand({ TableName: older })).catch(() => undefined)
  }
})

test('a bad --until through the entry point: one line naming the flag, exit 64', () => {
  const r = run(['--until', '2026-11-31'])
  expect(r.code).toBe(64)
  expect(r.out).toBe('')
  expect(r.err).toMatch(/^report: --until "2026-11-31" is not a time: give [^\n]*\n$/)
})
