// `report` against a local ledger the test fills with known reservations, settlements and jobs.
// Every expected number is worked out by hand in the comments next to it, never by the report's code.
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FleetSchema, type Config } from '../../src/config'
import type { Ledger, ReserveRequest } from '../../src/fleet/ledger'
import { LocalLedger } from '../../src/fleet/local-ledger'
import { runOpCommand } from '../../src/ops/cli'
import { parseArgs } from '../../src/ops/command'
import { reportCommand, runReport } from '../../src/ops/report'
import { parseTime } from '../../src/ops/report-time'
import { budgetDay } from '../../src/fleet/money'
import { buildReport } from '../../src/ops/report-data'
import { saveCheckpoint, type Checkpoint } from '../../src/ops/report-checkpoint'

const H = 3_600_000
const NOON = Date.UTC(2026, 11, 1, 12)
const PRICES = { 't3.medium': 0.0416, 't3.large': 0.0832 }

let root: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'rch-report-'))
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

function configFile(fleet: object): string {
  const f = join(root, 'config.json')
  writeFileSync(
    f,
    JSON.stringify({
      provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-1', instanceTypes: ['t3.medium'] },
      remote: { workRoot: '/srv/rch' },
      fleet: { ledger: { kind: 'local', path: join(root, 'ledger') }, ...fleet }
    })
  )
  return f
}

const FLEET = { budget: { perDayUsd: 50, timezone: 'Europe/Berlin', prices: PRICES } }
const ledgerOf = (fleet: object): LocalLedger => new LocalLedger(FleetSchema.parse(fleet), join(root, 'ledger'), { now: () => NOON })

const req = (repository: string, workflow: string, runner: string, instanceType: string): ReserveRequest => ({
  repository,
  workflow,
  runId: '1',
  job: 'build',
  runner,
  instanceType,
  vcpus: 2,
  maxLifetimeMinutes: 60
})

async function reserve(l: LocalLedger, r: ReserveRequest, at: number): Promise<string> {
  const res = await l.reserve(r, at)
  if (!res.ok) throw new Error(res.line)
  return res.id
}

/**
 * Launches (reservedAt → attach → end):
 *   A widgets/ci/r1      t3.medium 09:00Z, +30 s, ended 3600 s later   → 3600 s, 0.0416 × 1 h        = 41600 µ$
 *   B widgets/release/r2 t3.large  10:00Z, +10 s, ended 30 s later     → 60 s (minimum), 83200/60 = 1386.67 → 1387 µ$
 *   C gadgets/ci/r1      t3.medium 11:00Z, +20 s, still running at 12:00 → 3580 s, 41600 × 3580/3600 = 41368.9 → 41369 µ$
 *   D gadgets/ci/r2      t3.large  11:30Z, settled as never launched  → not a launch
 *   E widgets/ci/r1      t3.medium Nov 30 22:30Z (23:30 Berlin), never attached, ended 120 s later → 120 s, 1386.67 → 1387 µ$
 *   F gadgets/nightly/r3 t3.large  Nov 30 23:30Z (00:30 Dec 1 Berlin), +5 s, ended 3600 s later → 3600 s, 83200 µ$
 *   O widgets/ci/r1      t3.medium 8 days before noon, settled: outside the default 7 days
 * Jobs (start, acquire ms, boot ms):
 *   j1 widgets/ci/r1 09:00Z 400 31200; j2 widgets/release/r2 10:00Z 500 29000; j3 gadgets/ci/r1 11:00Z 1000 40000;
 *   j4 gadgets/ci/r2 11:30Z 900 -; j5 widgets/ci/r1 Nov 30 22:30Z 300 35000; j6 gadgets/nightly/r3 Nov 30 23:30Z 700 30000;
 *   j7 widgets/ci/r1 (static) 11:45Z 10 -; jOld widgets 8 days before noon.
 */
async function fill(): Promise<void> {
  const l = ledgerOf(FLEET)
  const W = 'acme/widgets'
  const G = 'acme/gadgets'
  const t9 = NOON - 3 * H
  const a = await reserve(l, req(W, 'ci', 'r1', 't3.medium'), t9)
  await l.attach(a, 'i-a', t9 + 30_000)
  await l.settle(a, { endedAt: t9 + 30_000 + 3600_000 })
  const t10 = NOON - 2 * H
  const b = await reserve(l, req(W, 'release', 'r2', 't3.large'), t10)
  await l.attach(b, 'i-b', t10 + 10_000)
  await l.settle(b, { endedAt: t10 + 40_000 })
  const t11 = NOON - H
  const c = await reserve(l, req(G, 'ci', 'r1', 't3.medium'), t11)
  await l.attach(c, 'i-c', t11 + 20_000)
  const d = await reserve(l, req(G, 'ci', 'r2', 't3.large'), NOON - H / 2)
  await l.settle(d, { endedAt: NOON - H / 2 + 5000, launched: false })
  const e = await reserve(l, req(W, 'ci', 'r1', 't3.medium'), Date.UTC(2026, 10, 30, 22, 30))
  await l.settle(e, { endedAt: Date.UTC(2026, 10, 30, 22, 32) })
  const tf = Date.UTC(2026, 10, 30, 23, 30)
  const f = await reserve(l, req(G, 'nightly', 'r3', 't3.large'), tf)
  await l.attach(f, 'i-f', tf + 5000)
  await l.settle(f, { endedAt: tf + 5000 + 3600_000 })
  const o = await reserve(l, req(W, 'ci', 'r1', 't3.medium'), NOON - 8 * 24 * H)
  await l.settle(o, { endedAt: NOON - 8 * 24 * H + 600_000 })
  const job = (jobId: string, repository: string, workflow: string, runner: string, startedAt: number, timings: Record<string, number>) =>
    l.recordJob({ jobId, repository, workflow, runner, runId: '1', job: 'build', runnerHost: 'h', provider: 'ec2', startedAt, timings })
  await job('j1', W, 'ci', 'r1', t9, { acquire: 400, boot: 31200 })
  await job('j2', W, 'release', 'r2', t10, { acquire: 500, boot: 29000 })
  await job('j3', G, 'ci', 'r1', t11, { acquire: 1000, boot: 40000 })
  await job('j4', G, 'ci', 'r2', NOON - H / 2, { acquire: 900 })
  await job('j5', W, 'ci', 'r1', Date.UTC(2026, 10, 30, 22, 30), { acquire: 300, boot: 35000 })
  await job('j6', G, 'nightly', 'r3', tf, { acquire: 700, boot: 30000 })
  await job('j7', W, 'ci', 'r1', NOON - H / 4, { acquire: 10 })
  await job('jOld', W, 'ci', 'r1', NOON - 8 * 24 * H, { acquire: 99999, boot: 99999 })
  // Machines lost under a step (the hook records the cause later, on the same record).
  await l.recordJob({ jobId: 'j3', lost: 'spot' })
  await l.recordJob({ jobId: 'j5', lost: 'lifetime' })
  await l.recordJob({ jobId: 'j7', lost: 'spot' })
  await l.recordJob({ jobId: 'j4', lost: 'running' }) // only the connection: not under LOST in the table
  await l.recordJob({ jobId: 'jOld', lost: 'api' })
}

const noLoss = { spot: 0, inside: 0, lifetime: 0, api: 0, other: 0, running: 0, gone: 0 }

function io() {
  const out: string[] = []
  const err: string[] = []
  return {
    io: {
      env: {},
      stdout: { write: (s: string) => out.push(s) },
      stderr: { write: (s: string) => err.push(s) },
      signal: new AbortController().signal
    },
    out: () => out.join(''),
    err: () => err.join('')
  }
}

async function report(argv: string[], now = NOON): Promise<{ code: number; out: string; err: string }> {
  const args = parseArgs(reportCommand, argv)
  if (!('positional' in args)) throw new Error(JSON.stringify(args))
  const t = io()
  const code = await runReport(args, t.io, { now, localRoot: join(root, 'unused') })
  return { code, out: t.out(), err: t.err() }
}

async function reportJson(argv: string[], now = NOON) {
  const r = await report([configFile(FLEET), '--json', ...argv], now)
  expect(r).toMatchObject({ code: 0, err: '' })
  return JSON.parse(r.out)
}

const phase = (samples: number, p50: number | null, p95: number | null) => ({ samples, p50, p95 })

describe('report totals against a ledger worked out by hand', () => {
  beforeEach(fill)

  test('--by repository (the default): jobs, launches, instance time, cost, p50/p95, and the total row', async () => {
    const r = await reportJson([])
    expect(r).toMatchObject({ by: 'repository', timeZone: 'Europe/Berlin', until: null, now: '2026-12-01T12:00:00.000Z' })
    expect(r.since).toBe('2026-11-24T12:00:00.000Z')
    expect(r.groups).toEqual([
      {
        repository: 'acme/gadgets',
        jobs: 3, // j3 j4 j6
        launches: 2, // C F (D never ran)
        runningLaunches: 1, // C
        instanceSeconds: 7180, // 3580 + 3600
        instanceHours: 1.994444, // 7180 / 3600
        runningInstanceSeconds: 3580,
        costUsd: 0.124569, // 41369 + 83200 µ$
        runningCostUsd: 0.041369,
        unpricedLaunches: 0,
        acquireSeconds: phase(3, 0.9, 1), // [700 900 1000]: rank ceil(1.5)=2, ceil(2.85)=3
        bootSeconds: phase(2, 30, 40), // [30000 40000]: rank 1, 2
        lostMachines: { ...noLoss, spot: 1, running: 1 } // j3, j4
      },
      {
        repository: 'acme/widgets',
        jobs: 4, // j1 j2 j5 j7 (jOld out of range)
        launches: 3, // A B E
        runningLaunches: 0,
        instanceSeconds: 3780, // 3600 + 60 + 120
        instanceHours: 1.05,
        runningInstanceSeconds: 0,
        costUsd: 0.044374, // 41600 + 1387 + 1387 µ$
        runningCostUsd: 0,
        unpricedLaunches: 0,
        acquireSeconds: phase(4, 0.3, 0.5), // [10 300 400 500]: rank 2, ceil(3.8)=4
        bootSeconds: phase(3, 31.2, 35), // [29000 31200 35000]: rank 2, 3
        lostMachines: { ...noLoss, spot: 1, lifetime: 1 } // j7, j5 (jOld out of range)
      }
    ])
    expect(r.total).toEqual({
      jobs: 7,
      launches: 5,
      runningLaunches: 1,
      instanceSeconds: 10960, // 3780 + 7180
      instanceHours: 3.044444,
      runningInstanceSeconds: 3580,
      costUsd: 0.168943, // 44374 + 124569 µ$
      runningCostUsd: 0.041369,
      unpricedLaunches: 0,
      // percentiles of all jobs, not of the groups' percentiles
      acquireSeconds: phase(7, 0.5, 1), // [10 300 400 500 700 900 1000]: rank 4, 7
      bootSeconds: phase(5, 31.2, 40), // [29000 30000 31200 35000 40000]: rank 3, 5
      lostMachines: { ...noLoss, spot: 2, lifetime: 1, running: 1 }
    })
  })

  test('a running launch counts up to now: an hour later only its time and cost have grown', async () => {
    const r = await reportJson([], NOON + H)
    const gadgets = r.groups[0]
    // C: attached 11:00:20, now 13:00 → 7180 s; 41600 × 7180/3600 = 82968.9 → 82969 µ$
    expect(gadgets).toMatchObject({ runningInstanceSeconds: 7180, instanceSeconds: 10780, runningCostUsd: 0.082969, costUsd: 0.166169 })
    expect(r.groups[1]).toMatchObject({ instanceSeconds: 3780, costUsd: 0.044374 })
  })

  test('--by workflow keeps the repository with the workflow', async () => {
    const r = await reportJson(['--by', 'workflow'])
    expect(
      r.groups.map((g: Record<string, unknown>) => [g.repository, g.workflow, g.jobs, g.launches, g.instanceSeconds, g.costUsd])
    ).toEqual([
      ['acme/gadgets', 'ci', 2, 1, 3580, 0.041369], // j3 j4; C
      ['acme/gadgets', 'nightly', 1, 1, 3600, 0.0832], // j6; F
      ['acme/widgets', 'ci', 3, 2, 3720, 0.042987], // j1 j5 j7; A E: 3600+120 s, 41600+1387 µ$
      ['acme/widgets', 'release', 1, 1, 60, 0.001387] // j2; B
    ])
    expect(r.total).toMatchObject({ jobs: 7, launches: 5, instanceSeconds: 10960, costUsd: 0.168943 })
  })

  test('--by runner', async () => {
    const r = await reportJson(['--by=runner'])
    expect(r.groups.map((g: Record<string, unknown>) => [g.runner, g.jobs, g.launches, g.runningLaunches, g.instanceSeconds])).toEqual([
      ['r1', 4, 3, 1, 7300], // j1 j3 j5 j7; A C E: 3600+3580+120
      ['r2', 2, 1, 0, 60], // j2 j4; B (D never ran)
      ['r3', 1, 1, 0, 3600] // j6; F
    ])
  })

  test('--by day uses the budget time zone: 23:30 UTC on 30 November is 1 December in Berlin', async () => {
    const r = await reportJson(['--by', 'day'])
    expect(r.groups.map((g: Record<string, unknown>) => [g.day, g.jobs, g.launches, g.instanceSeconds, g.costUsd])).toEqual([
      ['2026-11-30', 1, 1, 120, 0.001387], // j5; E (22:30Z = 23:30 Berlin)
      ['2026-12-01', 6, 4, 10840, 0.167556] // the rest: 10960-120 s, 168943-1387 µ$
    ])
    // the same ledger by UTC days: F and j6 move to 30 November
    const utc = await report([configFile({}), '--json', '--by', 'day'])
    expect(JSON.parse(utc.out).groups.map((g: Record<string, unknown>) => [g.day, g.jobs, g.launches])).toEqual([
      ['2026-11-30', 2, 2],
      ['2026-12-01', 5, 3]
    ])
  })

  test('range bounds: [since, until) — a record exactly at --until is out, one exactly at --since is in', async () => {
    const r = await reportJson(['--since', '2026-12-01T10:00Z', '--until', '2026-12-01T11:00:00Z'])
    // B and j2 at exactly 10:00 are in; C and j3 at exactly 11:00 are out
    expect(r.total).toMatchObject({ jobs: 1, launches: 1, instanceSeconds: 60, costUsd: 0.001387 })
    expect(r.groups.map((g: Record<string, unknown>) => g.repository)).toEqual(['acme/widgets'])
    expect(r).toMatchObject({ since: '2026-12-01T10:00:00.000Z', until: '2026-12-01T11:00:00.000Z' })
  })

  test('a date without a zone is midnight in the budget time zone; ages count back from now', async () => {
    // Berlin midnight of 1 December = 30 November 23:00Z: F and j6 (23:30Z) are in, E and j5 (22:30Z) out
    const day = await reportJson(['--since', '2026-12-01', '--until', '2026-12-02'])
    expect(day.since).toBe('2026-11-30T23:00:00.000Z')
    expect(day.total).toMatchObject({ jobs: 6, launches: 4 })
    // 90 minutes back from noon is 10:30Z: C, D (never ran) and j3 j4 j7
    const age = await reportJson(['--since', '90m'])
    expect(age.since).toBe('2026-12-01T10:30:00.000Z')
    expect(age.total).toMatchObject({ jobs: 3, launches: 1, runningLaunches: 1 })
    // the default is 7 days: jOld and O (8 days back) only with a longer range
    expect((await reportJson(['--since', '9d'])).total).toMatchObject({ jobs: 8, launches: 6, instanceSeconds: 10960 + 600 })
  })

  test('the table marks running figures and says why; the total row is last', async () => {
    const r = await report([configFile(FLEET)])
    expect(r.code).toBe(0)
    const lines = r.out.split('\n')
    expect(lines[0]).toBe('fleet report by repository: 2026-11-24T12:00:00Z to now (2026-12-01T12:00:00Z)')
    expect(lines[1].split(/\s{2,}/)).toEqual([
      'REPOSITORY',
      'JOBS',
      'LAUNCHES',
      'INSTANCE-H',
      'COST USD',
      'ACQUIRE P50',
      'ACQUIRE P95',
      'BOOT P50',
      'BOOT P95',
      'LOST'
    ])
    // 7180 s = 1.99 h; 0.124569 USD rounds up to 0.13
    expect(lines[2].split(/\s{2,}/)).toEqual(['acme/gadgets', '3', '2', '1.99*', '0.13*', '0.9 s', '1.0 s', '30.0 s', '40.0 s', '1'])
    expect(lines[3].split(/\s{2,}/)).toEqual(['acme/widgets', '4', '3', '1.05', '0.05', '0.3 s', '0.5 s', '31.2 s', '35.0 s', '2'])
    expect(lines[4].split(/\s{2,}/)).toEqual(['(total)', '7', '5', '3.04*', '0.17*', '0.5 s', '1.0 s', '31.2 s', '40.0 s', '3'])
    expect(lines[5]).toBe('* includes 1 running launch, counted up to now at price × elapsed (settled at release)')
    expect(lines[6]).toBe('3 jobs lost their machine during a step: Spot interruption 2, lifetime limit 1')
    expect(lines[7]).toBe('1 job lost the connection to a machine EC2 still ran (not counted under LOST)')
  })
})

describe('report inputs', () => {
  test('a bad --since, --until or --by is one line naming the flag, exit 64 (through the command line parser)', async () => {
    const f = configFile(FLEET)
    const run = async (argv: string[]) => {
      const t = io()
      const code = await runOpCommand('report', argv, t.io)
      return { code, out: t.out(), err: t.err() }
    }
    for (const [argv, flag] of [
      [['--since', 'yesterday'], '--since "yesterday"'],
      [['--until', '2026-02-30'], '--until "2026-02-30"'],
      [['--since', '2026-12-01T25:00'], '--since "2026-12-01T25:00"']
    ] as const) {
      const r = await run([f, ...argv])
      expect(r).toEqual({ code: 64, out: '', err: expect.stringMatching(new RegExp(`^report: ${flag} is not a time: give .*\\n$`)) })
      expect(r.err.split('\n')).toHaveLength(2)
    }
    expect(await run([f, '--by', 'repo'])).toEqual({
      code: 64,
      out: '',
      err: 'report: --by must be one of repository, workflow, runner, day (got "repo")\n'
    })
    expect(await run([f, '--since', '1d', '--until', '2d'])).toMatchObject({
      code: 64,
      err: expect.stringMatching(/^report: --since .* must be before --until/)
    })
    expect(await run([f, '--csv', '--json'])).toEqual({ code: 64, out: '', err: 'report: give one output form, not --json and --csv\n' })
    expect(await run([f, '--config', f])).toMatchObject({
      code: 64,
      err: 'report: give the configuration file once (FILE or --config FILE)\n(see: remote-hooks report --help)\n'
    })
    // a positive control: the same command line with good values runs
    expect(await run([f, '--since', '1d', '--by', 'runner'])).toMatchObject({ code: 0, err: '' })
    expect(await run(['--config', f, '--since', '1d'])).toMatchObject({ code: 0, err: '' })
  })

  test('a bad configuration: its problems on stderr, exit 78', async () => {
    const f = join(root, 'bad.json')
    writeFileSync(
      f,
      JSON.stringify({
        provider: { kind: 'ec2', region: 'eu-west-1' },
        remote: { workRoot: '/srv/rch' },
        fleet: { budget: { perDayUsd: -1 } }
      })
    )
    const r = await report([f])
    expect(r.code).toBe(78)
    expect(r.err).toContain('report: invalid configuration: fleet.budget.perDayUsd:')
  })

  test('a local ledger not made yet: an empty report, and its folder is not created', async () => {
    const r = await report([configFile(FLEET), '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toMatchObject({ groups: [], total: { jobs: 0, launches: 0, costUsd: 0 } })
    expect(existsSync(join(root, 'ledger'))).toBe(false)
  })

  test('an instance type without a price (no budget) counts at 0 USD and is said to', async () => {
    const l = ledgerOf({})
    const id = await reserve(l, req('acme/widgets', 'ci', 'r1', 'm7i.large'), NOON - H)
    await l.settle(id, { endedAt: NOON - H + 600_000 })
    const j = await report([configFile({}), '--json'])
    expect(JSON.parse(j.out).total).toMatchObject({ launches: 1, instanceSeconds: 600, costUsd: 0, unpricedLaunches: 1 })
    expect((await report([configFile({})])).out).toContain('1 launch of an instance type without a price counted at 0 USD\n')
  })
})

// A hostile repository name (it comes from the job) in every form: a quote, a newline, a backslash, a formula.
const EVIL = ['acme/"we,ird"\nname\\x', 'acme/line\nbreak', '=HYPERLINK("http://x";"y")', '+1', '-2', '@SUM(A1)', 'acme/plain']

async function fillEvil(): Promise<void> {
  const l = ledgerOf(FLEET)
  for (const [i, name] of EVIL.entries()) {
    const id = await reserve(l, req(name, 'ci', 'r1', 't3.medium'), NOON - H + i * 1000)
    await l.attach(id, `i-${i}`, NOON - H + i * 1000)
    // each ran 1800 s: 41600 / 2 = 20800 µ$
    await l.settle(id, { endedAt: NOON - H + i * 1000 + 1800_000 })
    await l.recordJob({
      jobId: `j${i}`,
      repository: name,
      workflow: 'ci',
      runner: 'r1',
      startedAt: NOON - H,
      timings: { acquire: 1000 * (i + 1) },
      // acme/plain's machine was shut down from inside under a step
      lost: name === 'acme/plain' ? 'inside' : undefined
    })
  }
}

/** RFC 4180 records: fields split on commas outside quotes, "" inside quotes a quote, records end in CRLF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"'
        i++
      } else if (c === '"') quoted = false
      else field += c
    } else if (c === '"') quoted = true
    else if (c === ',') {
      row.push(field)
      field = ''
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field)
      rows.push(row)
      row = []
      field = ''
      i++
    } else if (c === '\r' || c === '\n') throw new Error(`bare line break outside quotes at ${i}`)
    else field += c
  }
  if (field || row.length) throw new Error('last record does not end in CRLF')
  return rows
}

/** OpenMetrics text → metadata and samples, with label values unescaped; throws on anything else. */
function parseOpenMetrics(text: string) {
  const lines = text.split('\n')
  expect(lines.pop()).toBe('')
  expect(lines.pop()).toBe('# EOF')
  const meta: Record<string, Record<string, string>> = {}
  const samples: { name: string; labels: Record<string, string>; value: number }[] = []
  for (const line of lines) {
    const m = /^# (TYPE|UNIT|HELP) ([a-z_]+) (.*)$/.exec(line)
    if (m) {
      ;(meta[m[2]] ??= {})[m[1]] = m[3]
      continue
    }
    const s = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line)
    if (!s) throw new Error(`not a sample: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    let rest = s[2]
    while (rest) {
      const l = /^([a-z_]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest)
      if (!l) throw new Error(`bad labels: ${JSON.stringify(rest)}`)
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
      rest = rest.slice(l[0].length)
    }
    samples.push({ name: s[1], labels, value: Number(s[3]) })
  }
  return { meta, samples }
}

describe('the machine-read forms with names from the job', () => {
  beforeEach(fillEvil)

  test('--csv: RFC 4180 quoting round-trips every name; a name a spreadsheet would evaluate gets a leading quote', async () => {
    const r = await report([configFile(FLEET), '--csv'])
    expect(r.code).toBe(0)
    const rows = parseCsv(r.out)
    expect(rows[0]).toEqual([
      'scope',
      'repository',
      'jobs',
      'launches',
      'runningLaunches',
      'instanceSeconds',
      'instanceHours',
      'runningInstanceSeconds',
      'costUsd',
      'runningCostUsd',
      'unpricedLaunches',
      'acquireP50Seconds',
      'acquireP95Seconds',
      'bootP50Seconds',
      'bootP95Seconds',
      'lostSpot',
      'lostInside',
      'lostLifetime',
      'lostApi',
      'lostOther',
      'lostRunning',
      'lostGone'
    ])
    const byName = new Map(rows.slice(1, -1).map((row) => [row[1], row]))
    expect([...byName.keys()].sort()).toEqual(
      ["'+1", "'-2", '\'=HYPERLINK("http://x";"y")', "'@SUM(A1)", 'acme/"we,ird"\nname\\x', 'acme/line\nbreak', 'acme/plain'].sort()
    )
    // the raw text: the formula cell starts with the quote inside the CSV quotes
    expect(r.out).toContain(`,"'=HYPERLINK(""http://x"";""y"")",`)
    expect(r.out).toContain(`,"acme/""we,ird""\nname\\x",`)
    expect(r.out).toContain(`,"acme/line\nbreak",`)
    expect(byName.get('acme/plain')).toEqual([
      'group',
      'acme/plain',
      '1',
      '1',
      '0',
      '1800',
      '0.5',
      '0',
      '0.0208',
      '0',
      '0',
      '7',
      '7',
      '',
      '',
      ...['0', '1', '0', '0', '0', '0', '0'] // lost: spot, inside, lifetime, api, other, running, gone
    ])
    // total: 7 × 1800 s = 3.5 h, 7 × 20800 µ$; acquire [1..7] s: rank ceil(3.5) = 4 and ceil(6.65) = 7
    expect(rows[rows.length - 1]).toEqual([
      ...['total', '', '7', '7', '0', '12600', '3.5', '0', '0.1456', '0', '0', '4', '7', '', ''],
      ...['0', '1', '0', '0', '0', '0', '0']
    ])
  })

  test('--openmetrics: TYPE/UNIT/HELP per family, labels escaped (backslash, quote, newline), counters settled only, # EOF', async () => {
    // one running launch besides the settled ones
    const l = ledgerOf(FLEET)
    const id = await reserve(l, req('acme/plain', 'ci', 'r1', 't3.medium'), NOON - H)
    await l.attach(id, 'i-run', NOON - H)
    const r = await report([configFile(FLEET), '--openmetrics'])
    expect(r.code).toBe(0)
    // the evil name's newline is escaped: no sample line holds a raw one
    expect(r.out).toContain('repository="acme/\\"we,ird\\"\\nname\\\\x"')
    const { meta, samples } = parseOpenMetrics(r.out)
    expect(meta.rch_jobs).toEqual({ TYPE: 'counter', HELP: expect.any(String) })
    expect(meta.rch_instance_seconds).toEqual({ TYPE: 'counter', UNIT: 'seconds', HELP: expect.any(String) })
    expect(meta.rch_cost_usd).toEqual({ TYPE: 'counter', UNIT: 'usd', HELP: expect.any(String) })
    expect(meta.rch_running_cost_usd).toMatchObject({ TYPE: 'gauge', UNIT: 'usd' })
    expect(meta.rch_acquire_seconds).toMatchObject({ TYPE: 'summary', UNIT: 'seconds' })
    const value = (name: string, repository: string, extra: Record<string, string> = {}) =>
      samples.filter((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify({ repository, ...extra })).map((s) => s.value)
    for (const name of EVIL) {
      expect(value('rch_jobs_total', name)).toEqual([1])
      expect(value('rch_launches_total', name)).toEqual(name === 'acme/plain' ? [2] : [1])
    }
    const evil = EVIL[0]
    expect(value('rch_instance_seconds_total', evil)).toEqual([1800])
    expect(value('rch_cost_usd_total', evil)).toEqual([0.0208])
    // acme/plain: the settled 1800 s / 0.0208 USD in the counters, the running hour (41600 µ$) in the gauges only
    expect(value('rch_instance_seconds_total', 'acme/plain')).toEqual([1800])
    expect(value('rch_cost_usd_total', 'acme/plain')).toEqual([0.0208])
    expect(value('rch_running_instances', 'acme/plain')).toEqual([1])
    expect(value('rch_running_instance_seconds', 'acme/plain')).toEqual([3600])
    expect(value('rch_running_cost_usd', 'acme/plain')).toEqual([0.0416])
    expect(value('rch_running_instances', evil)).toEqual([0])
    // the summary: j6 (acme/plain) acquired in 7 s
    expect(value('rch_acquire_seconds', 'acme/plain', { quantile: '0.5' })).toEqual([7])
    expect(value('rch_acquire_seconds_count', 'acme/plain')).toEqual([1])
    expect(value('rch_acquire_seconds_sum', 'acme/plain')).toEqual([7])
    expect(value('rch_boot_seconds', 'acme/plain', { quantile: '0.5' })).toEqual([])
    // machines lost: one series per cause for every group, counted from the job records
    expect(meta.rch_machines_lost).toEqual({ TYPE: 'counter', HELP: expect.any(String) })
    expect(value('rch_machines_lost_total', 'acme/plain', { cause: 'inside' })).toEqual([1])
    expect(value('rch_machines_lost_total', 'acme/plain', { cause: 'spot' })).toEqual([0])
    expect(value('rch_machines_lost_total', evil, { cause: 'inside' })).toEqual([0])
    expect(samples.filter((x) => x.name === 'rch_machines_lost_total' && x.labels.repository === evil).map((x) => x.labels.cause)).toEqual([
      'spot',
      'inside',
      'lifetime',
      'api',
      'other',
      'running',
      'gone'
    ])
    // every family's samples follow its metadata, each family once
    const order = r.out
      .split('\n')
      .filter((x) => x.startsWith('# TYPE'))
      .map((x) => x.split(' ')[2])
    expect(new Set(order).size).toBe(order.length)
  })

  test('--openmetrics: a reservation no instance is attached to yet is not a launch in the counter, which must not drop when it is settled as never launched', async () => {
    const launches = async (): Promise<number | undefined> =>
      parseOpenMetrics((await report([configFile(FLEET), '--openmetrics'])).out).samples.find(
        (s) => s.name === 'rch_launches_total' && s.labels.repository === 'acme/plain'
      )?.value
    const l = ledgerOf(FLEET)
    const before = await launches()
    expect(before).toBe(1)
    // a scale-out waiting for its member, or a launch whose answer was lost
    const id = await reserve(l, req('acme/plain', 'ci', 'r1', 't3.medium'), NOON - 60_000)
    expect(await launches()).toBe(1)
    await l.settle(id, { endedAt: NOON, launched: false })
    expect(await launches()).toBe(1)
    // one that came: counted once attached, and still after its settlement
    const got = await reserve(l, req('acme/plain', 'ci', 'r1', 't3.medium'), NOON - 60_000)
    await l.attach(got, 'i-got', NOON - 50_000)
    expect(await launches()).toBe(2)
    await l.settle(got, { endedAt: NOON })
    expect(await launches()).toBe(2)
  })

  test('--openmetrics counts from the beginning, and refuses a range (its counters would drop as the range slides)', async () => {
    const l = ledgerOf(FLEET)
    const id = await reserve(l, req('acme/plain', 'ci', 'r1', 't3.medium'), NOON - 30 * 24 * H)
    await l.settle(id, { endedAt: NOON - 30 * 24 * H + 60_000 })
    const all = parseOpenMetrics((await report([configFile(FLEET), '--openmetrics'])).out)
    expect(all.samples.find((s) => s.name === 'rch_launches_total' && s.labels.repository === 'acme/plain')?.value).toBe(2)
    for (const range of [
      ['--since', '7d'],
      ['--until', 'now']
    ]) {
      const week = await report([configFile(FLEET), '--openmetrics', ...range])
      expect({ code: week.code, out: week.out }).toEqual({ code: 64, out: '' })
      expect(week.err).toMatch(/^report: --openmetrics reports all time \(its counters must never go down, and over a range they would\)/)
    }
    // control: the same range as a table is a report
    expect((await report([configFile(FLEET), '--json', '--since', '7d'])).code).toBe(0)
  })

  test('the table shows a control character in a name as ?, never raw', async () => {
    const r = await report([configFile(FLEET)])
    expect(r.out).toContain('acme/"we,ird"?name\\x')
    // head, header, the groups, the total, the lost-machine note, the end
    expect(r.out.split('\n')).toHaveLength(1 + 1 + EVIL.length + 1 + 1 + 1)
  })
})

describe('--since/--until forms', () => {
  test('zone-less times are read in the budget zone, also next to a daylight-saving change', () => {
    // Berlin is UTC+1 until 29 March 2026 01:00Z, UTC+2 after: 01:30 local is still +1, so 00:30Z
    expect(parseTime('2026-03-29T01:30', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 2, 29, 0, 30))
    expect(parseTime('2026-07-01', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 5, 30, 22))
    expect(parseTime('2026-07-01 08:15:30', NOON, 'UTC')).toBe(Date.UTC(2026, 6, 1, 8, 15, 30))
    expect(parseTime('2026-07-01T08:15+0200', NOON, 'UTC')).toBe(Date.UTC(2026, 6, 1, 6, 15))
    expect(parseTime('2026-07-01T08:15:00.5Z', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 6, 1, 8, 15, 0, 500))
    expect(parseTime('now', NOON, 'UTC')).toBe(NOON)
    expect(parseTime('2w', NOON, 'UTC')).toBe(NOON - 14 * 24 * H)
    for (const bad of ['', '7', '7y', '-7d', '2026-13-01', '2026-02-29', '2026-07-01T24:00', 'yesterday', '1e3d'])
      expect(parseTime(bad, NOON, 'UTC')).toBeNull()
  })
  test('a time with a zone that does not exist is refused as one without (Date.parse rolled it over to March)', () => {
    for (const bad of [
      '2026-02-30T08:00Z',
      '2026-04-31T08:00+01:00',
      '2026-01-01T24:00Z',
      '2026-01-01T08:60Z',
      '2026-01-01T08:00+24:00',
      '2026-01-01Z'
    ])
      expect([bad, parseTime(bad, NOON, 'UTC')]).toEqual([bad, null])
    // Controls: the same forms on days that exist, and a zone west of UTC.
    expect(parseTime('2026-02-28T08:00Z', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 1, 28, 8))
    expect(parseTime('2026-04-30T08:00-03:30', NOON, 'UTC')).toBe(Date.UTC(2026, 3, 30, 11, 30))
    expect(parseTime('2026-01-01T08:00:00.123456789z', NOON, 'UTC')).toBe(Date.UTC(2026, 0, 1, 8, 0, 0, 123))
  })
  test('a wall time the clock jumped over is the instant after the jump, whichever side of UTC; one shown twice is its first instant', () => {
    // Santiago moves from UTC-4 to UTC-3 at midnight on 6 September 2026: that day begins at 01:00
    // local, 04:00Z; 03:00Z is 23:00 on the 5th, and a day starting there would take an hour of it.
    expect(parseTime('2026-09-06', NOON, 'America/Santiago')).toBe(Date.UTC(2026, 8, 6, 4))
    expect(budgetDay(Date.UTC(2026, 8, 6, 4), 'America/Santiago')).toBe('2026-09-06')
    expect(budgetDay(Date.UTC(2026, 8, 6, 4) - 1, 'America/Santiago')).toBe('2026-09-05')
    expect(parseTime('2026-09-06T00:30', NOON, 'America/Santiago')).toBe(Date.UTC(2026, 8, 6, 4, 30))
    // New York skips 02:00-03:00 on 8 March 2026 (07:00Z): 02:30 is read as 03:30 EDT.
    expect(parseTime('2026-03-08T02:30', NOON, 'America/New_York')).toBe(Date.UTC(2026, 2, 8, 7, 30))
    expect(parseTime('2026-03-29T02:30', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 2, 29, 1, 30))
    // Shown twice: Berlin's 02:30 on 25 October 2026 (00:30Z in summer time, 01:30Z after), Santiago's 23:30 on 4 April.
    expect(parseTime('2026-10-25T02:30', NOON, 'Europe/Berlin')).toBe(Date.UTC(2026, 9, 25, 0, 30))
    expect(parseTime('2026-04-04T23:30', NOON, 'America/Santiago')).toBe(Date.UTC(2026, 3, 5, 2, 30))
    expect(parseTime('2026-11-01T01:30', NOON, 'America/New_York')).toBe(Date.UTC(2026, 10, 1, 5, 30))
    // Control, no change near: Santiago's 6 August begins at 04:00Z (UTC-4).
    expect(parseTime('2026-08-06', NOON, 'America/Santiago')).toBe(Date.UTC(2026, 7, 6, 4))
  })
})

/** Cells as a spreadsheet whose list separator is `;` reads a CSV line: split on `;` outside quotes. */
const semicolonCells = (line: string): string[] => {
  const cells: string[] = []
  let cell = ''
  let quoted = false
  for (const c of line) {
    if (c === '"') quoted = !quoted
    else if (c === ';' && !quoted) {
      cells.push(cell)
      cell = ''
    } else cell += c
  }
  return [...cells, cell]
}

test('--csv: a workflow name with a semicolon is quoted, so a `;`-separated spreadsheet finds no formula cell in it', async () => {
  const name = 'ci;=HYPERLINK(1)'
  const l = ledgerOf(FLEET)
  const id = await reserve(l, req('acme/widgets', name, 'r1', 't3.medium'), NOON - H)
  await l.attach(id, 'i-1', NOON - H)
  await l.settle(id, { endedAt: NOON - H + 1800_000 })
  const r = await report([configFile(FLEET), '--csv', '--by', 'workflow'])
  expect(r.code).toBe(0)
  const line = r.out.split('\r\n').find((x) => x.includes('HYPERLINK')) as string
  // Positive control: the name itself, unquoted, gives such a cell.
  expect(semicolonCells(`group,acme/widgets,${name},1`).some((c) => c.startsWith('='))).toBe(true)
  expect(semicolonCells(line).some((c) => /^[=+\-@]/.test(c))).toBe(false)
  expect(line).toContain(`,"${name}",`)
})

test('the table: a workflow name with a right-to-left override cannot reorder what a terminal shows', async () => {
  const name = 'ci\u202e1 90.0'
  const l = ledgerOf(FLEET)
  const id = await reserve(l, req('acme/widgets', name, 'r1', 't3.medium'), NOON - H)
  await l.attach(id, 'i-1', NOON - H)
  await l.settle(id, { endedAt: NOON - H + 1800_000 })
  // Positive control: the name reached the report (--json keeps it, escaped: it reads back as it is).
  const j = await report([configFile(FLEET), '--json', '--by', 'workflow'])
  expect(j.out).toContain('"workflow": "ci\\u202e1 90.0"')
  expect(j.out).toMatch(/^[^\u202e]*$/)
  expect(JSON.stringify(JSON.parse(j.out))).toContain(name)
  const r = await report([configFile(FLEET), '--by', 'workflow'])
  expect(r.code).toBe(0)
  expect(r.out).not.toMatch(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/)
  expect(r.out).toContain('ci?1 90.0')
})

test('a lost-machine cause this version does not know (a newer hook wrote it) counts as other', () => {
  const j = (jobId: string, lost?: string) => ({
    jobId,
    repository: 'acme/x',
    workflow: 'ci',
    runId: '1',
    job: 'b',
    runner: 'r',
    runnerHost: 'h',
    provider: 'ec2',
    startedAt: NOON,
    timings: {},
    lost
  })
  // null: a hand-edited local ledger line; not a loss
  const n = { ...j('d'), lost: null as unknown as string }
  const r = buildReport({ records: [], jobs: [j('a', 'meteor'), j('b', 'spot'), j('c'), n], by: 'repository', timeZone: 'UTC', now: NOON })
  expect(r.total.lost).toEqual({ spot: 1, inside: 0, lifetime: 0, api: 0, other: 1, running: 0, gone: 0 })
})

describe('--openmetrics over all time keeps the sums of what is final in a private checkpoint', () => {
  const DAY = 24 * H
  const BASE = Date.UTC(2026, 10, 1, 8) // 1 November 08:00Z; NOON is 1 December 12:00Z
  const W = 'acme/widgets'
  const G = 'acme/gadgets'
  let held = ''

  /** Day d: a t3.medium launch of W (even d) or G (odd d), attached 10 s in, ended 600 s later; its job with acquire 10d+1 ms, boot 1000d ms. */
  async function days(ds: number[]): Promise<void> {
    const l = ledgerOf(FLEET)
    for (const d of ds) {
      const at = BASE + d * DAY
      const repo = d % 2 ? G : W
      const id = await reserve(l, req(repo, 'ci', `r${d % 3}`, 't3.medium'), at)
      await l.attach(id, `i-${d}`, at + 10_000)
      await l.settle(id, { endedAt: at + 610_000 })
      await l.recordJob({
        jobId: `d${d}`,
        repository: repo,
        workflow: 'ci',
        runner: `r${d % 3}`,
        runId: '1',
        job: 'b',
        runnerHost: 'h',
        provider: 'ec2',
        startedAt: at,
        timings: { acquire: 10 * d + 1, boot: 1000 * d }
      })
      if (d % 7 === 0) await l.recordJob({ jobId: `d${d}`, lost: 'spot' })
    }
  }

  const cpDir = (): string => join(root, 'ledger', 'report')

  /** A report over the whole ledger, without the checkpoints kept (set aside and put back). */
  async function fresh(localRoot: string, now: number, ranges: object[], by = 'repository') {
    const had = existsSync(cpDir())
    if (had) renameSync(cpDir(), `${cpDir()}.aside`)
    try {
      return await scrape(localRoot, now, ranges, by)
    } finally {
      rmSync(cpDir(), { recursive: true, force: true })
      if (had) renameSync(`${cpDir()}.aside`, cpDir())
    }
  }

  /** A report through a ledger that records the ranges it is asked for. */
  async function scrape(localRoot: string, now: number, ranges: object[], by = 'repository') {
    const args = parseArgs(reportCommand, [configFile(FLEET), '--openmetrics', '--by', by])
    if (!('positional' in args)) throw new Error(JSON.stringify(args))
    const t = io()
    const open = async (config: Config): Promise<Ledger> => {
      const l = new LocalLedger(config.fleet, join(root, 'ledger'), { now: () => now })
      return Object.assign(Object.create(l) as LocalLedger, {
        records: (r?: { since?: number }) => (ranges.push(r ?? {}), l.records(r))
      })
    }
    const code = await runReport(args, t.io, { now, localRoot, open })
    expect({ code, err: t.err() }).toEqual({ code: 0, err: '' })
    return t.out()
  }

  beforeEach(async () => {
    await days([...Array(30).keys()])
    // Reserved on day 10 and open until the second scrape: the cutoff may not pass it.
    const l = ledgerOf(FLEET)
    held = await reserve(l, req('acme/held', 'ci', 'r9', 't3.medium'), BASE + 10 * DAY)
    await l.attach(held, 'i-held', BASE + 10 * DAY + 10_000)
  })

  test('a run from the checkpoint prints what a run over the whole ledger prints, and reads only from the cutoff', async () => {
    const kept = join(root, 'kept')
    const ranges: object[] = []
    const first = await scrape(kept, NOON, ranges)
    expect(await scrape(kept, NOON, ranges)).toBe(first)
    // the whole ledger, then from the open reservation on (8 days back would be later)
    expect(ranges).toEqual([{}, { since: BASE + 10 * DAY }])

    // Five days on: the held one settled, four more days of jobs.
    const l = ledgerOf(FLEET)
    await l.settle(held, { endedAt: BASE + 10 * DAY + 610_000 })
    await days([31, 32, 33, 34])
    const later = NOON + 5 * DAY
    const fromKept = await scrape(kept, later, ranges)
    const whole = await fresh(kept, later, ranges)
    expect(fromKept).toBe(whole)
    expect(await scrape(kept, later, ranges)).toBe(whole)
    expect(ranges.slice(2)).toEqual([{ since: BASE + 10 * DAY }, {}, { since: later - 8 * DAY }])

    // The figures, by hand. W: days 0, 2 … 28, 32, 34 (17 jobs and launches of 600 s); its acquire
    // sum 10 × (0 + 2 + … + 28) + 15 + 321 + 341 = 2777 ms; quantiles over the jobs since
    // later − 8 days (28 November 12:00Z): days 28, 32, 34 → 281 321 341 ms.
    const lines = whole.split('\n')
    for (const line of [
      `rch_jobs_total{repository="${W}"} 17`,
      `rch_jobs_total{repository="${G}"} 17`,
      `rch_launches_total{repository="${W}"} 17`,
      `rch_instance_seconds_total{repository="${W}"} 10200`,
      `rch_instance_seconds_total{repository="acme/held"} 600`,
      `rch_acquire_seconds_count{repository="${W}"} 17`,
      `rch_acquire_seconds_sum{repository="${W}"} 2.777`,
      `rch_acquire_seconds{repository="${W}",quantile="0.5"} 0.321`,
      `rch_acquire_seconds{repository="${W}",quantile="0.95"} 0.341`,
      `rch_machines_lost_total{repository="${W}",cause="spot"} 3`, // days 0, 14, 28
      `rch_machines_lost_total{repository="${G}",cause="spot"} 2` // days 7, 21
    ])
      expect(lines).toContain(line)
  })

  // The operator trims the logs (configuration.md says to) and the host reboots, clearing $TMPDIR:
  // a checkpoint kept there was lost with it, and the ledger's rest counted alone made the counters fall.
  test("a local ledger's checkpoint is kept in its folder: the logs trimmed before the cutoff and the local folder lost, the same text", async () => {
    const kept = join(root, 'kept')
    const ledger = join(root, 'ledger')
    await ledgerOf(FLEET).settle(held, { endedAt: BASE + 10 * DAY + 610_000 })
    const first = await scrape(kept, NOON, [])
    const [name] = readdirSync(cpDir())
    expect(statSync(join(cpDir(), name)).mode & 0o777).toBe(0o600)
    expect(existsSync(join(kept, 'report'))).toBe(false)
    const { cutoff } = JSON.parse(readFileSync(join(cpDir(), name), 'utf8')) as Checkpoint
    expect(cutoff).toBe(NOON - 8 * DAY)
    // Trimmed: every settled reservation, and every job line of a job, from before the cutoff.
    const settled = readFileSync(join(ledger, 'settled.jsonl'), 'utf8').split('\n').filter(Boolean)
    const keptSettled = settled.filter((line) => (JSON.parse(line) as { reservedAt: number }).reservedAt >= cutoff)
    const jobLines = readFileSync(join(ledger, 'jobs.jsonl'), 'utf8').split('\n').filter(Boolean)
    const early = new Set(
      jobLines
        .map((line) => (JSON.parse(line) as { update: { jobId: string; startedAt?: number } }).update)
        .filter((u) => u.startedAt !== undefined && u.startedAt < cutoff)
        .map((u) => u.jobId)
    )
    const keptJobs = jobLines.filter((line) => !early.has((JSON.parse(line) as { update: { jobId: string } }).update.jobId))
    expect(keptSettled.length).toBeLessThan(settled.length / 2)
    expect(keptJobs.length).toBeLessThan(jobLines.length / 2)
    writeFileSync(join(ledger, 'settled.jsonl'), keptSettled.map((l) => l + '\n').join(''))
    writeFileSync(join(ledger, 'jobs.jsonl'), keptJobs.map((l) => l + '\n').join(''))
    rmSync(kept, { recursive: true })
    expect(await scrape(kept, NOON, [])).toBe(first)
    // control: the trimmed ledger counted without its checkpoint falls
    const alone = await fresh(kept, NOON, [])
    expect(alone).not.toBe(first)
    expect(alone.split('\n')).toContain(`rch_jobs_total{repository="${W}"} 3`) // days 24, 26, 28
  })

  test('a checkpoint kept under the local folder by an earlier build is read once, then kept in the ledger folder', async () => {
    const kept = join(root, 'kept')
    const byRepo = await scrape(kept, NOON, [])
    const [name] = readdirSync(cpDir())
    const cp = JSON.parse(readFileSync(join(cpDir(), name), 'utf8')) as Checkpoint
    cp.rows.find((r) => r.key[0] === W)!.jobs += 1000
    rmSync(cpDir(), { recursive: true })
    mkdirSync(join(kept, 'report'), { mode: 0o700 })
    writeFileSync(join(kept, 'report', name), JSON.stringify(cp), { mode: 0o600 })
    const ranges: object[] = []
    const moved = await scrape(kept, NOON, ranges)
    expect(moved.split('\n')).toContain(`rch_jobs_total{repository="${W}"} ${1000 + 15}`)
    expect(ranges).toEqual([{ since: cp.cutoff }])
    expect(readdirSync(join(kept, 'report'))).toEqual([])
    expect(readdirSync(cpDir())).toEqual([name])
    expect(await scrape(kept, NOON, [])).toBe(moved)
    // control: without the tampered sums, the text of the first run
    rmSync(cpDir(), { recursive: true })
    expect(await scrape(kept, NOON, [])).toBe(byRepo)
  })

  // Counting again without it would make the counters fall where the logs were trimmed.
  test('a checkpoint that is there but cannot be used fails the command, prints nothing and reads no ledger; a good one is used (control)', async () => {
    const kept = join(root, 'kept')
    const byRepo = await scrape(kept, NOON, [])
    // another grouping has its own checkpoint: the same text as a run without any
    expect(await scrape(kept, NOON, [], 'runner')).toBe(await fresh(kept, NOON, [], 'runner'))
    const files = readdirSync(cpDir()).map((f) => join(cpDir(), f))
    expect(files).toHaveLength(2)
    const mine = files.find((f) => JSON.parse(JSON.parse(readFileSync(f, 'utf8')).of).by === 'repository')!
    const theirs = files.find((f) => f !== mine)!
    const good = readFileSync(mine, 'utf8')
    const cp = JSON.parse(good)
    cp.rows.find((r: { key: string[] }) => r.key[0] === W).jobs += 1000
    const tampered = JSON.stringify(cp)
    const put = (text: string, mode = 0o600): void => {
      rmSync(mine, { force: true })
      writeFileSync(mine, text, { mode })
    }
    // control: a private one is used as it is (the sums are the checkpoint's)
    put(tampered)
    expect((await scrape(kept, NOON, [])).split('\n')).toContain(`rch_jobs_total{repository="${W}"} ${1000 + 15}`)
    const args = parseArgs(reportCommand, [configFile(FLEET), '--openmetrics'])
    if (!('positional' in args)) throw new Error('args')
    const bad: [string, () => void, RegExp][] = [
      ['open to others', () => put(tampered, 0o644), /is open to other users \(mode 0644, must be 0600\)/],
      ['damaged', () => put('{"version":1'), /is not a checkpoint of version 1 \(damaged, or made by another version\)/],
      ['of another version', () => put(JSON.stringify({ ...cp, version: 2 })), /is not a checkpoint of version 1/],
      ['a fraction of a job', () => put(tampered.replace(/"jobs":(\d+)/, '"jobs":$1.5')), /is not a checkpoint of version 1/],
      ['of another grouping', () => put(readFileSync(theirs, 'utf8')), /holds the sums of another ledger, grouping or time zone/],
      ['a symlink', () => symlinkSync(theirs, mine), /cannot be opened \(ELOOP\)/],
      ['a folder', () => mkdirSync(mine), /is not a file|cannot be opened/]
    ]
    for (const [what, make, why] of bad) {
      make()
      const ranges: object[] = []
      const t = io()
      const open = async (config: Config): Promise<Ledger> => {
        const l = new LocalLedger(config.fleet, join(root, 'ledger'), { now: () => NOON })
        return Object.assign(Object.create(l) as LocalLedger, { records: (r?: object) => (ranges.push(r ?? {}), l.records(r)) })
      }
      const run = runReport(args, t.io, { now: NOON, localRoot: kept, open })
      await expect(run.then(() => what)).rejects.toThrow(why) // a resolved run names its case
      await expect(run).rejects.toThrow(
        /^report: the checkpoint .* it holds the all-time sums up to its cutoff, so nothing is printed; remove it to count from the whole ledger again \(the counters fall if the ledger's older lines were trimmed\), or put back a good copy$/
      )
      expect({ what, out: t.out(), ranges }).toEqual({ what, out: '', ranges: [] })
      rmSync(mine, { recursive: true, force: true })
    }
    // control: the good one back, the first text
    put(good)
    expect(await scrape(kept, NOON, [])).toBe(byRepo)
    // The local root (or the checkpoints' folder) open to others fails the command naming it.
    chmodSync(cpDir(), 0o777)
    await expect(runReport(args, io().io, { now: NOON, localRoot: kept })).rejects.toThrow(
      `private folder ${cpDir()} is open to other users`
    )
    chmodSync(cpDir(), 0o700)
    chmodSync(kept, 0o777)
    await expect(runReport(args, io().io, { now: NOON, localRoot: kept })).rejects.toThrow(`private folder ${kept} is open to other users`)
  })

  // A checkpoint kept, then the ledger's files gone while its folder stays (a restore of the
  // checkpoints alone): the sums alone would be printed, the counters falling (a reset to Prometheus).
  test("with a checkpoint kept, a ledger folder without the ledger's files fails the command and prints nothing; back in place, the same text (control)", async () => {
    const ledger = join(root, 'ledger')
    const kept = join(root, 'kept')
    const first = await scrape(kept, NOON, [])
    const args = parseArgs(reportCommand, [configFile(FLEET), '--openmetrics'])
    if (!('positional' in args)) throw new Error('args')
    mkdirSync(`${ledger}.away`, { mode: 0o700 })
    for (const f of readdirSync(ledger).filter((f) => f !== 'report')) renameSync(join(ledger, f), join(`${ledger}.away`, f))
    const t = io()
    expect(await runReport(args, t.io, { now: NOON, localRoot: kept })).toBe(70)
    expect(t.out()).toBe('')
    expect(t.err()).toMatch(
      /^report: the fleet ledger .* holds none of its files, while this report's checkpoint holds its sums up to .*: its counters would fall, so nothing is printed \(is the ledger's disk mounted\?\)\n$/
    )
    for (const f of readdirSync(`${ledger}.away`)) renameSync(join(`${ledger}.away`, f), join(ledger, f))
    const again = io()
    expect(await runReport(args, again.io, { now: NOON, localRoot: kept })).toBe(0)
    expect(again.out()).toBe(first)
  })

  // The ledger's disk not mounted yet, or an empty folder in its place: nothing to count, and no
  // checkpoint kept (an empty one would move the cutoff past all that is missing, for good).
  test('a ledger folder gone or empty prints no series and keeps no checkpoint; back in place, the same text (control)', async () => {
    const ledger = join(root, 'ledger')
    const kept = join(root, 'kept')
    const args = parseArgs(reportCommand, [configFile(FLEET), '--openmetrics'])
    if (!('positional' in args)) throw new Error('args')
    const first = io()
    expect(await runReport(args, first.io, { now: NOON, localRoot: kept })).toBe(0)
    expect(readdirSync(join(ledger, 'report'))).toHaveLength(1)
    renameSync(ledger, `${ledger}.away`)
    for (const empty of [false, true]) {
      if (empty) mkdirSync(ledger, { mode: 0o700 })
      const t = io()
      expect(await runReport(args, t.io, { now: NOON, localRoot: kept })).toBe(0)
      expect(t.out()).not.toMatch(/\{/)
      expect(t.out()).toMatch(/^# HELP rch_jobs .*# EOF\n$/s)
      expect(readdirSync(root).filter((f) => f === 'ledger')).toEqual(empty ? ['ledger'] : [])
      if (empty) expect(readdirSync(ledger)).toEqual([])
      expect(existsSync(join(kept, 'report'))).toBe(false)
    }
    rmSync(ledger, { recursive: true })
    renameSync(`${ledger}.away`, ledger)
    const again = io()
    expect(await runReport(args, again.io, { now: NOON, localRoot: kept })).toBe(0)
    expect(again.out()).toBe(first.out())
  })

  // A run with the clock ahead kept sums up to a cutoff after today's now. Recounted and saved over,
  // a trimmed ledger's sums would be gone for good.
  test('a checkpoint whose cutoff is after now (the clock set back) fails the command and is kept; once the clock is past it, it is used (control)', async () => {
    const kept = join(root, 'kept')
    await ledgerOf(FLEET).settle(held, { endedAt: BASE + 10 * DAY + 610_000 })
    const ahead = await scrape(kept, NOON + 365 * DAY, [])
    const [name] = readdirSync(cpDir())
    const file = join(cpDir(), name)
    const text = readFileSync(file, 'utf8')
    expect((JSON.parse(text) as Checkpoint).cutoff).toBe(NOON + 357 * DAY)
    const args = parseArgs(reportCommand, [configFile(FLEET), '--openmetrics'])
    if (!('positional' in args)) throw new Error('args')
    const t = io()
    expect(await runReport(args, t.io, { now: NOON, localRoot: kept })).toBe(70)
    expect(t.out()).toBe('')
    expect(t.err()).toMatch(
      /^report: the checkpoint .* holds sums up to 2027-11-23T12:00:00\.000Z, after this host's clock \(2026-12-01T12:00:00\.000Z\): nothing is printed \(was the clock set back\?\); remove it/
    )
    expect(readFileSync(file, 'utf8')).toBe(text)
    const ranges: object[] = []
    expect(await scrape(kept, NOON + 366 * DAY, ranges)).toBe(await fresh(kept, NOON + 366 * DAY, []))
    expect(ranges).toEqual([{ since: NOON + 357 * DAY }])
    expect(ahead).toMatch(/rch_jobs_total/)
  })

  // A DynamoDB ledger is never trimmed by the hook: a checkpoint it cannot use costs a recount, not the exporter.
  test('a DynamoDB ledger: a damaged checkpoint (under the local folder) is said and counted again, and a good one is used (control)', async () => {
    const kept = join(root, 'kept')
    const dynamo = { ...FLEET, ledger: { kind: 'dynamodb', table: 'rch-ledger', region: 'eu-west-1' } }
    const args = parseArgs(reportCommand, [configFile(dynamo), '--openmetrics'])
    if (!('positional' in args)) throw new Error('args')
    const run = async (ranges: object[]) => {
      const t = io()
      const open = async (config: Config): Promise<Ledger> => {
        const l = new LocalLedger(config.fleet, join(root, 'ledger'), { now: () => NOON })
        return Object.assign(Object.create(l) as LocalLedger, { records: (r?: object) => (ranges.push(r ?? {}), l.records(r)) })
      }
      const code = await runReport(args, t.io, { now: NOON, localRoot: kept, open })
      return { code, out: t.out(), err: t.err() }
    }
    const first = await run([])
    expect(first).toMatchObject({ code: 0, err: '' })
    const [name] = readdirSync(join(kept, 'report'))
    expect(existsSync(cpDir())).toBe(false)
    const ranges: object[] = []
    expect(await run(ranges)).toEqual(first)
    expect(ranges).toEqual([{ since: BASE + 10 * DAY }])
    writeFileSync(join(kept, 'report', name), '{"version":1')
    const again: object[] = []
    const damaged = await run(again)
    expect(damaged).toMatchObject({ code: 0, out: first.out })
    expect(damaged.err).toMatch(
      /^report: the checkpoint .* is not a checkpoint of version 1 \(damaged, or made by another version\): counted again from the whole ledger \(the hook never trims a DynamoDB ledger\)\n$/
    )
    expect(again).toEqual([{}])
  })

  test('a checkpoint too big to be read back (names without end) is not kept, and the command says so', async () => {
    const kept = join(root, 'kept')
    await scrape(kept, NOON, [])
    const [name] = readdirSync(cpDir())
    const cp = JSON.parse(readFileSync(join(cpDir(), name), 'utf8')) as Checkpoint
    const file = join(cpDir(), 'big.json')
    expect(() => saveCheckpoint(file, cp, 200)).toThrow(
      /^the checkpoint of \d+ groups would be 0\.\d MiB, over the 0\.0 MiB one may be: group by fewer names/
    )
    expect(existsSync(file)).toBe(false)
    // control: within the bound it is kept
    saveCheckpoint(file, cp)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(cp)
  })
})
