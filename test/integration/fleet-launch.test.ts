/**
 * The fleet ledger around kind ec2's launches, through dist/index.js against moto (EC2 and
 * DynamoDB on loopback):
 *   - caps under a race: 3 "runner hosts" × 20 concurrent prepare_job (60 hook processes, each its
 *     own runner name, TMPDIR and local root) against caps.instances 10 with a DynamoDB ledger:
 *     exactly 10 instances launched (counted in moto by a tag unique to the test), the 50 others
 *     refused with exactly one `::error::` line, never 11; cleanup settles the 10.
 *   - the daily budget with an injected clock (RCH_LEDGER_NOW_MS): refused when the day's budget
 *     is spent, allowed the next day.
 *   - a type without a price while a budget is set, and a ledger that cannot be written: refused,
 *     nothing launched, nothing counted.
 *   - a whole job (stand-in instance): the timings line at the end of prepare_job and cleanup_job,
 *     the job record, heartbeats of a running step, and settlement with the real instance time.
 *
 * How the launched jobs of the race end (said here as the brief allows): nothing boots their
 * instances (no stand-in), so each waits for its address after RunInstances; the test SIGKILLs
 * those 10 hook processes once their instances exist, and a state-less cleanup_job of each runner
 * (what the runner does after a prepare_job that died) terminates the instance and settles its
 * reservation, found by the instance's reservation tag. The 10 really launch in moto.
 *
 * Every DynamoDB request goes through ledger-serial-proxy.ts (moto's transactions are not atomic).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { randomUUID } from 'node:crypto'
import { DeleteTableCommand, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb'
import { DescribeInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2'
import { FleetSchema } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import { openLedger } from '../../src/fleet/open-ledger'
import type { LedgerRecord } from '../../src/fleet/ledger'
import { DUMMY_CREDENTIALS, ec2Client, loadMoto, motoImageId, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable } from '../helpers/ledger-table'
import { EC2_HOOK_ENV, dumpRun, ec2RunnerConfig, instanceName, startInstanceBooter, tagsOf } from '../helpers/fake-instance'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { errorLines } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { testImages } from '../helpers/testenv'
import { startSerialProxy, type SerialProxy } from './ledger-serial-proxy'

jest.setTimeout(240_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

const RESERVATION_TAG = 'remote-container-hooks:reservation'
const TEST_TAG = 'rch-fleet-test'
const moto = loadMoto().endpoint
let ec2: EC2Client
let ami: string
let proxy: SerialProxy
const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint: moto, credentials: DUMMY_CREDENTIALS })
const tables: string[] = []
const runners: FakeRunner[] = []

beforeAll(async () => {
  ec2 = ec2Client()
  ami = await motoImageId(ec2)
  proxy = await startSerialProxy(moto)
})
afterAll(async () => {
  for (const t of tables) await ddb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)
  ddb.destroy()
  await proxy?.close()
  // Whatever a failed test left running in moto is terminated by a state-less cleanup of its runner.
  for (const r of runners) r.dispose()
  ec2?.destroy()
})

async function newTable(): Promise<string> {
  const name = `rch-fleet-launch-${process.pid}-${Date.now()}-${tables.length}`
  await createLedgerTable(ddb, name)
  tables.push(name)
  return name
}

const counter = async (table: string, pk: string, attr: string): Promise<number> =>
  Number((await ddb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: pk } }, ConsistentRead: true }))).Item?.[attr]?.N ?? 0)

/** Every instance (any state) carrying this test's tag value. */
async function instancesTagged(value: string): Promise<Instance[]> {
  const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${TEST_TAG}`, Values: [value] }] }))
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])
}

/** The step log's `timings:` lines (without the hook's prefix). */
const timingsLines = (r: HookRun): string[] =>
  r.stdout
    .split('\n')
    .map((l) => l.replace(/^\[remote-hooks\] /, ''))
    .filter((l) => l.startsWith('timings:'))

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A runner whose hook launches kind ec2 instances tagged `tag`, with its own TMPDIR (its own local root). */
function fleetRunner(label: string, tag: string, fleet: object, provider: Record<string, unknown> = {}, name = instanceName('fl')) {
  const runner = new FakeRunner({
    name: `fleet-${label}-${process.pid}-${randomUUID().slice(0, 6)}`,
    config: {
      ...ec2RunnerConfig({
        endpoint: moto,
        imageId: ami,
        name,
        provider: { acquireTimeoutSeconds: 60, instanceTypes: ['m7i.large'], tags: { [TEST_TAG]: tag }, ...provider }
      }),
      fleet
    }
  })
  runners.push(runner)
  const tmp = path.join(runner.root, 't')
  fs.mkdirSync(tmp, { mode: 0o700 })
  return { runner, env: { ...EC2_HOOK_ENV, TMPDIR: tmp } }
}

type FleetRunner = ReturnType<typeof fleetRunner>

const jobArgs = (r: FakeRunner) => ({ container: r.jobContainer(testImages.glibc), services: [] })

function startPrepare(f: FleetRunner, env: Record<string, string> = {}) {
  return f.runner.start('prepare_job', jobArgs(f.runner), { state: null, env: { ...f.env, ...env } })
}

/** A state-less cleanup_job of the runner, as after a prepare_job that died. */
function cleanupWithoutState(f: FleetRunner, env: Record<string, string> = {}): Promise<HookRun> {
  return f.runner.call('cleanup_job', {}, { state: null, env: { ...f.env, ...env } })
}

/**
 * Starts prepare_job, waits until its instance exists in moto (and, given `attached`, until the
 * ledger has it attached), then SIGKILLs it (its reservation stays open).
 */
async function launchThenKill(
  f: FleetRunner,
  tag: string,
  env: Record<string, string> = {},
  attached?: (instanceId: string) => Promise<boolean>
): Promise<Instance> {
  const run = startPrepare(f, env)
  const owner = f.runner.owner
  let mine: Instance | undefined
  const seen = async (): Promise<boolean> => {
    mine = (await instancesTagged(tag)).find((i) => tagsOf(i)['remote-container-hooks:owner'] === owner)
    return mine !== undefined && (!attached || (await attached(mine.InstanceId!)))
  }
  let launched = false
  await waitUntil(async () => (launched = await seen()) || run.child.exitCode !== null, 60_000, 200)
  run.child.kill('SIGKILL')
  const done = await run.done
  if (!launched || !mine) throw new Error(`no instance launched:\n${dumpRun(done)}`)
  return mine
}

test('3 runner hosts × 20 concurrent prepare_job against caps.instances 10 (DynamoDB ledger): exactly 10 launched, 50 refused with the line, never 11; cleanup settles the 10', async () => {
  const table = await newTable()
  const tag = randomUUID()
  const fleet = {
    ledger: { kind: 'dynamodb', table, region: TEST_REGION, endpoint: proxy.endpoint },
    caps: { instances: 10 },
    budget: { perDayUsd: 50, prices: { 'm7i.large': 0.1008 } }
  }
  // The launched wait for an address far longer than the race takes on a busy 2-core machine.
  const hosts = [0, 1, 2].map((h) =>
    Array.from({ length: 20 }, (_, i) => fleetRunner(`h${h}-${i}`, tag, fleet, { acquireTimeoutSeconds: 300 }))
  )
  const all = hosts.flat()
  const runs = all.map((f) => ({ f, run: startPrepare(f) }))
  const exited: { f: FleetRunner; r: HookRun }[] = []
  for (const { f, run } of runs) void run.done.then((r) => exited.push({ f, r }))

  // The refused exit on their own; the launched wait for an address nothing will publish.
  await waitUntil(() => exited.length >= 50, 150_000, 250)
  const launched = await instancesTagged(tag)
  const refused = exited.map((e) => e.r)
  // 10 × (6 h × 0.1008 USD) reserved = 6.048 USD, shown rounded up.
  const line = '::error::fleet cap reached: 10 of 10 instances (budget today 6.05 of 50.00 USD)'
  const odd = refused.filter((r) => errorLines(r)[0] !== line).map((r) => dumpRun(r))
  expect({ exited: refused.length, launched: launched.length, odd }).toEqual({ exited: 50, launched: 10, odd: [] })
  for (const r of refused) expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 70, errors: [line] })

  // Never 11: a moment later still 10, and each launched one belongs to a runner that was not refused.
  await sleep(1000)
  expect(await instancesTagged(tag)).toHaveLength(10)
  const waiting = runs.filter(({ f }) => !exited.some((e) => e.f === f))
  expect(waiting).toHaveLength(10)
  expect(new Set(launched.map((i) => tagsOf(i)['remote-container-hooks:owner']))).toEqual(new Set(waiting.map(({ f }) => f.runner.owner)))
  // Each instance carries its reservation from creation.
  for (const i of launched) expect(tagsOf(i)[RESERVATION_TAG]).toMatch(/^[0-9a-f-]{36}$/)
  expect(await counter(table, 'counter#instances', 'n')).toBe(10)

  for (const { run } of waiting) run.child.kill('SIGKILL')
  await Promise.all(waiting.map(({ run }) => run.done))
  const cleaned = await Promise.all(waiting.map(({ f }) => cleanupWithoutState(f)))
  for (const c of cleaned) expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })

  const ledger = new DynamoLedger(FleetSchema.parse(fleet), FleetSchema.parse(fleet).ledger as never, {
    clock: { now: () => Date.now() },
    client: { credentials: DUMMY_CREDENTIALS }
  })
  try {
    expect(await ledger.unsettled()).toEqual([])
    expect(await counter(table, 'counter#instances', 'n')).toBe(0)
    const records = await ledger.records()
    expect(records).toHaveLength(10)
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(launched.map((i) => tagsOf(i)[RESERVATION_TAG])))
    for (const r of records) expect(r.billedSeconds).toBeGreaterThanOrEqual(60)
  } finally {
    ledger.close()
  }
  const after = await instancesTagged(tag)
  expect(after.filter((i) => !['terminated', 'shutting-down'].includes(i.State?.Name ?? ''))).toEqual([])
  expect(after).toHaveLength(10)
})

describe('the budget and refusals (local ledger, injected clock)', () => {
  const DAY1 = Date.UTC(2026, 5, 1, 12)
  const H = 3600_000
  const clock = (ms: number) => ({ RCH_LEDGER_NOW_MS: String(ms) })
  let dir: string
  let fleet: Record<string, unknown>
  beforeAll(() => {
    dir = fs.mkdtempSync('/tmp/rch-fleet-ledger-')
    fs.chmodSync(dir, 0o700)
    // 1 h of m7i.large reserves 1.00 USD: the day's 1.50 pays for one.
    fleet = { ledger: { kind: 'local', path: dir }, budget: { perDayUsd: 1.5, prices: { 'm7i.large': 1 } } }
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  const ledger = () => openLedger(FleetSchema.parse(fleet), { localRoot: '/nonexistent' })

  test("refused once the day's budget is spent, allowed the next day; a state-less cleanup settles by the instance's tag", async () => {
    const tag = randomUUID()
    const a = fleetRunner('budget-a', tag, fleet, { maxLifetimeMinutes: 60 })
    // Killed once attached: the billing this test checks starts at the attach (a kill before it is
    // the state-less cleanup's to attach, from EC2's launch time, which the injected clock does not move).
    const attached = async (id: string): Promise<boolean> => {
      const l = await ledger()
      return (await l.unsettled()).some((r) => r.instanceId === id)
    }
    const first = await launchThenKill(a, tag, clock(DAY1), attached)

    const b = fleetRunner('budget-b', tag, fleet, { maxLifetimeMinutes: 60 })
    const refused = await b.runner.call('prepare_job', jobArgs(b.runner), { state: null, env: { ...b.env, ...clock(DAY1 + H) } })
    expect({ code: refused.code, errors: errorLines(refused) }).toEqual({
      code: 70,
      errors: [
        '::error::fleet budget reached: budget today 1.00 of 1.50 USD (this m7i.large reserves 1.00 USD for up to 60 min; 1 instances running)'
      ]
    })
    expect((await instancesTagged(tag)).map((i) => i.InstanceId)).toEqual([first.InstanceId])

    // The next day the same request launches (positive control: this config does launch).
    const c = fleetRunner('budget-c', tag, fleet, { maxLifetimeMinutes: 60 })
    const next = await launchThenKill(c, tag, clock(DAY1 + 24 * H), attached)
    expect(await instancesTagged(tag)).toHaveLength(2)

    expect((await cleanupWithoutState(a, clock(DAY1 + 90_000))).code).toBe(0)
    expect((await cleanupWithoutState(c, clock(DAY1 + 24 * H + 30_000))).code).toBe(0)
    const l = await ledger()
    const recs = await l.records()
    expect(await l.unsettled()).toEqual([])
    const byInstance = new Map(recs.map((r) => [r.instanceId, r]))
    const ra = byInstance.get(first.InstanceId) as LedgerRecord
    const rc = byInstance.get(next.InstanceId) as LedgerRecord
    expect([ra.day, rc.day]).toEqual(['2026-06-01', '2026-06-02'])
    // Settled by the injected clock: about 90 s from attach (per second, 60 s minimum), and 60 s for the short one.
    expect(ra.billedSeconds).toBeGreaterThanOrEqual(80)
    expect(ra.billedSeconds).toBeLessThan(100)
    expect(rc.billedSeconds).toBe(60)
    expect(rc.actualMicro).toBe(Math.ceil((60 * 1_000_000) / 3600))
    l.close()
  })

  test('a type without a price while a budget is set is refused with the line; nothing launched, nothing counted', async () => {
    const tag = randomUUID()
    const before = (await (await ledger()).records()).length
    const f = fleetRunner('noprice', tag, fleet, { instanceTypes: ['m6i.large'] })
    const r = await f.runner.call('prepare_job', jobArgs(f.runner), { state: null, env: f.env })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({
      code: 70,
      errors: ['::error::fleet budget: no price for instance type m6i.large (add it to fleet.budget.prices)']
    })
    expect(await instancesTagged(tag)).toEqual([])
    expect((await (await ledger()).records()).length).toBe(before)
  })

  test('a ledger that cannot be written before a launch fails the job naming fleet.ledger; nothing launched', async () => {
    const tag = randomUUID()
    const f = fleetRunner('noledger', tag, {
      ledger: { kind: 'dynamodb', table: `rch-missing-${randomUUID()}`, region: TEST_REGION, endpoint: proxy.endpoint },
      caps: { instances: 5 }
    })
    const r = await f.runner.call('prepare_job', jobArgs(f.runner), { state: null, env: f.env })
    const errors = errorLines(r)
    expect({ code: r.code, n: errors.length }).toEqual({ code: 70, n: 1 })
    expect(errors[0]).toMatch(
      /^::error::fleet\.ledger \(dynamodb\): cannot reserve a launch, so the caps and the budget cannot be checked: /
    )
    expect(await instancesTagged(tag)).toEqual([])
  })
})

test('a whole job: timings lines, the job record, heartbeats while a step runs, settlement at release with the real time', async () => {
  const tag = randomUUID()
  const name = instanceName('flj')
  const dir = fs.mkdtempSync('/tmp/rch-fleet-job-')
  fs.chmodSync(dir, 0o700)
  const fleet = { ledger: { kind: 'local', path: dir }, budget: { perDayUsd: 20, prices: { 'm7i.large': 0.1008 } } }
  const f = fleetRunner('job', tag, fleet, {}, name)
  const booter = startInstanceBooter(ec2, { owner: f.runner.owner, name: () => name })
  const l = await openLedger(FleetSchema.parse(fleet), { localRoot: '/nonexistent' })
  try {
    const prep = await f.runner.call('prepare_job', jobArgs(f.runner), { state: null, env: f.env })
    expect({ code: prep.code, errors: errorLines(prep) }).toEqual({ code: 0, errors: [] })
    f.runner.state = prep.response.state
    const host = prep.response.state.host
    const line = timingsLines(prep)
    expect(line).toHaveLength(1)
    expect(line[0]).toMatch(
      /^timings: acquire \d+\.\d s, boot \d+\.\d s, ssh ready \d+\.\d s, first sync \d+\.\d s, containers \d+\.\d s, health \d+\.\d s \(total \d+\.\d s\)$/
    )
    const [rec] = await l.records()
    expect(rec).toMatchObject({ id: host.reservation, instanceId: host.instanceId, instanceType: 'm7i.large', vcpus: 2 })
    expect(rec.heartbeatAt).toBeGreaterThanOrEqual(rec.attachedAt!)
    expect(Object.keys(rec.timings).sort()).toEqual(['acquire', 'boot', 'containers', 'health', 'ssh', 'sync', 'total'])
    const [job] = await l.jobs()
    expect(job).toMatchObject({
      jobId: prep.response.state.jobId,
      repository: 'acme/widgets',
      workflow: '.github/workflows/ec2.yml',
      runId: '9876543210',
      job: 'build',
      runner: f.runner.name,
      provider: 'ec2',
      machine: host.instanceId,
      reservationId: host.reservation
    })

    // A step longer than the beat period writes heartbeats; with the default period (a minute) the same step writes none.
    const step = async (env: Record<string, string>) => {
      const { args } = f.runner.scriptStep('sleep 1.6\n')
      const r = await f.runner.call('run_script_step', args, { env: { ...f.env, ...env } })
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      return r
    }
    const missed =
      /^::warning::the fleet ledger did not take this step's heartbeat \(.*\): a job without one for fleet\.reap\.deadAfterMinutes is judged dead by reap, which ends its machine$/m
    const beatAt = async () => (await l.records())[0].heartbeatAt
    const b0 = await beatAt()
    await step({})
    expect(await beatAt()).toBe(b0)
    const beaten = await step({ RCH_LEDGER_BEAT_MS: '400' })
    const b1 = await beatAt()
    expect(b1).toBeGreaterThan(b0!)
    expect(beaten.stdout).not.toMatch(missed)
    // A ledger the step cannot write (its folder no longer private): the step says so at its end.
    fs.chmodSync(dir, 0o755)
    try {
      expect((await step({ RCH_LEDGER_BEAT_MS: '400' })).stdout).toMatch(missed)
    } finally {
      fs.chmodSync(dir, 0o700)
    }

    const clean = await f.runner.call('cleanup_job', {}, { env: f.env })
    expect({ code: clean.code, errors: errorLines(clean) }).toEqual({ code: 0, errors: [] })
    expect(timingsLines(clean)).toEqual([expect.stringMatching(/^timings: terminate \d+\.\d s \(total \d+\.\d s\)$/)])
    const [done] = await l.records()
    expect(done.settledAt).toBeDefined()
    // cleanup_job beats at its start, before the terminate settles the reservation.
    expect(done.heartbeatAt).toBeGreaterThan(b1!)
    const seconds = Math.max(60, Math.ceil((done.endedAt! - done.attachedAt!) / 1000))
    expect(done.billedSeconds).toBe(seconds)
    expect(done.actualMicro).toBe(Math.ceil((seconds * 100_800) / 3600))
    expect(done.timings).toMatchObject({ cleanup: expect.any(Number), terminate: expect.any(Number) })
    const [ended] = await l.jobs()
    expect(ended.endedAt).toBeGreaterThanOrEqual(ended.startedAt)
    expect(ended.timings).toMatchObject({ total: expect.any(Number), cleanup: expect.any(Number), terminate: expect.any(Number) })
  } finally {
    if (f.runner.state) await cleanupWithoutState(f).catch(() => undefined)
    await booter.stop()
    l.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
