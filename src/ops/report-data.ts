// What `report` counts, from the ledger's reservations (launches, instance time, cost) and job
// records (jobs, phase times), grouped by one of their fields. Every output form prints these rows.
import { LOSS_CAUSES, type JobRecord, type LedgerRecord, type LossCause } from '../fleet/ledger'
import { billedSeconds, budgetDay, costMicro } from '../fleet/money'

export const GROUP_BYS = ['repository', 'workflow', 'runner', 'day'] as const
export type GroupBy = (typeof GROUP_BYS)[number]

/** The fields a group is told apart by: a workflow's name means nothing without its repository. */
export const GROUP_FIELDS: Record<GroupBy, string[]> = {
  repository: ['repository'],
  workflow: ['repository', 'workflow'],
  runner: ['runner'],
  day: ['day']
}

/** One phase's samples, their sum and nearest-rank percentiles, in ms; null without samples. */
export interface Phase {
  samples: number
  sum: number
  p50: number | null
  p95: number | null
}

export interface Totals {
  jobs: number
  /** Reservations whose instance ran or runs (one settled as never launched is not counted). */
  launches: number
  /** Launches not settled yet: their time and cost below run up to now. */
  running: number
  /** Of those, the ones no instance is attached to yet: they may still be settled as never launched. */
  unattached: number
  /** Settled: billed seconds; running: per-second seconds since attach (or reservation), 60 s minimum. */
  instanceSeconds: number
  runningInstanceSeconds: number
  /** Micro-USD: settled actual cost plus, for running launches, price × elapsed. */
  costMicro: number
  runningCostMicro: number
  /** Launches of an instance type without a price (no budget set): counted at 0 USD. */
  unpriced: number
  acquire: Phase
  boot: Phase
  /** Jobs whose machine went away under a step, by cause (every cause, 0 when none). */
  lost: Record<LossCause, number>
}

export interface Row extends Totals {
  /** Values of GROUP_FIELDS[by], in that order. */
  key: string[]
}

export interface Report {
  by: GroupBy
  timeZone: string
  since?: number
  until?: number
  now: number
  rows: Row[]
  total: Totals
}

export interface ReportInput {
  records: LedgerRecord[]
  jobs: JobRecord[]
  by: GroupBy
  timeZone: string
  now: number
  since?: number
  until?: number
}

/** Nearest rank: the smallest sample with at least q of all samples at or below it. */
export function percentile(sorted: number[], q: number): number | null {
  if (!sorted.length) return null
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]
}

function phase(values: number[]): Phase {
  const sorted = [...values].sort((a, b) => a - b)
  return { samples: sorted.length, sum: sorted.reduce((a, b) => a + b, 0), p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95) }
}

interface Acc {
  key: string[]
  jobs: JobRecord[]
  records: LedgerRecord[]
}

/** A launch's instance time and cost: settled as billed, running as if it ended now. */
export function launchUse(r: LedgerRecord, now: number): { seconds: number; micro: number; running: boolean } {
  if (r.settledAt !== undefined) return { seconds: r.billedSeconds ?? 0, micro: r.actualMicro ?? 0, running: false }
  const seconds = billedSeconds(r.attachedAt ?? r.reservedAt, Math.max(now, r.attachedAt ?? r.reservedAt))
  return { seconds, micro: r.priceMicroPerHour === null ? 0 : costMicro(r.priceMicroPerHour, seconds), running: true }
}

/** A settled reservation with nothing billed is a launch that never ran (settled launched:false). */
const neverRan = (r: LedgerRecord): boolean => r.settledAt !== undefined && !r.billedSeconds

function totalsOf(records: LedgerRecord[], jobs: JobRecord[], now: number): Totals {
  const t: Totals = {
    jobs: jobs.length,
    launches: 0,
    running: 0,
    unattached: 0,
    instanceSeconds: 0,
    runningInstanceSeconds: 0,
    costMicro: 0,
    runningCostMicro: 0,
    unpriced: 0,
    acquire: phase(jobs.flatMap((j) => (Number.isFinite(j.timings.acquire) ? [j.timings.acquire] : []))),
    boot: phase(jobs.flatMap((j) => (Number.isFinite(j.timings.boot) ? [j.timings.boot] : []))),
    lost: Object.fromEntries(LOSS_CAUSES.map((c) => [c, 0])) as Record<LossCause, number>
  }
  for (const j of jobs) {
    if (typeof j.lost !== 'string') continue
    // A cause this version does not know (a newer hook's) counts as other.
    t.lost[(LOSS_CAUSES as readonly string[]).includes(j.lost) ? (j.lost as LossCause) : 'other']++
  }
  for (const r of records) {
    if (neverRan(r)) continue
    const use = launchUse(r, now)
    t.launches++
    t.instanceSeconds += use.seconds
    t.costMicro += use.micro
    if (r.priceMicroPerHour === null) t.unpriced++
    if (use.running) {
      t.running++
      if (r.instanceId === undefined) t.unattached++
      t.runningInstanceSeconds += use.seconds
      t.runningCostMicro += use.micro
    }
  }
  return t
}

/** The group of a reservation or job (at its reservation or start time). */
const groupKeyOf =
  (by: GroupBy, timeZone: string) =>
  (x: { repository: string; workflow: string; runner: string }, at: number): string[] =>
    by === 'day' ? [budgetDay(at, timeZone)] : GROUP_FIELDS[by].map((f) => x[f as keyof typeof x])

/** A group's row with nothing in it. */
export const emptyRow = (key: string[]): Row => ({ key, ...totalsOf([], [], 0) })

/** The rows of the report, one per group in key order, and the total over all of them. */
export function buildReport(input: ReportInput): Report {
  const { by, timeZone, now } = input
  const keyOf = groupKeyOf(by, timeZone)
  const groups = new Map<string, Acc>()
  const accOf = (key: string[]): Acc => {
    const id = JSON.stringify(key)
    let acc = groups.get(id)
    if (!acc) groups.set(id, (acc = { key, jobs: [], records: [] }))
    return acc
  }
  for (const r of input.records) accOf(keyOf(r, r.reservedAt)).records.push(r)
  for (const j of input.jobs) accOf(keyOf(j, j.startedAt)).jobs.push(j)
  const rows = [...groups.values()]
    .sort((a, b) => compareKeys(a.key, b.key))
    .map((g) => ({ key: g.key, ...totalsOf(g.records, g.jobs, now) }))
  return {
    by,
    timeZone,
    since: input.since,
    until: input.until,
    now,
    rows,
    total: totalsOf(input.records, input.jobs, now)
  }
}

export function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1
  }
  return 0
}
