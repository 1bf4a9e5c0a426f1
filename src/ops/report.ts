// `report`: what the fleet did in a time range, from the ledger only (no cloud call): jobs,
// launches, instance-hours, cost and the acquire and boot times, per repository, workflow,
// runner or budget day.
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig, systemConfigIo, type Config } from '../config'
import { ConfigError, formatError } from '../errors'
import { byReservation, inTimeRange, type JobRecord, type Ledger, type LedgerRecord } from '../fleet/ledger'
import { localLedgerDir } from '../fleet/local-ledger'
import { ledgerClockFrom } from '../fleet/ledger-clock'
import { openLedger } from '../fleet/open-ledger'
import { hookLocalRoot } from '../paths'
import { ensurePrivateDir } from '../private-fs'
import { EX_USAGE, type OpArgs, type OpCommand, type OpIo } from './command'
import { opFile } from './config-file'
import { EX_CONFIG } from './check-config'
import { buildReport, GROUP_BYS, type GroupBy, type Report } from './report-data'
import {
  checkpointFile,
  checkpointOf,
  CHECKPOINT_VERSION,
  type Checkpoint,
  fold,
  HORIZON_MS,
  loadCheckpoint,
  nextCutoff,
  saveCheckpoint,
  withSettled
} from './report-checkpoint'
import { reportCsv, reportJson, reportTable } from './report-format'
import { reportOpenMetrics } from './report-openmetrics'
import { parseTime, TIME_FORMS } from './report-time'

const DEFAULT_DAYS = 7

export const reportCommand: OpCommand = {
  name: 'report',
  summary: 'jobs, launches, instance-hours, cost and acquire/boot times from the fleet ledger, per group',
  maxPositional: 1,
  options: { since: 'value', until: 'value', by: 'value', csv: 'flag', openmetrics: 'flag' },
  help: `usage: remote-hooks report [FILE | --config FILE] [--since T] [--until T]
                           [--by repository|workflow|runner|day] [--json | --csv | --openmetrics]

Reads the fleet ledger the configuration FILE (default: $REMOTE_HOOKS_CONFIG) names (fleet.ledger)
and prints, per group and in total: jobs, launches, instance-hours, cost in USD, and the p50/p95
(nearest rank) of prepare_job's acquire and boot times. Nothing but the ledger is read, and it is
left as it was.

  --since T, --until T  the range [since, until): jobs by their start, launches by their reservation.
                        T is ${TIME_FORMS}; a date or time without a zone is in the budget's time zone.
                        Default: the last ${DEFAULT_DAYS} days up to now (--openmetrics: all time; the sums of
                        what was final 8 days ago are kept in the private folder, so each run reads
                        the ledger only from there; quantiles are over the last 8 days' jobs).
  --by                  repository (default), workflow (with its repository), runner, or day
                        (the budget day: fleet.budget.timezone, else UTC)

A launch counts once its instance is reserved; one settled as never launched is not counted.
Settled launches count their billed seconds and cost; launches still running count the time since
they started at the configured price, marked * in the table ("running" in --json and --csv).
LOST: jobs whose machine went away under a step, by the cause EC2 gave (Spot interruption, shut
down from inside, lifetime limit, ended through the API, other, gone); a lost connection to a
machine EC2 still ran is counted apart ("running").

Output: a table; --json {"by", "timeZone", "since", "until", "now", "groups": [{<group fields>,
  "jobs", "launches", "runningLaunches", "instanceSeconds", "instanceHours", "runningInstanceSeconds",
  "costUsd", "runningCostUsd", "unpricedLaunches", "acquireSeconds": {"samples", "p50", "p95"},
  "bootSeconds": {...}, "lostMachines": {"spot", "inside", "lifetime", "api", "other", "running",
  "gone"}}], "total": {...}}; --csv the same as RFC 4180 rows (scope group|total);
  --openmetrics OpenMetrics text for a node-exporter textfile collector (docs/operations.md).

Exit status: 0 done, 64 usage error (a bad --since, --until or --by; a range with --openmetrics), 70 the ledger could not be
read (the error on stderr), 78 bad configuration.
`,
  run: (args, io) => runReport(args, io)
}

export interface ReportDeps {
  now?: number
  localRoot?: string
  open?: (config: Config) => Promise<Ledger>
}

const usage = (io: OpIo, line: string): number => (io.stderr.write(`report: ${line}\n`), EX_USAGE)

export async function runReport(args: OpArgs, io: OpIo, deps: ReportDeps = {}): Promise<number> {
  const o = args.options
  const forms = (['json', 'csv', 'openmetrics'] as const).filter((f) => (f === 'json' ? args.json : o[f]))
  if (forms.length > 1) return usage(io, `give one output form, not ${forms.map((f) => `--${f}`).join(' and ')}`)
  const by = (o.by ?? 'repository') as GroupBy
  if (!GROUP_BYS.includes(by)) return usage(io, `--by must be one of ${GROUP_BYS.join(', ')} (got ${JSON.stringify(o.by)})`)

  const file = args.file ?? io.env.REMOTE_HOOKS_CONFIG
  let config: Config
  try {
    config = loadConfig({ REMOTE_HOOKS_CONFIG: opFile(file) }, systemConfigIo)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    for (const issue of e.issues) io.stderr.write(`report: invalid configuration: ${issue}\n`)
    return EX_CONFIG
  }

  const now = deps.now ?? ledgerClockFrom(io.env).now()
  const timeZone = config.fleet.budget?.timezone ?? 'UTC'
  const range: { since?: number; until?: number } = {}
  for (const flag of ['since', 'until'] as const) {
    const text = o[flag]
    if (text === undefined) continue
    const at = parseTime(String(text), now, timeZone)
    if (at === null) return usage(io, `--${flag} ${JSON.stringify(text)} is not a time: give ${TIME_FORMS}`)
    range[flag] = at
  }
  // Counters over a range would go down as it slides, which Prometheus takes for a reset.
  if (o.openmetrics && (o.since !== undefined || o.until !== undefined))
    return usage(
      io,
      '--openmetrics reports all time (its counters must never go down, and over a range they would): give no --since or --until; increase() in PromQL gives a range, --json or --csv a table of one'
    )
  if (o.since === undefined && !o.openmetrics) range.since = now - DEFAULT_DAYS * 86_400_000
  if (range.since !== undefined && range.until !== undefined && range.since >= range.until)
    return usage(io, `--since (${new Date(range.since).toISOString()}) must be before --until (${new Date(range.until).toISOString()})`)

  const report = o.openmetrics
    ? await allTime(config, by, timeZone, now, deps, io)
    : buildReport({ ...(await readLedger(config, range, now, deps, io.stderr)), by, timeZone, now, ...range })
  if (report === null) return 70
  io.stdout.write(
    args.json ? reportJson(report) : o.csv ? reportCsv(report) : o.openmetrics ? reportOpenMetrics(report) : reportTable(report)
  )
  return 0
}

/**
 * All time, for --openmetrics: the settled sums up to the checkpoint's cutoff, and the ledger read
 * from there on (report-checkpoint.ts). The phases' percentiles are over the jobs of the last
 * HORIZON, so the text is the same whether the history was read now or before.
 */
/** What a local ledger that ever held anything has at least one of (fleet/local-ledger.ts). */
const LEDGER_FILES = ['ledger.json', 'settled.jsonl', 'jobs.jsonl']

async function allTime(config: Config, by: GroupBy, timeZone: string, now: number, deps: ReportDeps, io: OpIo): Promise<Report | null> {
  const localRoot = deps.localRoot ?? hookLocalRoot()
  const l = config.fleet.ledger
  const of = checkpointOf(
    l.kind === 'local' ? { local: localLedgerDir(config.fleet, localRoot) } : { dynamodb: l.table, region: l.region, endpoint: l.endpoint },
    by,
    timeZone
  )
  // The private folder is checked as the hook checks it: a failure is the command's (exit 70).
  ensurePrivateDir(localRoot)
  // A local ledger's checkpoint lives in the ledger's folder, as durable as the ledger (the hook's
  // local folder is under $TMPDIR, which a reboot may clear): an operator who trims the ledger's
  // logs would see the counters fall once the sums of what was trimmed were lost. A DynamoDB
  // ledger is never trimmed by the hook: its checkpoint stays local, and losing it costs a Scan.
  const dir = localLedgerDir(config.fleet, localRoot)
  const legacy = checkpointFile(localRoot, of)
  const file = l.kind === 'local' ? checkpointFile(dir, of) : legacy
  // A local ledger that is not there or holds none of its files (a disk not mounted yet, a folder
  // made anew) holds nothing to settle: no checkpoint, which would move the cutoff past all that is
  // missing, for good. (One not there holds no checkpoint either: loadCheckpoint finds no folder.)
  const bare = l.kind === 'local' && !deps.open && !LEDGER_FILES.some((f) => existsSync(join(dir, f)))
  // A DynamoDB ledger is never trimmed by the hook: one that cannot be used only costs a recount.
  const load = (f: string): Checkpoint | null => {
    try {
      return loadCheckpoint(f, of)
    } catch (e) {
      if (l.kind === 'local') throw e
      io.stderr.write(
        `${formatError(e).replace(/: it holds the all-time sums .*$/, ': counted again from the whole ledger (the hook never trims a DynamoDB ledger)')}\n`
      )
      return null
    }
  }
  // Until 2026-12-08 a local ledger's checkpoint was kept under the local folder: read from there
  // once, it moves to the ledger's folder with the next save.
  const here = load(file)
  const moving = !here && file !== legacy ? load(legacy) : null
  const kept = here ?? moving
  // A cutoff after now: the clock was set back after a run with it ahead. Sums up to it would leave
  // out what comes before it; a recount would replace them, and a trimmed local ledger's counters
  // would fall for good: nothing is printed until the clock is past it.
  if (kept && kept.cutoff > now && l.kind === 'local') {
    io.stderr.write(
      `report: the checkpoint ${here ? file : legacy} holds sums up to ${new Date(kept.cutoff).toISOString()}, after this host's clock (${new Date(now).toISOString()}): nothing is printed (was the clock set back?); remove it to count from the whole ledger again (the counters fall if the ledger's older lines were trimmed)\n`
    )
    return null
  }
  const cp = kept && kept.cutoff <= now ? kept : null
  const from = cp?.cutoff
  // With a checkpoint kept, a local ledger that holds none of its files would print the
  // checkpoint's sums alone: the counters would fall, which Prometheus takes for a reset.
  if (cp && bare) {
    io.stderr.write(
      `report: the fleet ledger ${dir} holds none of its files, while this report's checkpoint holds its sums up to ${new Date(cp.cutoff).toISOString()}: its counters would fall, so nothing is printed (is the ledger's disk mounted?)\n`
    )
    return null
  }
  const { records, jobs } = await readLedger(config, from === undefined ? {} : { since: from }, now, deps, io.stderr)
  const cutoff = nextCutoff(records, now, from)
  const settled = fold(cp?.rows ?? [], records, jobs, { from, cutoff }, { by, timeZone })
  if ((cutoff !== from || moving) && !bare)
    try {
      saveCheckpoint(file, { version: CHECKPOINT_VERSION, of, cutoff, rows: settled })
      if (moving)
        try {
          rmSync(legacy, { force: true })
        } catch (e) {
          io.stderr.write(`report: could not remove the checkpoint ${legacy}, now kept as ${file}: ${formatError(e)}\n`)
        }
    } catch (e) {
      io.stderr.write(
        `report: could not keep ${file} (the next run reads the ledger from the last checkpoint kept, or all of it): ${formatError(e)}\n`
      )
    }
  const after = buildReport({
    records: records.filter((r) => r.reservedAt >= cutoff),
    jobs: jobs.filter((j) => j.startedAt >= cutoff),
    by,
    timeZone,
    now
  })
  const recent = new Map(
    buildReport({ records: [], jobs: jobs.filter((j) => j.startedAt >= now - HORIZON_MS), by, timeZone, now }).rows.map((r) => [
      JSON.stringify(r.key),
      r
    ])
  )
  const report = withSettled(after, settled)
  for (const row of report.rows) {
    const r = recent.get(JSON.stringify(row.key))
    for (const p of ['acquire', 'boot'] as const) {
      row[p].p50 = r?.[p].p50 ?? null
      row[p].p95 = r?.[p].p95 ?? null
    }
  }
  return report
}

/**
 * The records of a range, with the open reservations of that range a ranged read missed: one an
 * earlier version wrote after the table was indexed has no time attributes, but it is in the open
 * index (unsettled()). Still running, it counts now, and it holds the --openmetrics checkpoint's
 * cutoff back (else the cutoff would pass it, and its cost would be left out for good).
 */
export function withOpen(records: LedgerRecord[], open: LedgerRecord[], range: { since?: number; until?: number }): LedgerRecord[] {
  const have = new Set(records.map((r) => r.id))
  const missed = open.filter((r) => !have.has(r.id) && inTimeRange(r.reservedAt, range))
  return missed.length ? byReservation([...records, ...missed]) : records
}

async function readLedger(
  config: Config,
  range: { since?: number; until?: number },
  now: number,
  deps: ReportDeps,
  stderr: OpIo['stderr']
): Promise<{ records: LedgerRecord[]; jobs: JobRecord[] }> {
  const localRoot = deps.localRoot ?? hookLocalRoot()
  // A local ledger not made yet holds nothing; opening it would create its folder.
  if (!deps.open && config.fleet.ledger.kind === 'local' && !existsSync(localLedgerDir(config.fleet, localRoot)))
    return { records: [], jobs: [] }
  const ledger = await (deps.open ?? ((c) => openLedger(c.fleet, { localRoot, clock: { now: () => now } })))(config)
  try {
    const read = { records: withOpen(await ledger.records(range), await ledger.unsettled(), range), jobs: await ledger.jobs(range) }
    const note = ledger.readNote?.()
    if (note) stderr.write(`report: ${note}\n`)
    return read
  } finally {
    ledger.close()
  }
}
