// The ledger in one private file of this runner host, read and rewritten whole under an exclusive
// lock: the caps and the budget hold exactly for the launches of this host only. The file is
// replaced by a rename of a complete temp file, so a crash leaves the old state or the new one.
import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import type { FleetConfig } from '../config'
import { HookError } from '../errors'
import { ensurePrivateDir, writePrivateFile } from '../private-fs'
import { withFileLock } from './file-lock'
import type { JobRecord, JobUpdate, Ledger, LedgerClock, LedgerRecord, ReserveRequest, ReserveResult, SettleOptions } from './ledger'
import { exceeded, priceRequest, refusalLine, type Usage } from './limits'
import { settlement } from './money'
import { checkJobUpdate, mergeJob } from './job-record'

interface State {
  version: 1
  records: Record<string, LedgerRecord>
  jobs?: Record<string, JobRecord>
}

const HINT = 'set fleet.ledger.path to a folder only the runner user can open'

/** What `records` count now against `req` on budget day `day`. */
export function usageOf(records: Iterable<LedgerRecord>, repository: string, day: string): Usage {
  const use: Usage = { instances: 0, vcpus: 0, repositoryInstances: 0, dayMicro: 0 }
  for (const r of records) {
    if (r.settledAt === undefined) {
      use.instances++
      use.vcpus += r.vcpus
      if (r.repository === repository) use.repositoryInstances++
    }
    if (r.day === day) use.dayMicro += r.actualMicro ?? r.reservedMicro
  }
  return use
}

export class LocalLedger implements Ledger {
  private readonly file: string
  private readonly lock: string

  constructor(
    private readonly fleet: FleetConfig,
    dir: string,
    private readonly clock: LedgerClock
  ) {
    ensurePrivateDir(dir, HINT)
    this.file = `${dir}/ledger.json`
    this.lock = `${dir}/ledger.lock`
  }

  private load(): State {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, records: {} }
      throw new HookError(`fleet ledger: cannot read ${this.file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    try {
      const s = JSON.parse(text) as State
      if (s.version !== 1 || typeof s.records !== 'object' || s.records === null) throw new Error('unknown format')
      return s
    } catch (e) {
      throw new HookError(`fleet ledger: ${this.file} is not a ledger (${(e as Error).message})`)
    }
  }

  private update<T>(fn: (s: State) => { result: T; changed: boolean }): Promise<T> {
    return withFileLock(this.lock, () => {
      const s = this.load()
      const { result, changed } = fn(s)
      if (changed) writePrivateFile(this.file, JSON.stringify(s))
      return result
    })
  }

  private static get(s: State, id: string): LedgerRecord {
    const r = Object.prototype.hasOwnProperty.call(s.records, id) ? s.records[id] : undefined
    if (!r) throw new HookError(`fleet ledger: no reservation ${id}`)
    return r
  }

  async reserve(req: ReserveRequest, now = this.clock.now()): Promise<ReserveResult> {
    const priced = priceRequest(this.fleet, req, now)
    if ('line' in priced) return { ok: false, line: priced.line }
    return await this.update<ReserveResult>((s) => {
      const use = usageOf(Object.values(s.records), req.repository, priced.day)
      const limit = exceeded(this.fleet, req, priced.reservedMicro, use)
      if (limit) return { result: { ok: false, line: refusalLine(this.fleet, limit, req, priced.reservedMicro, use) }, changed: false }
      const id = randomUUID()
      s.records[id] = { ...req, id, reservedAt: now, ...priced, timings: {} }
      return { result: { ok: true, id }, changed: true }
    })
  }

  attach(id: string, instanceId: string, at = this.clock.now()): Promise<void> {
    return this.update((s) => {
      const r = LocalLedger.get(s, id)
      if (r.instanceId === instanceId) return { result: undefined, changed: false }
      Object.assign(r, { instanceId, attachedAt: at })
      return { result: undefined, changed: true }
    })
  }

  settle(id: string, opts: SettleOptions): Promise<LedgerRecord> {
    return this.update((s) => {
      const r = LocalLedger.get(s, id)
      if (r.settledAt !== undefined) return { result: r, changed: false }
      const { seconds, actual } = settlement(r, opts)
      Object.assign(r, { settledAt: this.clock.now(), endedAt: opts.endedAt, billedSeconds: seconds, actualMicro: actual })
      return { result: r, changed: true }
    })
  }

  recordTimings(id: string, timings: Record<string, number>): Promise<void> {
    const bad = Object.entries(timings).find(([, ms]) => !Number.isFinite(ms))
    if (bad) return Promise.reject(new HookError(`fleet ledger: timing ${bad[0]} is not a number of milliseconds`))
    return this.update((s) => {
      Object.assign(LocalLedger.get(s, id).timings, timings)
      return { result: undefined, changed: true }
    })
  }

  beat(id: string, at = this.clock.now()): Promise<void> {
    return this.update((s) => {
      const r = LocalLedger.get(s, id)
      if (r.settledAt !== undefined || (r.heartbeatAt ?? 0) >= at) return { result: undefined, changed: false }
      r.heartbeatAt = at
      return { result: undefined, changed: true }
    })
  }

  async recordJob(u: JobUpdate): Promise<void> {
    checkJobUpdate(u)
    return await this.update((s) => {
      const jobs = (s.jobs ??= {})
      const old = Object.prototype.hasOwnProperty.call(jobs, u.jobId) ? jobs[u.jobId] : undefined
      jobs[u.jobId] = mergeJob(old, u, this.clock.now())
      return { result: undefined, changed: true }
    })
  }

  jobs(range: { since?: number; until?: number } = {}): Promise<JobRecord[]> {
    return this.update((s) => ({
      result: Object.values(s.jobs ?? {})
        .filter((j) => inRange({ reservedAt: j.startedAt }, range))
        .sort((a, b) => a.startedAt - b.startedAt || a.jobId.localeCompare(b.jobId)),
      changed: false
    }))
  }

  unsettled(): Promise<LedgerRecord[]> {
    return this.update((s) => ({ result: sorted(Object.values(s.records).filter((r) => r.settledAt === undefined)), changed: false }))
  }

  records(range: { since?: number; until?: number } = {}): Promise<LedgerRecord[]> {
    return this.update((s) => ({ result: sorted(Object.values(s.records).filter((r) => inRange(r, range))), changed: false }))
  }

  close(): void {}
}

export const inRange = (r: Pick<LedgerRecord, 'reservedAt'>, { since, until }: { since?: number; until?: number }): boolean =>
  (since === undefined || r.reservedAt >= since) && (until === undefined || r.reservedAt < until)

export const sorted = (rs: LedgerRecord[]): LedgerRecord[] => rs.sort((a, b) => a.reservedAt - b.reservedAt || a.id.localeCompare(b.id))

/** The local ledger's folder: the configured path, else `ledger` under the hook's local root. */
export const localLedgerDir = (fleet: FleetConfig, localRoot: string): string =>
  (fleet.ledger.kind === 'local' && fleet.ledger.path) || `${localRoot}/ledger`

export const newLocalLedger = (fleet: FleetConfig, localRoot: string, clock: LedgerClock): LocalLedger =>
  new LocalLedger(fleet, localLedgerDir(fleet, localRoot), clock)
