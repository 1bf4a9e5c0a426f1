/**
 * A pool's launches in the fleet ledger, through dist/index.js against moto (EC2, Auto Scaling and
 * DynamoDB; every DynamoDB request through ledger-serial-proxy.ts), with loopback sshds as members
 * (test/helpers/pool-env.ts). Proves: a scale-out reserves the member first and claims the new
 * member for it (tag + attach); past caps.instances it is refused, the group is NOT raised beyond
 * what was reserved, and the waiting job's line names the cap; recycling the reserved member
 * settles it (and lowers the desired capacity, so nothing unreserved replaces it); an empty pool
 * whose scale-out is refused fails at once with the ledger's line; a stopped member is not started
 * past the cap, and is started (reserved, tagged, attached) once there is room.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import type { ReserveRequest } from '../../src/fleet/ledger'
import { poolHookConfig, poolKeyPair, startTestPool, type Pool, type PoolOptions } from '../helpers/pool-env'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { dumpRun, hookCall, hookPrepare, tagsOf } from '../helpers/fake-instance'
import { errorLines } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import { DUMMY_CREDENTIALS, ec2Client, loadMoto, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable } from '../helpers/ledger-table'
import { startSerialProxy, type SerialProxy } from './ledger-serial-proxy'

jest.setTimeout(240_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
const RESERVATION_TAG = 'remote-container-hooks:reservation'

const moto = loadMoto().endpoint
const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint: moto, credentials: DUMMY_CREDENTIALS })
let proxy: SerialProxy
let dir: string
let key: string
let pub: string
let ec2: EC2Client
const tables: string[] = []
const pools: Pool[] = []
const ledgers: DynamoLedger[] = []

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-pool-fleet-'))
  ;({ key, pub } = poolKeyPair(dir))
  ec2 = ec2Client()
  proxy = await startSerialProxy(moto)
})
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close()
})
afterAll(async () => {
  for (const l of ledgers) l.close()
  for (const t of tables) await ddb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)
  ddb.destroy()
  await proxy?.close()
  ec2?.destroy()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh ledger table, the hook's fleet section for it, and the ledger as the test reads it. */
async function ledger(caps: object): Promise<{ fleet: Record<string, unknown>; read: DynamoLedger }> {
  const table = `rch-pool-fleet-${process.pid}-${Date.now()}-${tables.length}`
  await createLedgerTable(ddb, table)
  tables.push(table)
  const fleet = { ledger: { kind: 'dynamodb', table, region: TEST_REGION, endpoint: proxy.endpoint }, caps }
  const parsed: FleetConfig = FleetSchema.parse(fleet)
  const read = new DynamoLedger(parsed, parsed.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: () => Date.now() },
    client: { credentials: DUMMY_CREDENTIALS }
  })
  ledgers.push(read)
  return { fleet, read }
}

/** Another runner host's reservation, filling the cap. */
const OTHER: ReserveRequest = {
  repository: 'acme/other',
  workflow: 'ci',
  runId: '1',
  job: 'j',
  runner: 'elsewhere',
  instanceType: 't3.micro',
  vcpus: 2,
  maxLifetimeMinutes: 60
}

async function pool(name: string, size: number, over: Partial<PoolOptions> = {}): Promise<Pool> {
  return (await startTestPool(pools, name, size, pub, over)).pool
}

const runnerFor = (p: Pool, fleet: object, provider: Record<string, unknown> = {}): FakeRunner =>
  new FakeRunner({
    parent: dir,
    config: { ...poolHookConfig(p, key, { lease: { ttlSeconds: 15 }, waitTimeoutSeconds: 60, ...provider }), fleet }
  })
const jobArgs = (r: FakeRunner): unknown => ({ container: r.jobContainer(testImages.tiny), services: [] })
const cleanup = (r: FakeRunner): Promise<HookRun> => hookCall(r, 'cleanup_job', {})
const memberOf = (r: FakeRunner): string => (r.state as { host: { instanceId: string } }).host.instanceId
const ok = (r: HookRun): { code: number | null; out: string } => ({ code: r.code, out: r.code ? dumpRun(r) : '' })

async function tags(id: string): Promise<Record<string, string>> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
  return tagsOf(res.Reservations?.[0]?.Instances?.[0] ?? {})
}

test('scale-out reserves first and claims the new member; past caps.instances the group is not raised; recycling it settles', async () => {
  const { fleet, read } = await ledger({ instances: 1 })
  const p = await pool('fleet-grow', 1, { maxSize: 3 })
  const r1 = runnerFor(p, fleet)
  expect(ok(await hookPrepare(r1, jobArgs(r1)))).toEqual({ code: 0, out: '' })
  const first = memberOf(r1)
  // The member Terraform made is not reserved.
  expect(await read.unsettled()).toEqual([])

  // r2 waits: the pool asks for one more member, reserved first, and r2 gets it.
  const r2 = runnerFor(p, fleet, { waitTimeoutSeconds: 90, reuse: { maxJobsPerVm: 1 } })
  const prep2 = await hookPrepare(r2, jobArgs(r2), { limitMs: 120_000 })
  expect(ok(prep2)).toEqual({ code: 0, out: '' })
  expect(prep2.stdout + prep2.stderr).toMatch(/asking for 2 members \(was 1, max 3\)/)
  const added = memberOf(r2)
  const [res] = await read.unsettled()
  expect(res).toMatchObject({ pool: p.name, instanceType: 't3.micro', vcpus: 2, maxLifetimeMinutes: 720, instanceId: added })
  expect((await tags(added))[RESERVATION_TAG]).toBe(res.id)

  // r3 waits too (r2's member, there for one job, is marked for replacement): the cap is reached,
  // so the group stays at 2 and the job's line names the cap.
  const r3 = runnerFor(p, fleet, { waitTimeoutSeconds: 8 })
  const prep3 = await hookPrepare(r3, jobArgs(r3))
  expect(prep3.code).not.toBe(0)
  expect(errorLines(prep3)).toEqual([
    expect.stringMatching(
      /^::error::pool \S+: 1 of 1 busy, 0 starting, 1 being replaced, desired 2 of max 3; scale-out refused: fleet cap reached: 1 of 1 instances: no member free after 8 s/
    )
  ])
  expect((await p.describe())?.desiredCapacity).toBe(2)
  expect(await read.unsettled()).toHaveLength(1)

  // r2's member served its one job: it is recycled, its reservation settled, the group lowered.
  const c2 = await cleanup(r2)
  expect(ok(c2)).toEqual({ code: 0, out: '' })
  expect(c2.stdout + c2.stderr).toMatch(new RegExp(`${added} is replaced: `))
  expect(await read.unsettled()).toEqual([])
  const [settled] = await read.records()
  expect(settled).toMatchObject({ id: res.id, instanceId: added, settledAt: expect.any(Number), billedSeconds: expect.any(Number) })
  expect((await p.describe())?.desiredCapacity).toBe(1)
  expect(ok(await cleanup(r1))).toEqual({ code: 0, out: '' })
  // Each job's record names the pool its member came from (the provider says so, not the handler).
  const jobs = (await read.jobs()).filter((j) => j.provider === 'ec2-pool')
  expect(jobs.map((j) => [j.machine, j.pool]).sort()).toEqual(
    [
      [added, p.name],
      [first, p.name]
    ].sort()
  )
})

test('an empty pool whose scale-out the ledger refuses fails at once with the ledger’s line', async () => {
  const { fleet, read } = await ledger({ instances: 1 })
  expect((await read.reserve(OTHER)).ok).toBe(true)
  const p = await pool('fleet-empty', 0, { maxSize: 2 })
  const r = runnerFor(p, fleet, { waitTimeoutSeconds: 60 })
  const t0 = Date.now()
  const prep = await hookPrepare(r, jobArgs(r))
  expect(prep.code).not.toBe(0)
  expect(errorLines(prep)).toEqual(['::error::fleet cap reached: 1 of 1 instances'])
  expect(Date.now() - t0).toBeLessThan(20_000)
  expect((await p.describe())?.desiredCapacity).toBe(0)
  expect(await read.unsettled()).toHaveLength(1)
})

test('a stopped member is not started past the cap, and is started (reserved, tagged, attached) once there is room', async () => {
  const { fleet, read } = await ledger({ instances: 1 })
  const other = await read.reserve(OTHER)
  if (!other.ok) throw new Error(other.line)
  const p = await pool('fleet-stopped', 2, { maxSize: 2 })
  const [a, b] = p.members({ live: true })
  await p.stopMember(b.id)
  const r1 = runnerFor(p, fleet)
  expect(ok(await hookPrepare(r1, jobArgs(r1)))).toEqual({ code: 0, out: '' })
  expect(memberOf(r1)).toBe(a.id)

  const r2 = runnerFor(p, fleet, { waitTimeoutSeconds: 8 })
  const refused = await hookPrepare(r2, jobArgs(r2))
  expect(refused.code).not.toBe(0)
  expect(errorLines(refused)).toEqual([
    expect.stringMatching(/1 stopped.*; scale-out refused: fleet cap reached: 1 of 1 instances: no member free after 8 s/)
  ])
  expect(refused.stdout + refused.stderr).not.toMatch(/starting stopped member/)
  expect(p.member(b.id).state).toBe('stopped')

  // Positive control: with room in the ledger the same member is started, under its own reservation.
  await read.settle(other.id, { endedAt: Date.now() })
  const r3 = runnerFor(p, fleet, { waitTimeoutSeconds: 90 })
  const prep = await hookPrepare(r3, jobArgs(r3), { limitMs: 120_000 })
  expect(ok(prep)).toEqual({ code: 0, out: '' })
  expect(prep.stdout + prep.stderr).toMatch(new RegExp(`starting stopped member ${b.id}`))
  const [res] = await read.unsettled()
  expect(res).toMatchObject({ instanceId: b.id, pool: p.name })
  expect((await tags(b.id))[RESERVATION_TAG]).toBe(res.id)
  expect(ok(await cleanup(r3))).toEqual({ code: 0, out: '' })
  expect(ok(await cleanup(r1))).toEqual({ code: 0, out: '' })
})
