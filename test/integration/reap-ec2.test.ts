/**
 * `reap` for kind ec2 through dist/index.js, against moto's EC2 and moto's DynamoDB (the ledger,
 * through the serialising proxy). The instances are made here with the tags the hook puts on at
 * launch; every test scopes reap by a provider.tags value of its own, so parallel test files on the
 * same moto are never looked at. Time moves with RCH_LEDGER_NOW_MS (reap's and the ledger's clock).
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { RunInstancesCommand, TerminateInstancesCommand, type EC2Client, type Tag } from '@aws-sdk/client-ec2'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import type { LedgerRecord, ReserveRequest } from '../../src/fleet/ledger'
import { RESERVE_REQ } from '../helpers/reserve-request'
import { DUMMY_CREDENTIALS, ec2Client, loadMoto, motoImageId, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable } from '../helpers/ledger-table'
import { describeInstance, tagsOf } from '../helpers/fake-instance'
import { repoRoot } from '../helpers/testenv'
import { startDateShiftProxy } from './date-shift-proxy'
import { startSerialProxy, type SerialProxy } from './ledger-serial-proxy'
import { expectOk, rowOf, runReap, type ReapOut } from './reap-helpers'

jest.setTimeout(180_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

const moto = loadMoto().endpoint
const MIN = 60_000
const P = 'remote-container-hooks'
let proxy: SerialProxy
let ec2: EC2Client
let imageId: string
let dir: string
const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint: moto, credentials: DUMMY_CREDENTIALS })
const tables: string[] = []

beforeAll(async () => {
  proxy = await startSerialProxy(moto)
  ec2 = ec2Client()
  imageId = await motoImageId(ec2)
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-reap-ec2-'))
})
afterAll(async () => {
  for (const t of tables) await ddb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)
  ddb.destroy()
  ec2?.destroy()
  await proxy?.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

interface Setup {
  scope: string
  config: string
  tmp: string
  ledger: DynamoLedger
  fleet: FleetConfig
  /** `endpoint`: EC2's for reap (default moto's). */
  reap(opts?: { dryRun?: boolean; at?: number; graceMinutes?: number; human?: boolean; endpoint?: string }): Promise<ReapOut>
}

let seq = 0
async function setup(reap: { deadAfterMinutes?: number; graceMinutes?: number } = {}): Promise<Setup> {
  const scope = `reap-${process.pid}-${Date.now().toString(36)}-${seq++}`
  const table = `rch-reap-${scope}`
  await createLedgerTable(ddb, table)
  tables.push(table)
  const fleetRaw = {
    ledger: { kind: 'dynamodb', table, region: TEST_REGION, endpoint: proxy.endpoint },
    budget: { perDayUsd: 1000, prices: { 't3.medium': 0.0416 } },
    reap: { deadAfterMinutes: 15, graceMinutes: 2, ...reap }
  }
  const fleet = FleetSchema.parse(fleetRaw)
  const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'))
  const file = (grace?: number, endpoint = moto): string => {
    const f = path.join(dir, `${scope}-${grace ?? 'cfg'}-${endpoint === moto ? 'moto' : new URL(endpoint).port}.json`)
    const cfg = {
      provider: {
        kind: 'ec2',
        region: TEST_REGION,
        endpoint,
        imageId,
        instanceTypes: ['t3.medium'],
        tags: { 'rch-reap-test': scope }
      },
      remote: { workRoot: '/var/tmp/rch-reap' },
      fleet: grace === undefined ? fleetRaw : { ...fleetRaw, reap: { ...fleetRaw.reap, graceMinutes: grace } }
    }
    fs.writeFileSync(f, JSON.stringify(cfg))
    return f
  }
  const ledger = new DynamoLedger(fleet, fleet.ledger as Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>, {
    clock: { now: () => Date.now() },
    client: { credentials: DUMMY_CREDENTIALS }
  })
  return {
    scope,
    config: file(),
    tmp,
    ledger,
    fleet,
    reap: (o = {}) =>
      runReap(file(o.graceMinutes, o.endpoint), tmp, {
        dryRun: o.dryRun,
        human: o.human,
        env: o.at ? { RCH_LEDGER_NOW_MS: String(o.at) } : {}
      })
  }
}

const REQ: ReserveRequest = { ...RESERVE_REQ, runId: '1', runner: 'reap-test' }

async function reserve(s: Setup, at: number): Promise<string> {
  const r = await s.ledger.reserve({ ...REQ, jobId: '0123456789abcdef', runnerHost: 'reap-test-host' }, at)
  if (!r.ok) throw new Error(r.line)
  return r.id
}

/** An instance as the hook launches it: owner, expiry, cost tags, the configuration's tags, and the reservation (a tag given as undefined: left out). */
async function launch(s: Setup, tags: Record<string, string | undefined>): Promise<string> {
  const now = Date.now()
  const all: Tag[] = Object.entries({
    [`${P}:owner`]: 'fedcba9876543210',
    [`${P}:job-id`]: '0123456789abcdef',
    [`${P}:launched-at`]: new Date(now).toISOString(),
    [`${P}:expires-at`]: new Date(now + 60 * MIN).toISOString(),
    'rch-reap-test': s.scope,
    ...tags
  })
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([Key, Value]) => ({ Key, Value }))
  const res = await ec2.send(
    new RunInstancesCommand({
      ImageId: imageId,
      InstanceType: 't3.medium',
      MinCount: 1,
      MaxCount: 1,
      TagSpecifications: [{ ResourceType: 'instance', Tags: all }]
    })
  )
  return res.Instances?.[0]?.InstanceId as string
}

const state = async (id: string): Promise<string> => (await describeInstance(ec2, id)).State?.Name ?? '?'
const tags = async (id: string): Promise<Record<string, string>> => tagsOf(await describeInstance(ec2, id))
const MARK = `${P}:reap-candidate`
const byId = (rs: LedgerRecord[], id: string): LedgerRecord | undefined => rs.find((r) => r.id === id)

test('two phases: a pass marks, a pass within the grace removes nothing, a later one removes; keep tag, live job, dry run', async () => {
  const s = await setup()
  const now = Date.now()
  const rDead = await reserve(s, now - 20 * MIN)
  const rLive = await reserve(s, now - 20 * MIN)
  await s.ledger.beat(rLive, now)
  const rBack = await reserve(s, now - 20 * MIN)
  // Pass 0 starts this host's watch of each reservation's last sign of life: 20 minutes old by its
  // timestamp, but not yet watched for deadAfterMinutes here, so no job is dead yet.
  const p0 = await s.reap()
  expectOk(p0)
  expect(rowOf(p0, rDead)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/no instance yet/) })
  // The passes below run 16 minutes later; the live job beats then.
  const t1 = now + 16 * MIN
  await s.ledger.beat(rLive, t1)
  const dead = await launch(s, { [`${P}:reservation`]: rDead })
  const live = await launch(s, { [`${P}:reservation`]: rLive })
  const back = await launch(s, { [`${P}:reservation`]: rBack })
  const expired = await launch(s, { [`${P}:expires-at`]: new Date(now - MIN).toISOString() })
  const kept = await launch(s, { [`${P}:expires-at`]: new Date(now - MIN).toISOString(), [`${P}:keep`]: 'ops' })
  const foreign = await launch(s, { [`${P}:reservation`]: 'not-in-this-ledger' })
  await s.ledger.attach(rDead, dead, now - 19 * MIN)
  await s.ledger.attach(rLive, live, now - 19 * MIN)
  const ids = [dead, live, back, expired, kept, foreign]
  const snapshot = async (): Promise<unknown> => ({
    instances: await Promise.all(ids.map(async (i) => ({ i, state: await state(i), tags: await tags(i) }))),
    ledger: await s.ledger.records()
  })

  // Dry run: says what pass 1 would do, changes nothing.
  const before = await snapshot()
  const dry = await s.reap({ dryRun: true, at: t1 })
  expectOk(dry)
  expect(dry.json?.dryRun).toBe(true)
  expect(rowOf(dry, dead)).toMatchObject({
    action: 'marked',
    why: expect.stringMatching(/job dead: reserved 36 min ago, unchanged for the 1[56] min this host has watched it/)
  })
  expect(rowOf(dry, expired)).toMatchObject({ action: 'marked', why: expect.stringMatching(/past its expires-at/) })
  expect(await snapshot()).toEqual(before)
  const dryHuman = await s.reap({ dryRun: true, human: true, at: t1 })
  expect(dryHuman.stdout).toMatch(new RegExp(`instance +${dead} +would mark +job dead`))
  expect(await snapshot()).toEqual(before)

  // Pass 1 marks.
  const p1 = await s.reap({ at: t1 })
  expectOk(p1)
  expect(rowOf(p1, dead).action).toBe('marked')
  expect(rowOf(p1, back).action).toBe('marked')
  expect(rowOf(p1, expired).action).toBe('marked')
  expect(rowOf(p1, live)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/job alive: last heartbeat/) })
  expect(rowOf(p1, kept)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/keep tag/) })
  expect(rowOf(p1, foreign)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/not in this ledger/) })
  expect((await tags(dead))[MARK]).toMatch(/^\d{4}-\d\d-\d\dT/)

  // Pass 2, within the grace: nothing removed, the marks stay.
  const p2 = await s.reap({ at: t1 })
  expect(rowOf(p2, dead)).toMatchObject({ action: 'kept', why: expect.stringMatching(/removed after fleet.reap.graceMinutes 2/) })
  expect(await state(dead)).toBe('running')
  expect((await tags(dead))[MARK]).toBeDefined()

  // One job comes back to life before the last pass: its heartbeat is fresh.
  const later = t1 + 3 * MIN
  await s.ledger.beat(rBack, later)

  // Pass 3, past the grace: the dead and the expired go, the live one next to them stays.
  const p3 = await s.reap({ at: later })
  expectOk(p3)
  expect(rowOf(p3, dead)).toMatchObject({ action: 'removed', why: expect.stringMatching(/reservation .* settled/) })
  expect(rowOf(p3, expired).action).toBe('removed')
  expect(rowOf(p3, back)).toMatchObject({ action: 'unmarked', why: 'no longer a candidate: job alive: last heartbeat 0 s ago' })
  expect(rowOf(p3, live).action).toBe('left alone')
  expect(rowOf(p3, kept).action).toBe('left alone')
  expect(['shutting-down', 'terminated']).toContain(await state(dead))
  expect(['shutting-down', 'terminated']).toContain(await state(expired))
  for (const i of [live, back, kept, foreign]) expect(await state(i)).toBe('running')
  expect((await tags(back))[MARK]).toBeUndefined()
  const recs = await s.ledger.records()
  expect(byId(recs, rDead)?.settledAt).toBeDefined()
  expect(byId(recs, rLive)?.settledAt).toBeUndefined()
  expect(byId(recs, rBack)?.settledAt).toBeUndefined()
  s.ledger.close()
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [live, back, kept, foreign] }))
})

test('reservations: an ended instance is settled with its real time; one that never got an instance is settled at zero cost after two passes', async () => {
  const s = await setup({ graceMinutes: 0 })
  const t0 = Date.now()
  const rEnded = await reserve(s, t0)
  const ended = await launch(s, { [`${P}:reservation`]: rEnded })
  await s.ledger.attach(rEnded, ended)
  // A reservation whose hook died before attach: found by the instance's tag alone.
  const rTagOnly = await reserve(s, t0)
  const tagOnly = await launch(s, { [`${P}:reservation`]: rTagOnly })
  const rNone = await reserve(s, t0 - 20 * MIN)
  const rYoung = await reserve(s, t0 - MIN)
  await new Promise((r) => setTimeout(r, 2000))
  const endAt = Date.now()
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [ended, tagOnly] }))

  const p1 = await s.reap()
  expectOk(p1)
  expect(rowOf(p1, rEnded)).toMatchObject({ action: 'settled', why: expect.stringMatching(new RegExp(`its instance ${ended} ended`)) })
  expect(rowOf(p1, rTagOnly).action).toBe('settled')
  // Old by its timestamp, but this host's watch of it starts now.
  expect(rowOf(p1, rNone)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/no instance yet/) })
  expect(rowOf(p1, rYoung)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/no instance yet/) })
  let recs = await s.ledger.records()
  const e = byId(recs, rEnded) as LedgerRecord
  // Billed from attach to the end EC2 reports (or reap's now): the real time, 60 s minimum.
  expect(e.endedAt).toBeGreaterThanOrEqual(Math.floor(endAt / 1000) * 1000 - 1000)
  expect(e.endedAt).toBeLessThanOrEqual(Date.now())
  expect(e.billedSeconds).toBe(Math.max(60, Math.ceil(((e.endedAt as number) - (e.attachedAt as number)) / 1000)))
  expect(e.actualMicro).toBeGreaterThan(0)
  expect(byId(recs, rNone)?.settledAt).toBeUndefined()

  // 16 minutes later (the young one's job still beats): marked, then settled (no grace here).
  const t1 = t0 + 16 * MIN
  await s.ledger.beat(rYoung, t1)
  const p2 = await s.reap({ at: t1 })
  expect(rowOf(p2, rNone)).toMatchObject({ action: 'marked', why: expect.stringMatching(/no instance found 36 min after/) })
  expect(rowOf(p2, rYoung)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/no instance yet/) })
  // A second later: each pass's clock starts at `at` and runs from its own start.
  const p3 = await s.reap({ at: t1 + 1000 })
  expect(rowOf(p3, rNone)).toMatchObject({ action: 'settled', why: expect.stringMatching(/nothing ran for it; zero cost/) })
  recs = await s.ledger.records()
  expect(byId(recs, rNone)).toMatchObject({ actualMicro: 0 })
  expect(byId(recs, rYoung)?.settledAt).toBeUndefined()
  s.ledger.close()
})

test("clocks: a reap host whose clock is ahead of AWS's goes by AWS's (the Date of EC2's answers); control: one in step ends what is past its expiry", async () => {
  const s = await setup()
  const now = Date.now()
  // To reap through this proxy, its host's clock is 10 minutes ahead of AWS's. The instance (no
  // launched-at tag, as an older build's) expires 5 minutes from now by AWS's clock.
  const shifted = await startDateShiftProxy(moto, -10 * MIN)
  try {
    const id = await launch(s, { [`${P}:launched-at`]: undefined, [`${P}:expires-at`]: new Date(now - 5 * MIN).toISOString() })
    const ahead = await s.reap({ endpoint: shifted.endpoint })
    expectOk(ahead)
    expect(rowOf(ahead, id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/only its expiry applies \(expires /) })
    expect(shifted.answered()).toBeGreaterThan(0)
    expect((ahead.json as { awsClockOffsetSeconds?: number }).awsClockOffsetSeconds).toBeGreaterThanOrEqual(-602)
    expect((ahead.json as { awsClockOffsetSeconds?: number }).awsClockOffsetSeconds).toBeLessThanOrEqual(-598)
    expect(ahead.stderr).toMatch(
      /^reap: this runner host's clock is (59[89]|60[012]) s ahead of AWS's: this pass judged by AWS's; run time synchronisation/
    )
    expect((await tags(id))[MARK]).toBeUndefined()
    // Control: the same instance, reaped by a host in step with AWS's clock, is past its expiry.
    const inStep = await s.reap()
    expectOk(inStep)
    expect((inStep.json as { awsClockOffsetSeconds?: number }).awsClockOffsetSeconds).toBeGreaterThanOrEqual(-2)
    expect(inStep.stderr).toBe('')
    expect(rowOf(inStep, id)).toMatchObject({ action: 'marked', why: expect.stringMatching(/^past its expires-at /) })
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
  } finally {
    await shifted.close()
    s.ledger.close()
  }
})

test("clocks: an expiry stamped by a launching host behind AWS's goes by EC2's launch time plus its lifetime; control: past that, it is marked", async () => {
  const s = await setup()
  const now = Date.now()
  // Launched by a host 10 minutes behind AWS's clock with a 5-minute lifetime: its tags say it
  // expired 5 minutes ago, EC2's launch time says in 5 minutes.
  const id = await launch(s, {
    [`${P}:launched-at`]: new Date(now - 10 * MIN).toISOString(),
    [`${P}:expires-at`]: new Date(now - 5 * MIN).toISOString()
  })
  const p1 = await s.reap()
  expectOk(p1)
  expect(rowOf(p1, id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/only its expiry applies \(expires /) })
  // Control: six minutes later it is past its lifetime by EC2's launch time too.
  const p2 = await s.reap({ at: now + 6 * MIN })
  expectOk(p2)
  expect(rowOf(p2, id)).toMatchObject({
    action: 'marked',
    why: expect.stringMatching(
      /^past its lifetime counted from EC2's launch time, .* \(its expires-at tag says .*: stamped before the launch, or by a clock behind AWS's\)$/
    )
  })
  s.ledger.close()
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
})

test('an unreadable configuration: exit 78 and one line naming the field; a usage error: 64', async () => {
  const f = path.join(dir, 'bad.json')
  fs.writeFileSync(
    f,
    JSON.stringify({ provider: { kind: 'ec2', region: TEST_REGION, imageId: 'ami-1' }, fleet: { reap: { graceMinutes: -1 } } })
  )
  const r = await runReap(f, dir)
  expect(r.code).toBe(78)
  expect(r.stderr).toMatch(/fleet\.reap\.graceMinutes: /)
  expect(r.stderr.trim().split('\n')).toHaveLength(1)
  const u = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'index.js'), 'reap', '--bogus'], { encoding: 'utf8' })
  expect(u.status).toBe(64)
  expect(u.stderr).toMatch(/^reap: unknown option --bogus/)
})
