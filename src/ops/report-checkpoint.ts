// `report --openmetrics` without a range counts all time. Its counters only grow, and what made
// them is final once a reservation is settled and a job has ended, so the sums up to a cutoff are
// kept in a private file and each run reads the ledger only from there: the history is read once,
// not on every scrape (a DynamoDB Scan of a table is billed for every item it ever held).
// The cutoff stays HORIZON behind now (a job's record no longer changes then: JOB_SETTLES_MS), and
// before the oldest open reservation (its settlement is still to come).
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { z } from 'zod'
import { inTimeRange, JOB_SETTLES_MS, LOSS_CAUSES, type JobRecord, type LedgerRecord, type LossCause } from '../fleet/ledger'
import { checkPrivateDir, ensurePrivateDir, writePrivateFile } from '../private-fs'
import { sha256Hex } from '../sha256'
import { HookError } from '../errors'
import { buildReport, compareKeys, emptyRow, type GroupBy, type Report } from './report-data'

export const HORIZON_MS = JOB_SETTLES_MS
export const CHECKPOINT_VERSION = 1

/** One group's settled sums up to the cutoff. */
export interface SettledRow {
  key: string[]
  jobs: number
  launches: number
  instanceSeconds: number
  costMicro: number
  unpriced: number
  acquire: { samples: number; sum: number }
  boot: { samples: number; sum: number }
  lost: Record<LossCause, number>
}

export interface Checkpoint {
  version: number
  /** What the sums belong to: the ledger, the grouping and the time zone of its days. */
  of: string
  cutoff: number
  rows: SettledRow[]
}

const count = z.number().int().nonnegative()
// Sums of what the ledger holds: whole numbers as the hook writes them, but a record another build
// wrote may hold a fraction, and a checkpoint must read back whatever its fold made.
const sum = z.number().finite().nonnegative()
const phase = z.object({ samples: count, sum }).strict()
const CheckpointSchema = z
  .object({
    version: z.literal(CHECKPOINT_VERSION),
    of: z.string(),
    cutoff: z.number().int(),
    rows: z.array(
      z
        .object({
          key: z.array(z.string()),
          jobs: count,
          launches: count,
          instanceSeconds: sum,
          costMicro: sum,
          unpriced: count,
          acquire: phase,
          boot: phase,
          lost: z.object(Object.fromEntries(LOSS_CAUSES.map((c) => [c, count])) as Record<LossCause, typeof count>).strict()
        })
        .strict()
    )
  })
  .strict()

/** What a checkpoint is of: sums made for another ledger, grouping or time zone are not these. */
export const checkpointOf = (ledger: object, by: GroupBy, timeZone: string): string => JSON.stringify({ ledger, by, timeZone })

export const checkpointFile = (folder: string, of: string): string => `${folder}/report/${sha256Hex(of).slice(0, 24)}.json`

/**
 * The checkpoint in `file`, or null when there is none. One that is there but cannot be used
 * (damaged, another's sums, not the user's own private file) fails the command: counting again
 * without it would make the counters fall where the ledger's older lines were trimmed, and the
 * sums it holds are nowhere else then.
 */
export function loadCheckpoint(file: string, of: string): Checkpoint | null {
  if (!checkPrivateDir(dirname(file))) return null
  const unusable = (why: string): never => {
    throw new HookError(
      `report: the checkpoint ${file} ${why}: it holds the all-time sums up to its cutoff, so nothing is printed; remove it to count from the whole ledger again (the counters fall if the ledger's older lines were trimmed), or put back a good copy`
    )
  }
  let fd: number
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    return unusable(`cannot be opened (${(e as NodeJS.ErrnoException).code ?? String(e)})`)
  }
  try {
    const st = fstatSync(fd)
    const me = process.geteuid?.() ?? 0
    if (!st.isFile()) return unusable('is not a file')
    if (st.uid !== me) return unusable(`is owned by uid ${st.uid}, not ${me}`)
    if (st.mode & 0o077) return unusable(`is open to other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, must be 0600)`)
    if (st.size > CHECKPOINT_MAX) return unusable(`is ${st.size} bytes, more than a checkpoint may be`)
    let cp: Checkpoint
    try {
      cp = CheckpointSchema.parse(JSON.parse(readFileSync(fd, 'utf8')))
    } catch {
      return unusable(`is not a checkpoint of version ${CHECKPOINT_VERSION} (damaged, or made by another version)`)
    }
    return cp.of === of ? cp : unusable('holds the sums of another ledger, grouping or time zone')
  } finally {
    closeSync(fd)
  }
}

/** Far more than the rows of any fleet's groups: a bigger file is not one of ours. */
const CHECKPOINT_MAX = 64 << 20

/** Keeps `cp`; throws, keeping nothing, when it would be too big to be read back (names without end: --by runner, workflow). */
export function saveCheckpoint(file: string, cp: Checkpoint, max = CHECKPOINT_MAX): void {
  const text = JSON.stringify(cp) + '\n'
  const size = Buffer.byteLength(text)
  if (size > max)
    throw new HookError(
      `the checkpoint of ${cp.rows.length} groups would be ${(size / 2 ** 20).toFixed(1)} MiB, over the ${(max / 2 ** 20).toFixed(1)} MiB one may be: group by fewer names (--by repository)`
    )
  // What could not be read back is not kept: the next run would fail on it.
  const check = CheckpointSchema.safeParse(cp)
  if (!check.success) throw new HookError(`the checkpoint's sums are not all counts (${check.error.issues[0].path.join('.')}): not kept`)
  ensurePrivateDir(dirname(file))
  writePrivateFile(file, text, { durable: true })
}

/** The next cutoff: HORIZON behind now, before every open reservation, never behind the last one. */
export function nextCutoff(records: LedgerRecord[], now: number, last: number | undefined): number {
  let cut = now - HORIZON_MS
  for (const r of records) if (r.settledAt === undefined) cut = Math.min(cut, r.reservedAt)
  return last === undefined ? cut : Math.max(last, cut)
}

const blank = (key: string[]): SettledRow => ({
  key,
  jobs: 0,
  launches: 0,
  instanceSeconds: 0,
  costMicro: 0,
  unpriced: 0,
  acquire: { samples: 0, sum: 0 },
  boot: { samples: 0, sum: 0 },
  lost: Object.fromEntries(LOSS_CAUSES.map((c) => [c, 0])) as Record<LossCause, number>
})

/** Adds a group's settled sums to `into` (a checkpoint's row, or a report's, whose phases keep their percentiles). */
function addSettled(into: SettledRow, s: SettledRow): void {
  into.jobs += s.jobs
  into.launches += s.launches
  into.instanceSeconds += s.instanceSeconds
  into.costMicro += s.costMicro
  into.unpriced += s.unpriced
  for (const p of ['acquire', 'boot'] as const) {
    into[p].samples += s[p].samples
    into[p].sum += s[p].sum
  }
  for (const c of LOSS_CAUSES) into.lost[c] += s.lost[c]
}

/**
 * `base` plus the settled reservations and the jobs of [from, cutoff) (all settled: see nextCutoff),
 * per group, counted as report-data counts them. A group with nothing to add (only launches that
 * never ran) gets no row.
 */
export function fold(
  base: SettledRow[],
  records: LedgerRecord[],
  jobs: JobRecord[],
  span: { from?: number; cutoff: number },
  group: { by: GroupBy; timeZone: string }
): SettledRow[] {
  const inSpan = (at: number): boolean => inTimeRange(at, { since: span.from, until: span.cutoff })
  const settled = records.filter((r) => inSpan(r.reservedAt))
  const open = settled.find((r) => r.settledAt === undefined)
  if (open) throw new Error(`report checkpoint: reservation ${open.id} is open before the cutoff`)
  const part = buildReport({ records: settled, jobs: jobs.filter((j) => inSpan(j.startedAt)), ...group, now: span.cutoff })
  const rows = new Map(base.map((r) => [JSON.stringify(r.key), structuredClone(r)]))
  for (const row of part.rows) {
    if (!row.jobs && !row.launches) continue
    const id = JSON.stringify(row.key)
    let into = rows.get(id)
    if (!into) rows.set(id, (into = blank(row.key)))
    addSettled(into, row)
  }
  return [...rows.values()]
}

/**
 * The report of what came after the cutoff with the settled sums before it added to its rows
 * (a group seen only before the cutoff gets a row of its own). The phases' percentiles stay the
 * report's (recent jobs); their sums and counts become all-time.
 */
export function withSettled(report: Report, settled: SettledRow[]): Report {
  const rows = new Map(
    report.rows.map((r) => [JSON.stringify(r.key), { ...r, acquire: { ...r.acquire }, boot: { ...r.boot }, lost: { ...r.lost } }])
  )
  for (const s of settled) {
    const id = JSON.stringify(s.key)
    let row = rows.get(id)
    if (!row) rows.set(id, (row = emptyRow(s.key)))
    addSettled(row, s)
  }
  return { ...report, rows: [...rows.values()].sort((a, b) => compareKeys(a.key, b.key)) }
}
