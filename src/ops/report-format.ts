// `report`'s table, JSON and CSV forms of the same rows (report-data.ts).
import { usd } from '../fleet/money'
import { json, table } from './output'
import { GROUP_FIELDS, type Phase, type Report, type Totals } from './report-data'
import type { LossCause } from '../fleet/ledger'

/** The table's words for each cause of a lost machine. */
const LOSS_WORDS: Record<LossCause, string> = {
  spot: 'Spot interruption',
  inside: 'shut down from inside',
  lifetime: 'lifetime limit',
  api: 'ended through the API',
  other: 'other EC2 reason',
  running: 'connection lost, machine still running',
  gone: 'unknown to EC2'
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString())
const seconds = (ms: number | null): number | null => (ms === null ? null : ms / 1000)
/** Micro-USD as a JSON number of dollars; exact to the micro-dollar. */
const dollars = (micro: number): number => Number((micro / 1e6).toFixed(6))

/** The metrics of a row or the total, under the names --json and --csv document. */
function metrics(t: Totals) {
  const ph = (p: Phase) => ({ samples: p.samples, p50: seconds(p.p50), p95: seconds(p.p95) })
  return {
    jobs: t.jobs,
    launches: t.launches,
    runningLaunches: t.running,
    instanceSeconds: t.instanceSeconds,
    instanceHours: Number((t.instanceSeconds / 3600).toFixed(6)),
    runningInstanceSeconds: t.runningInstanceSeconds,
    costUsd: dollars(t.costMicro),
    runningCostUsd: dollars(t.runningCostMicro),
    unpricedLaunches: t.unpriced,
    acquireSeconds: ph(t.acquire),
    bootSeconds: ph(t.boot),
    lostMachines: { ...t.lost }
  }
}

/** Machines that went away under a step, by cause; `running` (EC2 still ran it: only the connection failed) is not one. */
const lostCauses = (t: Totals): [LossCause, number][] => (Object.entries(t.lost) as [LossCause, number][]).filter(([c]) => c !== 'running')
const lostTotal = (t: Totals): number => lostCauses(t).reduce((a, [, n]) => a + n, 0)

const groupOf = (r: Report, key: string[]): Record<string, string> => Object.fromEntries(GROUP_FIELDS[r.by].map((f, i) => [f, key[i]]))

export function reportJson(r: Report): string {
  return json({
    by: r.by,
    timeZone: r.timeZone,
    since: iso(r.since),
    until: iso(r.until),
    now: iso(r.now),
    groups: r.rows.map((row) => ({ ...groupOf(r, row.key), ...metrics(row) })),
    total: metrics(r.total)
  })
}

const phaseCell = (ms: number | null): string => (ms === null ? '-' : `${(ms / 1000).toFixed(1)} s`)

export function reportTable(r: Report): string {
  const fields = GROUP_FIELDS[r.by]
  const cells = (t: Totals): string[] => {
    const mark = t.running ? '*' : ''
    return [
      String(t.jobs),
      String(t.launches),
      (t.instanceSeconds / 3600).toFixed(2) + mark,
      usd(t.costMicro) + mark,
      phaseCell(t.acquire.p50),
      phaseCell(t.acquire.p95),
      phaseCell(t.boot.p50),
      phaseCell(t.boot.p95),
      String(lostTotal(t))
    ]
  }
  const rows = r.rows.map((row) => [...row.key, ...cells(row)])
  rows.push(['(total)', ...fields.slice(1).map(() => ''), ...cells(r.total)])
  const at = (ms: number | undefined): string | null => iso(ms)?.replace(/\.\d{3}Z$/, 'Z') ?? null
  const head = `fleet report by ${r.by}${r.by === 'day' ? ` (${r.timeZone})` : ''}: ${at(r.since) ?? 'the beginning'} to ${at(r.until) ?? `now (${at(r.now)})`}\n`
  const notes: string[] = []
  if (!r.rows.length) notes.push('no jobs and no launches in this range')
  if (r.total.running)
    notes.push(
      `* includes ${r.total.running} running launch${r.total.running === 1 ? '' : 'es'}, counted up to now at price × elapsed (settled at release)`
    )
  const lost = lostTotal(r.total)
  if (lost)
    notes.push(
      `${lost} job${lost === 1 ? '' : 's'} lost ${lost === 1 ? 'its' : 'their'} machine during a step: ${lostCauses(r.total)
        .filter(([, n]) => n)
        .map(([c, n]) => `${LOSS_WORDS[c]} ${n}`)
        .join(', ')}`
    )
  const cut = r.total.lost.running
  if (cut) notes.push(`${cut} job${cut === 1 ? '' : 's'} lost the connection to a machine EC2 still ran (not counted under LOST)`)
  if (r.total.unpriced)
    notes.push(`${r.total.unpriced} launch${r.total.unpriced === 1 ? '' : 'es'} of an instance type without a price counted at 0 USD`)
  const header = [
    ...fields.map((f) => f.toUpperCase()),
    'JOBS',
    'LAUNCHES',
    'INSTANCE-H',
    'COST USD',
    'ACQUIRE P50',
    'ACQUIRE P95',
    'BOOT P50',
    'BOOT P95',
    'LOST'
  ]
  return head + table(header, rows) + notes.map((n) => `${n}\n`).join('')
}

/** A spreadsheet evaluates a cell starting with one of these as a formula (CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/

/**
 * One CSV field (RFC 4180): quoted when it holds a quote, comma, semicolon or line break; a text that
 * a spreadsheet would evaluate gets a leading '. The semicolon: where the list separator is `;`, a
 * spreadsheet splits an unquoted `x;=1+1` into a second cell that starts with `=`.
 */
export function csvField(v: string | number | null, text: boolean): string {
  if (v === null) return ''
  let s = String(v)
  if (text && FORMULA_START.test(s)) s = `'${s}`
  return /[",;\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export const CSV_METRICS = [
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
] as const

export function reportCsv(r: Report): string {
  const fields = GROUP_FIELDS[r.by]
  const line = (scope: string, key: string[], t: Totals): string => {
    const m = metrics(t)
    const flat: Record<(typeof CSV_METRICS)[number], number | null> = {
      ...m,
      acquireP50Seconds: m.acquireSeconds.p50,
      acquireP95Seconds: m.acquireSeconds.p95,
      bootP50Seconds: m.bootSeconds.p50,
      bootP95Seconds: m.bootSeconds.p95,
      lostSpot: t.lost.spot,
      lostInside: t.lost.inside,
      lostLifetime: t.lost.lifetime,
      lostApi: t.lost.api,
      lostOther: t.lost.other,
      lostRunning: t.lost.running,
      lostGone: t.lost.gone
    }
    return [scope, ...key, ...CSV_METRICS.map((c) => flat[c])].map((v, i) => csvField(v, i <= fields.length)).join(',')
  }
  const lines = [
    ['scope', ...fields, ...CSV_METRICS].join(','),
    ...r.rows.map((row) => line('group', row.key, row)),
    line(
      'total',
      fields.map(() => ''),
      r.total
    )
  ]
  return lines.map((l) => `${l}\r\n`).join('')
}
