// The ledger in private files of this runner host, changed under an exclusive lock: the caps and
// the budget hold exactly for the launches of this host only.
// - ledger.json: the open reservations and each budget day's total, rewritten whole (a rename of a
//   complete temp file, so a crash leaves the old state or the new one). It stays as small as the
//   number of instances running, so a long-lived runner host pays the same per job on day 400 as on day 1.
// - settled.jsonl and jobs.jsonl: settled reservations and job updates, appended one line each
//   (the last line for an id wins; a line torn by a crash is skipped when read), read a chunk at a
//   time (jsonl.ts).
// A settlement is appended before it leaves ledger.json: a crash in between leaves the reservation
// open (counted, the day charged its reserved cost) and a later settle finishes it.
import { closeSync, fstatSync, readFileSync, readSync, writeSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import type { FleetConfig } from '../config'
import { errnoOf, HookError } from '../errors'
import { ensurePrivateDir, openPrivateAppend, syncFd, writePrivateFile } from '../private-fs'
import { withFileLock } from '../file-lock'
import {
  NotAttachable,
  BEAT_STEP_BACK_MS,
  byReservation,
  inTimeRange,
  JOB_SETTLES_MS,
  type JobRecord,
  type JobUpdate,
  type Ledger,
  LedgerClock,
  LedgerRecord,
  ReserveRequest,
  ReserveResult,
  SettleOptions
} from './ledger'
import { exceeded, priceRequest, refusalLine, type Usage } from './limits'
import { attachTime, settlement } from './money'
import { checkJobUpdate, mergeJob } from './job-record'
import { checkTimings } from './check-timings'
import { forEachLine, lastLine, numberAfter } from './jsonl'

interface State {
  version: 2
  /** Unsettled reservations by id. */
  open: Record<string, LedgerRecord>
  /** Each budget day's reserved-or-settled cost, micro-dollars. */
  days: Record<string, number>
}

/** The first format: every reservation and job ever made, in ledger.json. */
interface V1State {
  version: 1
  records: Record<string, LedgerRecord>
  jobs?: Record<string, JobRecord>
}

/** One line of jobs.jsonl: an update and when it was made (a job first seen starts then). */
interface JobLine {
  at: number
  update: JobUpdate
}

const HINT = 'set fleet.ledger.path to a folder only the runner user can open'
/** Whether parsed ledger.json is a state of the current format. */
const isState = (v: State | V1State | null): v is State =>
  v?.version === 2 && typeof v.open === 'object' && v.open !== null && typeof v.days === 'object' && v.days !== null
const own = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)
const isRecord = (v: unknown): v is LedgerRecord => typeof (v as LedgerRecord | null)?.id === 'string'

/** What the open reservations count against `repository`, with the day's total. */
export function usageOf(open: Iterable<LedgerRecord>, repository: string, dayMicro: number): Usage {
  const use: Usage = { instances: 0, vcpus: 0, repositoryInstances: 0, dayMicro }
  for (const r of open) {
    use.instances++
    use.vcpus += r.vcpus
    if (r.repository === repository) use.repositoryInstances++
  }
  return use
}

export class LocalLedger implements Ledger {
  private readonly file: string
  private readonly lock: string
  private readonly settledFile: string
  private readonly jobsFile: string

  constructor(
    private readonly fleet: FleetConfig,
    dir: string,
    private readonly clock: LedgerClock
  ) {
    ensurePrivateDir(dir, HINT)
    this.file = `${dir}/ledger.json`
    this.lock = `${dir}/ledger.lock`
    this.settledFile = `${dir}/settled.jsonl`
    this.jobsFile = `${dir}/jobs.jsonl`
  }

  private read(path: string): string | null {
    try {
      return readFileSync(path, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw new HookError(`fleet ledger: cannot read ${path} (${errnoOf(e)})`)
    }
  }

  /** The state, and whether it was converted from the first format (then the caller writes it back). */
  private load(): { s: State; migrated: boolean } {
    const text = this.read(this.file)
    if (text === null) return { s: { version: 2, open: {}, days: {} }, migrated: false }
    let s: State | V1State
    try {
      s = JSON.parse(text) as State | V1State
      if (s?.version === 1 && typeof s.records === 'object' && s.records !== null) return { s: this.migrate(s), migrated: true }
      if (!isState(s)) throw new Error('unknown format')
      return { s, migrated: false }
    } catch (e) {
      throw new HookError(`fleet ledger: ${this.file} is not a ledger (${(e as Error).message})`)
    }
  }

  /** The first format held every record in ledger.json: settled ones and jobs move to the logs (repeating this after a crash only repeats lines). */
  private migrate(old: V1State): State {
    const s: State = { version: 2, open: {}, days: {} }
    for (const r of Object.values(old.records)) {
      s.days[r.day] = (s.days[r.day] ?? 0) + (r.actualMicro ?? r.reservedMicro)
      if (r.settledAt === undefined) s.open[r.id] = r
      else this.append(this.settledFile, r)
    }
    for (const j of Object.values(old.jobs ?? {})) this.append(this.jobsFile, { at: j.startedAt, update: j } satisfies JobLine)
    return s
  }

  private append(path: string, value: object): void {
    const fd = openPrivateAppend(path, true)
    try {
      // After a line torn by a crash, start a new one: the torn one stays unreadable alone.
      const size = fstatSync(fd).size
      const last = Buffer.alloc(1)
      const torn = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a
      const line = Buffer.from(`${torn ? '\n' : ''}${JSON.stringify(value)}\n`)
      for (let off = 0; off < line.length;) off += writeSync(fd, line, off)
      // On the disk before ledger.json, written next, drops the reservation from the open ones.
      syncFd(fd)
    } finally {
      closeSync(fd)
    }
  }

  /** Settled reservations by id (the last line for an id wins). */
  /** The settled reservations (in `range`: every line of one holds its reservation time, which never changes). */
  private settledById(range: { since?: number; until?: number } = {}): Map<string, LedgerRecord> {
    const m = new Map<string, LedgerRecord>()
    const ranged = range.since !== undefined || range.until !== undefined
    forEachLine(
      this.settledFile,
      (r) => {
        if (isRecord(r)) m.set(r.id, r)
      },
      ranged
        ? (line) => {
            const at = numberAfter(line, RESERVED_AT)
            return at === null || inTimeRange(at, range)
          }
        : undefined
    )
    return m
  }

  /**
   * What `fn` reads, without the lock: ledger.json is only ever replaced whole (a rename) and the
   * logs only appended to, so a reader sees each as it was at some moment. Read under the lock, a
   * report of a year of logs (tens of seconds) made every prepare_job of the host wait for it and
   * fail after the lock's 30 s. Read first, the state is no later than the logs read after it: a
   * settlement is appended before it leaves ledger.json, so none is missed between the two. A
   * first-format ledger is converted under the lock first (its conversion writes).
   */
  private view<T>(fn: (s: State) => T): Promise<T> {
    const text = this.read(this.file)
    let s: State | null = text === null ? { version: 2, open: {}, days: {} } : null
    try {
      const parsed = text === null ? null : (JSON.parse(text) as State | V1State)
      if (isState(parsed)) s = parsed
    } catch {
      // not a ledger of this format: update() converts it, or says what is wrong
    }
    return s ? Promise.resolve().then(() => fn(s)) : this.update((u) => ({ result: fn(u), changed: false }))
  }

  private update<T>(fn: (s: State) => { result: T; changed: boolean }): Promise<T> {
    // Held for milliseconds: one from another pid namespace (a runner in a container and reap on the
    // host sharing the folder) that is this old was a holder's that died (a container killed).
    return withFileLock(
      this.lock,
      () => {
        const { s, migrated } = this.load()
        const { result, changed } = fn(s)
        if (changed || migrated) writePrivateFile(this.file, JSON.stringify(s), { durable: true })
        return result
      },
      undefined,
      { foreignStaleMs: 10 * 60_000 }
    )
  }

  private settledOne(id: string): LedgerRecord {
    const r = lastLine(this.settledFile, `"id":${JSON.stringify(id)}`, (v): v is LedgerRecord => isRecord(v) && v.id === id)
    if (!r) throw new HookError(`fleet ledger: no reservation ${id}`)
    return r
  }

  async reserve(req: ReserveRequest, now = this.clock.now()): Promise<ReserveResult> {
    const priced = priceRequest(this.fleet, req, now)
    if ('line' in priced) return { ok: false, line: priced.line }
    return await this.update<ReserveResult>((s) => {
      const use = usageOf(Object.values(s.open), req.repository, s.days[priced.day] ?? 0)
      const limit = exceeded(this.fleet, req, priced.reservedMicro, use)
      if (limit) return { result: { ok: false, line: refusalLine(this.fleet, limit, req, priced.reservedMicro, use) }, changed: false }
      const id = randomUUID()
      s.open[id] = { ...req, id, reservedAt: now, ...priced, timings: {} }
      s.days[priced.day] = (s.days[priced.day] ?? 0) + priced.reservedMicro
      return { result: { ok: true, id }, changed: true }
    })
  }

  async attach(id: string, instanceId: string, at = this.clock.now()): Promise<void> {
    attachTime(id, at)
    await this.update((s) => {
      if (!own(s.open, id)) {
        if (this.settledOne(id).instanceId !== instanceId) throw new NotAttachable(id)
        return { result: undefined, changed: false }
      }
      const r = s.open[id]
      if (r.instanceId === instanceId) return { result: undefined, changed: false }
      Object.assign(r, { instanceId, attachedAt: at })
      return { result: undefined, changed: true }
    })
  }

  settle(id: string, opts: SettleOptions): Promise<LedgerRecord> {
    return this.update((s) => {
      if (!own(s.open, id)) return { result: this.settledOne(id), changed: false }
      const r = s.open[id]
      const { seconds, actual } = settlement(r, opts)
      const done: LedgerRecord = { ...r, settledAt: this.clock.now(), endedAt: opts.endedAt, billedSeconds: seconds, actualMicro: actual }
      this.append(this.settledFile, done)
      delete s.open[id]
      s.days[r.day] = (s.days[r.day] ?? 0) + actual - r.reservedMicro
      return { result: done, changed: true }
    })
  }

  async recordTimings(id: string, timings: Record<string, number>): Promise<void> {
    checkTimings(timings)
    await this.update((s) => {
      if (own(s.open, id)) {
        Object.assign(s.open[id].timings, timings)
        return { result: undefined, changed: true }
      }
      const r = this.settledOne(id)
      this.append(this.settledFile, { ...r, timings: { ...r.timings, ...timings } })
      return { result: undefined, changed: false }
    })
  }

  beat(id: string, at = this.clock.now()): Promise<void> {
    return this.update((s) => {
      if (!own(s.open, id)) {
        this.settledOne(id)
        return { result: undefined, changed: false }
      }
      const r = s.open[id]
      const stored = r.heartbeatAt ?? 0
      if (stored >= at && stored <= at + BEAT_STEP_BACK_MS) return { result: undefined, changed: false }
      r.heartbeatAt = at
      return { result: undefined, changed: true }
    })
  }

  async recordJob(u: JobUpdate): Promise<void> {
    checkJobUpdate(u)
    const line: JobLine = { at: this.clock.now(), update: u }
    // Through update(): a ledger of the first format is converted before anything is appended.
    await this.update(() => {
      this.append(this.jobsFile, line)
      return { result: undefined, changed: false }
    })
  }

  jobs(range: { since?: number; until?: number } = {}): Promise<JobRecord[]> {
    return this.view(() => {
      const jobs = new Map<string, JobRecord>()
      // Jobs that start outside the range, by id only: a year of jobs merged whole took gigabytes
      // for a report of the last days. A job starts at its first line (the hook writes its
      // startedAt only there, with prepare_job's facts).
      const outside = new Set<string>()
      // A job's lines are written from its start to its end, days later at most: lines written
      // JOB_SETTLES_MS before the range are passed over unparsed (and their ids never kept).
      const from = range.since === undefined ? undefined : range.since - JOB_SETTLES_MS
      const keep =
        from === undefined
          ? undefined
          : (line: Buffer): boolean => {
              const at = numberAfter(line, LINE_AT, 0)
              return at === null || at >= from
            }
      forEachLine(
        this.jobsFile,
        (v) => {
          const l = v as Partial<JobLine> | null
          if (typeof l?.update?.jobId !== 'string' || typeof l.at !== 'number') return
          const id = l.update.jobId
          const known = jobs.get(id)
          if (!known) {
            if (outside.has(id)) return
            const start = typeof l.update.startedAt === 'number' ? l.update.startedAt : l.at
            if (!inTimeRange(start, range)) return void outside.add(id)
          }
          jobs.set(id, mergeJob(known, l.update, l.at))
        },
        keep
      )
      return [...jobs.values()]
        .filter((j) => inTimeRange(j.startedAt, range))
        .sort((a, b) => a.startedAt - b.startedAt || a.jobId.localeCompare(b.jobId))
    })
  }

  unsettled(): Promise<LedgerRecord[]> {
    return this.view((s) => byReservation(Object.values(s.open)))
  }

  records(range: { since?: number; until?: number } = {}): Promise<LedgerRecord[]> {
    return this.view((s) => {
      const all = this.settledById(range)
      // Still open: its settlement line (if any) is from a settle that never finished (see the header).
      for (const r of Object.values(s.open)) all.set(r.id, r)
      return byReservation([...all.values()].filter((r) => inTimeRange(r.reservedAt, range)))
    })
  }

  close(): void {}
}

const RESERVED_AT = Buffer.from('"reservedAt":')
const LINE_AT = Buffer.from('{"at":')

/** The local ledger's folder: the configured path, else `ledger` under the hook's local root. */
export const localLedgerDir = (fleet: FleetConfig, localRoot: string): string =>
  (fleet.ledger.kind === 'local' && fleet.ledger.path) || `${localRoot}/ledger`

export const newLocalLedger = (fleet: FleetConfig, localRoot: string, clock: LedgerClock): LocalLedger =>
  new LocalLedger(fleet, localLedgerDir(fleet, localRoot), clock)
