import { spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FleetSchema, type FleetConfig } from '../../src/config'
import type { ReserveRequest } from '../../src/fleet/ledger'
import { LocalLedger, localLedgerDir, newLocalLedger } from '../../src/fleet/local-ledger'
import { inTimeRange } from '../../src/fleet/ledger'
import * as jobRecord from '../../src/fleet/job-record'
import { openLedger } from '../../src/fleet/open-ledger'
import { raceHosts, removeWorkerBundle } from './fleet-procs'
import { RESERVE_REQ } from '../helpers/reserve-request'

afterAll(removeWorkerBundle)

const REQ: ReserveRequest = { ...RESERVE_REQ, pool: 'warm' }
const NOON = Date.UTC(2026, 11, 1, 12)
const PRICES = { 't3.medium': 0.0416, 't3.large': 0.0832 }

let root: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'fleet-ledger-'))
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

const fleet = (extra: object): FleetConfig => FleetSchema.parse(extra)
let clockNow = NOON
const ledger = (f: FleetConfig): LocalLedger => newLocalLedger(f, root, { now: () => clockNow })
const ok = { ok: true, id: expect.any(String) }

test('caps.instances: the 3rd of a cap of 2 is refused with the line; settling one frees a place', async () => {
  const l = ledger(fleet({ caps: { instances: 2 }, budget: { perDayUsd: 50, prices: PRICES } }))
  const a = await l.reserve(REQ, NOON)
  expect(a).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toEqual({ ok: false, line: 'fleet cap reached: 2 of 2 instances (budget today 0.09 of 50.00 USD)' })
  await l.settle((a as { id: string }).id, { endedAt: NOON + 60_000 })
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
})

test('without a budget the line has no budget part; caps.vcpus counts the request’s vCPUs', async () => {
  const l = ledger(fleet({ caps: { vcpus: 5 } }))
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toEqual({ ok: false, line: 'fleet cap reached: 4 of 5 vCPUs, 2 more needed' })
  expect(await l.reserve({ ...REQ, vcpus: 1 }, NOON)).toEqual(ok)
})

test('caps.perRepository.instances holds per repository only', async () => {
  const l = ledger(fleet({ caps: { instances: 10, perRepository: { instances: 1 } } }))
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toEqual({ ok: false, line: 'fleet cap reached: 1 of 1 instances of acme/widgets' })
  expect(await l.reserve({ ...REQ, repository: 'acme/gadgets' }, NOON)).toEqual(ok)
})

test('budget: refused once the day is spent, allowed the next day (injected clock), in the budget’s time zone', async () => {
  // 1 h of t3.large reserves 0.0832; 0.20 USD pays for 2 (0.1664), not 3 (0.2496)
  const f = fleet({ budget: { perDayUsd: 0.2, timezone: 'Europe/Berlin', prices: PRICES } })
  const l = ledger(f)
  const req = { ...REQ, instanceType: 't3.large' }
  expect(await l.reserve(req, NOON)).toEqual(ok)
  expect(await l.reserve(req, NOON)).toEqual(ok)
  expect(await l.reserve(req, NOON)).toEqual({
    ok: false,
    line: 'fleet budget reached: budget today 0.17 of 0.20 USD (this t3.large reserves 0.09 USD for up to 60 min; 2 instances running)'
  })
  // 22:59 UTC is still 1 December in Berlin (UTC+1); 23:00 UTC is 2 December there
  expect(await l.reserve(req, Date.UTC(2026, 11, 1, 22, 59))).toMatchObject({ ok: false })
  expect(await l.reserve(req, Date.UTC(2026, 11, 1, 23, 0))).toEqual(ok)
  // the clock given at open is the default
  clockNow = NOON + 24 * 3600_000
  // 2 December (Berlin): one reserved above, the 2nd fits, the 3rd not
  expect(await l.reserve(req)).toEqual(ok)
  expect(await l.reserve(req)).toMatchObject({ ok: false, line: expect.stringContaining('budget today 0.17 of 0.20 USD') })
  clockNow = NOON
  const days = (await l.records()).map((r) => r.day)
  expect(days).toEqual(['2026-12-01', '2026-12-01', '2026-12-02', '2026-12-02'])
})

test('a type without a price is refused while a budget is set, naming the type; without a budget it counts at no cost', async () => {
  expect(await ledger(fleet({ budget: { perDayUsd: 5, prices: PRICES } })).reserve({ ...REQ, instanceType: 'm7i.large' }, NOON)).toEqual({
    ok: false,
    line: 'fleet budget: no price for instance type m7i.large (add it to fleet.budget.prices)'
  })
  const l = ledger(fleet({}))
  const r = await l.reserve({ ...REQ, instanceType: 'm7i.large' }, NOON)
  expect(r).toEqual(ok)
  expect((await l.records())[0]).toMatchObject({ priceMicroPerHour: null, reservedMicro: 0 })
})

test('settlement: per second with a 60 s minimum, from attach time, replacing the reserved cost on its day; idempotent', async () => {
  const l = ledger(fleet({ budget: { perDayUsd: 1, prices: PRICES } }))
  const id = ((await l.reserve(REQ, NOON)) as { id: string }).id
  expect((await l.records())[0].reservedMicro).toBe(41_600)
  // 10 s run: billed 60 s
  const s1 = await l.settle(id, { endedAt: NOON + 10_000 })
  expect(s1).toMatchObject({ billedSeconds: 60, actualMicro: Math.ceil((41_600 * 60) / 3600), endedAt: NOON + 10_000 })
  expect(s1.actualMicro).toBe(694)
  const again = await l.settle(id, { endedAt: NOON + 3_600_000 })
  expect(again).toEqual(s1)

  const id2 = ((await l.reserve(REQ, NOON)) as { id: string }).id
  await l.attach(id2, 'i-abc', NOON + 30_000)
  // 90.2 s after attach: 91 s, per second
  const s2 = await l.settle(id2, { endedAt: NOON + 30_000 + 90_200 })
  expect(s2).toMatchObject({
    instanceId: 'i-abc',
    attachedAt: NOON + 30_000,
    billedSeconds: 91,
    actualMicro: Math.ceil((41_600 * 91) / 3600)
  })
  // the day now carries the two real costs only: 0.000694 + 0.001052 -> "0.01"; 23 more 1 h reservations fit in 1.00, not 24
  for (let i = 0; i < 23; i++) expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toMatchObject({
    ok: false,
    line: expect.stringMatching(/^fleet budget reached: budget today 0\.96 of 1\.00 USD/)
  })
  expect(await l.unsettled()).toHaveLength(23)
})

test('records: fields, timings, time range; unsettled; unknown id', async () => {
  const l = ledger(fleet({ budget: { perDayUsd: 50, prices: PRICES } }))
  const a = ((await l.reserve(REQ, NOON)) as { id: string }).id
  const b = ((await l.reserve({ ...REQ, runner: 'r2' }, NOON + 1000)) as { id: string }).id
  await l.recordTimings(a, { acquire: 1500 })
  await l.recordTimings(a, { boot: 20_000 })
  await l.settle(b, { endedAt: NOON + 120_000 })
  expect(await l.records({ since: NOON, until: NOON + 1000 })).toEqual([
    {
      ...REQ,
      id: a,
      day: '2026-12-01',
      reservedAt: NOON,
      priceMicroPerHour: 41_600,
      reservedMicro: 41_600,
      timings: { acquire: 1500, boot: 20_000 }
    }
  ])
  expect((await l.records({ since: NOON + 1 })).map((r) => r.id)).toEqual([b])
  expect((await l.unsettled()).map((r) => r.id)).toEqual([a])
  await expect(l.settle('nope', { endedAt: NOON })).rejects.toThrow('fleet ledger: no reservation nope')
  await expect(l.recordTimings(a, { boot: NaN })).rejects.toThrow('fleet ledger: timing "boot" is not a number of milliseconds')
  await expect(l.attach('constructor', 'i-1')).rejects.toThrow('no reservation constructor')
})

test('the ledger is private: 0600 file in a 0700 folder; default folder under the local root; a folder open to others is refused', async () => {
  const l = await openLedger(fleet({}), { localRoot: root, clock: { now: () => NOON } })
  await l.reserve(REQ)
  expect(localLedgerDir(fleet({}), root)).toBe(`${root}/ledger`)
  expect(statSync(`${root}/ledger`).mode & 0o777).toBe(0o700)
  expect(statSync(`${root}/ledger/ledger.json`).mode & 0o777).toBe(0o600)
  const open = join(root, 'open')
  mkdirSync(open)
  chmodSync(open, 0o755)
  expect(() => newLocalLedger(fleet({ ledger: { kind: 'local', path: open } }), root, { now: () => NOON })).toThrow(
    /is open to other users/
  )
})

test('a lock left by a dead process is taken over; one held by a live process is waited for', async () => {
  const l = ledger(fleet({ caps: { instances: 5 } }))
  const dir = `${root}/ledger`
  await l.reserve(REQ, NOON)
  // positive control: a lock naming this live process holds the ledger until it goes
  writeFileSync(`${dir}/ledger.lock`, `${process.pid} livetoken\n`, { mode: 0o600 })
  let done = false
  const waiting = l.reserve(REQ, NOON).then((r) => ((done = true), r))
  await new Promise((r) => setTimeout(r, 300))
  expect(done).toBe(false)
  rmSync(`${dir}/ledger.lock`)
  expect(await waiting).toEqual(ok)
  // a dead pid's lock (a child that has exited)
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString()
  writeFileSync(`${dir}/ledger.lock`, `${dead} deadtoken\n`, { mode: 0o600 })
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(JSON.parse(readFileSync(`${dir}/ledger.json`, 'utf8')).open).toBeDefined()
})

test('a lock file its creator left empty (died before writing its pid) is taken over once old', async () => {
  const l = ledger(fleet({}))
  await l.reserve(REQ, NOON)
  const lock = `${root}/ledger/ledger.lock`
  writeFileSync(lock, '', { mode: 0o600 })
  let done = false
  const waiting = l.reserve(REQ, NOON).then((r) => ((done = true), r))
  await new Promise((r) => setTimeout(r, 300))
  expect(done).toBe(false) // a fresh one may be a live creator's, about to write
  const old = new Date(Date.now() - 60_000)
  utimesSync(lock, old, old)
  expect(await waiting).toEqual(ok)
})

test('a request without whole vCPUs and lifetime is a programming error, not a refusal', async () => {
  const l = ledger(fleet({}))
  await expect(l.reserve({ ...REQ, vcpus: 0 }, NOON)).rejects.toThrow('fleet ledger: a reservation needs whole vcpus')
  await expect(l.reserve({ ...REQ, maxLifetimeMinutes: 1.5 }, NOON)).rejects.toThrow('fleet ledger: a reservation needs whole vcpus')
})

test('a damaged ledger file is reported, not overwritten', async () => {
  const l = ledger(fleet({}))
  await l.reserve(REQ, NOON)
  writeFileSync(`${root}/ledger/ledger.json`, '{"version":1,"rec')
  await expect(l.reserve(REQ, NOON)).rejects.toThrow(/fleet ledger: .*ledger\.json is not a ledger/)
  expect(readFileSync(`${root}/ledger/ledger.json`, 'utf8')).toBe('{"version":1,"rec')
})

test('20 processes reserving at once against caps.instances 10: exactly 10', async () => {
  const f = fleet({ caps: { instances: 10 } })
  const results = (
    await raceHosts(
      Array.from({ length: 20 }, (_, i) => ({ fleet: f, localRoot: root, count: 1, req: { ...REQ, runner: `r${i}` }, now: NOON })),
      3000
    )
  ).flat()
  expect(results.filter((r) => r.ok)).toHaveLength(10)
  for (const r of results.filter((r) => !r.ok)) expect(r).toEqual({ ok: false, line: 'fleet cap reached: 10 of 10 instances' })
  expect(await ledger(f).unsettled()).toHaveLength(10)
}, 60_000)

test('settle with launched: false frees the place at zero cost; beat records the latest sign of life until settled', async () => {
  const l = ledger(fleet({ caps: { instances: 1 }, budget: { perDayUsd: 1, prices: PRICES } }))
  const a = (await l.reserve(REQ, NOON)) as { id: string }
  await l.beat(a.id, NOON + 5_000)
  await l.beat(a.id, NOON + 1_000)
  expect((await l.unsettled())[0].heartbeatAt).toBe(NOON + 5_000)
  // The beating host's clock stepped back 30 minutes: its beats are taken (a frozen heartbeat looks
  // dead to another host's reap); a beat a minute late (two beats out of order) still is not.
  await l.beat(a.id, NOON + 5_000 - 30 * 60_000)
  expect((await l.unsettled())[0].heartbeatAt).toBe(NOON + 5_000 - 30 * 60_000)
  await l.beat(a.id, NOON + 5_000 - 29 * 60_000)
  await l.beat(a.id, NOON + 5_000 - 30 * 60_000)
  expect((await l.unsettled())[0].heartbeatAt).toBe(NOON + 5_000 - 29 * 60_000)
  await l.beat(a.id, NOON + 5_000)
  const r = await l.settle(a.id, { endedAt: NOON + 600_000, launched: false })
  expect(r).toMatchObject({ billedSeconds: 0, actualMicro: 0 })
  await l.beat(a.id, NOON + 9_000)
  expect((await l.records())[0].heartbeatAt).toBe(NOON + 5_000)
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
})

test('a settlement or attach time that is not a time is refused: the reservation stays open and the day keeps its total', async () => {
  // A NaN cost would have made the day's total NaN, written as null and read back as 0: the budget
  // wiped for the rest of the day, the other open reservations' cost forgotten.
  const l = ledger(fleet({ budget: { perDayUsd: 0.2, prices: PRICES } }))
  const req = { ...REQ, instanceType: 't3.large' }
  const a = (await l.reserve(req, NOON)) as { id: string }
  expect(await l.reserve(req, NOON)).toEqual(ok)
  await expect(l.settle(a.id, { endedAt: NaN })).rejects.toThrow(
    'fleet ledger: reservation ' + a.id + ' cannot be settled: its end is not a time'
  )
  await expect(l.settle(a.id, { endedAt: NOON + 60_000, startedAt: Infinity })).rejects.toThrow('its start is not a time')
  await expect(l.attach(a.id, 'i-a', NaN)).rejects.toThrow(
    'fleet ledger: reservation ' + a.id + ' cannot be attached: the time is not a time'
  )
  expect((await l.unsettled()).map((r) => r.id)).toContain(a.id)
  // 2 × 0.0832 reserved of 0.20: the 3rd is still refused
  expect(await l.reserve(req, NOON)).toMatchObject({ ok: false, line: expect.stringContaining('budget today 0.17 of 0.20 USD') })
  // a settlement with no instance ever launched needs no start
  expect(await l.settle(a.id, { endedAt: NOON + 1000, launched: false })).toMatchObject({ actualMicro: 0 })
})

// A report of the last days must not merge a year of jobs: jobs that start outside the range are
// skipped by id, with the same answer as merging everything and filtering after.
test('job records in a range: the same jobs as a full merge, and jobs that start outside it are never merged', async () => {
  const l = ledger(fleet({}))
  const HOUR = 3_600_000
  let seed = 7
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
  // 300 jobs over 10 days, each prepared (startedAt a little before its line, or none: a record
  // prepare_job could not write) and then cleaned up or lost later, lines of jobs interleaved.
  const pending: { at: number; u: Parameters<LocalLedger['recordJob']>[0] }[] = []
  for (let i = 0; i < 300; i++) {
    const at = NOON + rand(240) * HOUR
    const jobId = `j${i}`
    const first = rand(4)
      ? { jobId, repository: `r/${rand(5)}`, startedAt: at - rand(300_000), timings: { acquire: rand(9000) } }
      : { jobId, lost: 'spot' as const }
    pending.push({ at, u: first })
    pending.push({ at: at + 1 + rand(30 * HOUR), u: { jobId, endedAt: at + 40 * HOUR, timings: { cleanup: rand(900) } } })
  }
  pending.sort((a, b) => a.at - b.at)
  for (const p of pending) {
    clockNow = p.at
    await l.recordJob(p.u)
  }
  clockNow = NOON
  const all = await l.jobs()
  expect(all).toHaveLength(300)
  const merges = jest.spyOn(jobRecord, 'mergeJob')
  try {
    for (const range of [
      { since: NOON + 48 * HOUR },
      { until: NOON + 100 * HOUR },
      { since: NOON + 30 * HOUR, until: NOON + 31 * HOUR },
      {}
    ]) {
      merges.mockClear()
      const want = all.filter((j) => inTimeRange(j.startedAt, range))
      const got = await l.jobs(range)
      expect(got).toEqual(want)
      // Only lines of jobs in the range are merged (a full merge would be one per line: 600).
      const ids = new Set(want.map((j) => j.jobId))
      expect(merges.mock.calls.length).toBe(pending.filter((p) => ids.has(p.u.jobId)).length)
    }
    // Positive control: the narrow range leaves most jobs out.
    expect((await l.jobs({ since: NOON + 30 * HOUR, until: NOON + 31 * HOUR })).length).toBeLessThan(10)
  } finally {
    merges.mockRestore()
  }
})

// A range of a long history must not parse the whole history: settled lines out of the range and job
// lines written more than JOB_SETTLES_MS before it are passed over as bytes.
test('a range reads the lines out of it without parsing them, with the same answer as a full read', async () => {
  const DAY = 86_400_000
  const l = ledger(fleet({}))
  for (let d = 0; d < 60; d++) {
    clockNow = NOON + d * DAY
    const r = await l.reserve(REQ, clockNow)
    if (!r.ok) throw new Error(r.line)
    await l.attach(r.id, `i-${d}`, clockNow + 1000)
    await l.recordJob({ jobId: `j${d}`, repository: 'acme/a', startedAt: clockNow, timings: { acquire: d } })
    clockNow += 3_600_000
    await l.settle(r.id, { endedAt: clockNow })
    await l.recordJob({ jobId: `j${d}`, endedAt: clockNow })
  }
  // A job of day 40 lost its machine on day 49: a late line of a job that started before the range.
  clockNow = NOON + 49 * DAY
  await l.recordJob({ jobId: 'j40', lost: 'spot' })
  const range = { since: NOON + 50 * DAY }
  const allRecords = await l.records()
  const allJobs = await l.jobs()
  const parse = jest.spyOn(JSON, 'parse')
  try {
    expect(await l.records(range)).toEqual(allRecords.filter((r) => inTimeRange(r.reservedAt, range)))
    // 10 settled lines (days 50 to 59) and the ledger's own state file, not 60
    expect(parse.mock.calls.length).toBeLessThanOrEqual(10 + 2)
    parse.mockClear()
    const jobs = await l.jobs(range)
    expect(jobs).toEqual(allJobs.filter((j) => inTimeRange(j.startedAt, range)))
    expect(jobs.map((j) => j.jobId)).toEqual([50, 51, 52, 53, 54, 55, 56, 57, 58, 59].map((d) => `j${d}`))
    // lines written from day 42 on (8 days before the range): 2 per day and j40's late one, not 121
    expect(parse.mock.calls.length).toBeLessThanOrEqual(2 * 18 + 1 + 2)
    // control: without a range every line is parsed
    parse.mockClear()
    await l.jobs()
    expect(parse.mock.calls.length).toBeGreaterThanOrEqual(121)
  } finally {
    parse.mockRestore()
  }
})

test('job records: created by the first update, fields replace, timings merge; bad phase names and times refused', async () => {
  const l = ledger(fleet({}))
  clockNow = NOON
  await l.recordJob({ jobId: 'j1', repository: 'acme/widgets', provider: 'ec2', timings: { acquire: 1200, boot: 30_000 } })
  clockNow = NOON + 60_000
  await l.recordJob({ jobId: 'j1', endedAt: NOON + 90_000, timings: { cleanup: 800, boot: 31_000 } })
  await l.recordJob({ jobId: 'j1', lost: 'spot' })
  // a later step's lookup does not move the job to another cause (report's counters would go down)
  await l.recordJob({ jobId: 'j1', lost: 'running' })
  await l.recordJob({ jobId: 'j0', repository: 'acme/gadgets', provider: 'static', startedAt: NOON - 1000, timings: {} })
  const jobs = await l.jobs()
  expect(jobs.map((j) => j.jobId)).toEqual(['j0', 'j1'])
  expect(jobs[1]).toMatchObject({
    repository: 'acme/widgets',
    provider: 'ec2',
    startedAt: NOON,
    endedAt: NOON + 90_000,
    timings: { acquire: 1200, boot: 31_000, cleanup: 800 },
    lost: 'spot'
  })
  expect(jobs[0].lost).toBeUndefined()
  expect((await l.jobs({ since: NOON })).map((j) => j.jobId)).toEqual(['j1'])
  // the cause of a lost machine is one of the known words
  await expect(l.recordJob({ jobId: 'j1', lost: 'struck by lightning' })).rejects.toThrow(/unknown cause of a lost machine/)
  await expect(l.recordJob({ jobId: 'j1', timings: { 'a b': 1 } })).rejects.toThrow(/timing "a b"/)
  await expect(l.recordJob({ jobId: 'j1', timings: { x: NaN } })).rejects.toThrow(/timing "x"/)
  await expect(l.recordJob({ jobId: '../x' })).rejects.toThrow(/bad job id/)
  clockNow = NOON
})

test('ledger.json holds only open reservations: its size does not grow with settled launches and jobs (kept in append-only logs)', async () => {
  const l = ledger(fleet({ caps: { instances: 3 }, budget: { perDayUsd: 1000, prices: PRICES } }))
  const sizeAfter = async (n: number): Promise<number> => {
    for (let i = 0; i < n; i++) {
      const { id } = (await l.reserve(REQ, NOON)) as { id: string }
      await l.settle(id, { endedAt: NOON + 120_000 })
      await l.recordJob({ jobId: `job${i}-${n}`, repository: 'acme/widgets', timings: { acquire: 10 } })
    }
    return statSync(`${root}/ledger/ledger.json`).size
  }
  const small = await sizeAfter(2)
  const large = await sizeAfter(60)
  // Only the day's total may gain a digit or two.
  expect(large - small).toBeLessThan(8)
  expect((await l.records()).length).toBe(62)
  expect((await l.jobs()).length).toBe(62)
  for (const f of ['settled.jsonl', 'jobs.jsonl']) expect(statSync(`${root}/ledger/${f}`).mode & 0o777).toBe(0o600)
  // Control: an open reservation does make it grow.
  await l.reserve(REQ, NOON)
  expect(statSync(`${root}/ledger/ledger.json`).size - large).toBeGreaterThan(200)
})

test('a crash mid-append (torn last line) and a crash between the settlement line and the rewrite both leave a consistent ledger', async () => {
  const l = ledger(fleet({ caps: { instances: 1 }, budget: { perDayUsd: 1, prices: PRICES } }))
  const a = (await l.reserve(REQ, NOON)) as { id: string }
  await l.recordJob({ jobId: 'j1', repository: 'acme/widgets' })
  // Crash after the settlement line was written, before ledger.json changed: still open, still counted.
  appendFileSync(`${root}/ledger/settled.jsonl`, JSON.stringify({ ...(await l.unsettled())[0], settledAt: NOON, actualMicro: 1 }) + '\n')
  // And a line torn mid-write in each log.
  appendFileSync(`${root}/ledger/settled.jsonl`, '{"id":"x","reser')
  appendFileSync(`${root}/ledger/jobs.jsonl`, '{"at":1,"upd')
  expect((await l.unsettled()).map((r) => r.id)).toEqual([a.id])
  expect((await l.records()).map((r) => [r.id, r.settledAt])).toEqual([[a.id, undefined]])
  expect(await l.reserve(REQ, NOON)).toMatchObject({ ok: false })
  // The settle that finishes it: the day now carries the real cost, not the reserved one.
  const done = await l.settle(a.id, { endedAt: NOON + 60_000 })
  expect(done.actualMicro).toBe(Math.ceil(41600 / 60))
  expect(await l.unsettled()).toEqual([])
  expect((await l.records()).map((r) => r.actualMicro)).toEqual([done.actualMicro])
  expect(JSON.parse(readFileSync(`${root}/ledger/ledger.json`, 'utf8')).days['2026-12-01']).toBe(done.actualMicro)
  expect((await l.jobs()).map((j) => j.jobId)).toEqual(['j1'])
})

test('a ledger of the first format (every record in ledger.json) is converted on first use, nothing lost', async () => {
  const dir = `${root}/ledger`
  mkdirSync(dir, { mode: 0o700 })
  const base = { ...REQ, day: '2026-12-01', priceMicroPerHour: 41600, reservedMicro: 41600, timings: {} }
  const v1 = {
    version: 1,
    records: {
      a: { ...base, id: 'a', reservedAt: NOON - 5000, instanceId: 'i-1', attachedAt: NOON - 4000 },
      b: { ...base, id: 'b', reservedAt: NOON - 9000, settledAt: NOON - 1000, endedAt: NOON - 1000, billedSeconds: 60, actualMicro: 694 }
    },
    jobs: {
      j1: {
        jobId: 'j1',
        repository: 'acme/widgets',
        workflow: 'ci',
        runId: '7',
        job: 'build',
        runner: 'r1',
        runnerHost: 'h',
        provider: 'ec2',
        startedAt: NOON - 9000,
        endedAt: NOON - 500,
        timings: { acquire: 5 }
      }
    }
  }
  writeFileSync(`${dir}/ledger.json`, JSON.stringify(v1), { mode: 0o600 })
  const l = ledger(fleet({ caps: { instances: 2 }, budget: { perDayUsd: 1, prices: PRICES } }))
  // A job update first: the old job's record must not be overwritten by the conversion that follows.
  await l.recordJob({ jobId: 'j1', endedAt: NOON, timings: { cleanup: 7 } })
  expect((await l.unsettled()).map((r) => r.id)).toEqual(['a'])
  expect((await l.records()).map((r) => [r.id, r.actualMicro])).toEqual([
    ['b', 694],
    ['a', undefined]
  ])
  expect((await l.jobs())[0]).toMatchObject({ jobId: 'j1', repository: 'acme/widgets', endedAt: NOON, timings: { acquire: 5, cleanup: 7 } })
  const state = JSON.parse(readFileSync(`${dir}/ledger.json`, 'utf8'))
  expect(state).toMatchObject({ version: 2, days: { '2026-12-01': 41600 + 694 } })
  expect(Object.keys(state.open)).toEqual(['a'])
  // caps still count the open one
  expect(await l.reserve(REQ, NOON)).toEqual(ok)
  expect(await l.reserve(REQ, NOON)).toMatchObject({ ok: false })
})

test('records, unsettled and jobs are read without the lock (a long report held every reservation of the host); a first-format ledger is still converted under it', async () => {
  const l = ledger(fleet({ caps: { instances: 5 } }))
  const dir = `${root}/ledger`
  const a = await l.reserve(REQ, NOON)
  const b = await l.reserve(REQ, NOON)
  if (!a.ok || !b.ok) throw new Error('not reserved')
  await l.settle(a.id, { endedAt: NOON + 120_000, launched: false })
  await l.recordJob({ jobId: 'j1', repository: 'acme/widgets', startedAt: NOON })
  // A lock naming this live process: held for as long as the test wants.
  writeFileSync(`${dir}/ledger.lock`, `${process.pid} livetoken\n`, { mode: 0o600 })
  const within = <T>(p: Promise<T>, ms: number): Promise<T | 'waited'> =>
    Promise.race([p, new Promise<'waited'>((r) => setTimeout(() => r('waited'), ms))])
  // Both reserved at the same moment: in either order.
  const read = (await within(l.records(), 1000)) as { id: string; endedAt?: number }[]
  expect(read).toHaveLength(2)
  expect(read).toEqual(
    expect.arrayContaining([expect.objectContaining({ id: a.id, endedAt: NOON + 120_000 }), expect.objectContaining({ id: b.id })])
  )
  expect(((await within(l.unsettled(), 1000)) as { id: string }[]).map((r) => r.id)).toEqual([b.id])
  expect(((await within(l.jobs(), 1000)) as { jobId: string }[]).map((j) => j.jobId)).toEqual(['j1'])
  // Control: a change still waits for the lock.
  const reserving = l.reserve(REQ, NOON)
  expect(await within(reserving, 300)).toBe('waited')
  // A ledger of the first format is converted (which writes) under the lock: a read of it waits too.
  const v1dir = `${root}/v1`
  mkdirSync(v1dir, { mode: 0o700 })
  writeFileSync(`${v1dir}/ledger.json`, JSON.stringify({ version: 1, records: {} }), { mode: 0o600 })
  writeFileSync(`${v1dir}/ledger.lock`, `${process.pid} livetoken\n`, { mode: 0o600 })
  const v1 = new LocalLedger(fleet({}), v1dir, { now: () => NOON })
  const converted = v1.records()
  expect(await within(converted, 300)).toBe('waited')
  rmSync(`${dir}/ledger.lock`)
  rmSync(`${v1dir}/ledger.lock`)
  expect(await reserving).toEqual(ok)
  expect(await converted).toEqual([])
  expect(JSON.parse(readFileSync(`${v1dir}/ledger.json`, 'utf8')).version).toBe(2)
})

// Reap reads a reservation without an instance and settles it as unlaunched; a hook's attach that
// lands in between would be settled at no cost, its counts freed while its instance runs.
test('a reservation with an instance attached is not settled as unlaunched; settled with its time it is (control)', async () => {
  const l = ledger(fleet({ caps: { instances: 1 }, budget: { perDayUsd: 1, prices: PRICES } }))
  const a = (await l.reserve(REQ, NOON)) as { id: string }
  await l.attach(a.id, 'i-a', NOON + 1000)
  await expect(l.settle(a.id, { endedAt: NOON + 600_000, launched: false })).rejects.toThrow(
    `fleet ledger: reservation ${a.id} cannot be settled as unlaunched: an instance is attached to it`
  )
  expect((await l.unsettled()).map((r) => r.id)).toEqual([a.id])
  expect(await l.reserve(REQ, NOON)).toMatchObject({ ok: false })
  expect(await l.settle(a.id, { endedAt: NOON + 61_000 })).toMatchObject({ billedSeconds: 60 })
})

// A rename without a sync may reach the disk before the data it renames: after a power loss
// ledger.json came back empty ("is not a ledger": every reserve failed, and deleting it forgot the
// open reservations). Each write is synced before the rename and the rename after it; a settled
// line is synced before ledger.json drops the reservation.
test('the ledger syncs what it writes: the new state before its rename, the folder after, a settled line before the state', async () => {
  const fs = require('node:fs') as typeof import('node:fs')
  const synced: string[] = []
  const spy = jest.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
    synced.push(fs.readlinkSync(`/proc/self/fd/${fd}`))
  })
  try {
    const l = ledger(fleet({ caps: { instances: 2 } }))
    const a = (await l.reserve(REQ, NOON)) as { id: string }
    const dir = localLedgerDir(fleet({}), root)
    expect(synced).toEqual([expect.stringMatching(new RegExp(`^${dir}/ledger\\.json\\..*\\.tmp$`)), dir])
    synced.length = 0
    await l.settle(a.id, { endedAt: NOON + 60_000, launched: false })
    expect(synced).toEqual([`${dir}/settled.jsonl`, expect.stringMatching(/ledger\.json\..*\.tmp$/), dir])
  } finally {
    spy.mockRestore()
  }
})
