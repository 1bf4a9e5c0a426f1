// The fleet ledger as one command of a job uses it: opened on first use only (a step that launches
// nothing never pays for it), with the job's facts filled in. A ledger that cannot be opened or
// written before a launch fails the job naming fleet.ledger: the caps could not be checked.
import { hostname } from 'node:os'
import type { FleetConfig } from '../config'
import { formatError, HookError } from '../errors'
import { FleetRefused, fleetGate, type FleetGate, type JobFacts } from './gate'
import { NotAttachable, systemLedgerClock, type Ledger, type LedgerClock } from './ledger'
import { openLedger } from './open-ledger'
import { BEAT_MS } from './beat-period'
import { nameField } from './job-record'

export interface JobFleetContext {
  config: { fleet: FleetConfig }
  runner: { runnerName: string; github: { repository?: string; workflow?: string; runId?: string; job?: string } }
  localRoot: string
  ledgerClock?: LedgerClock
}

export class JobFleet {
  private opened: Promise<Ledger> | null = null
  /** Reservations this command made and has not settled: what its heartbeats are for. */
  private readonly reserved = new Set<string>()
  private beating: NodeJS.Timeout | null = null
  readonly clock: LedgerClock
  readonly facts: JobFacts
  /** What a provider uses: reserve, attach, settle, beat. */
  readonly gate: FleetGate

  constructor(
    private readonly ctx: JobFleetContext,
    jobId: string
  ) {
    this.clock = ctx.ledgerClock ?? systemLedgerClock
    const g = ctx.runner.github
    this.facts = {
      repository: nameField(g.repository),
      workflow: nameField(g.workflow),
      runId: nameField(g.runId),
      job: nameField(g.job),
      runner: nameField(ctx.runner.runnerName),
      jobId,
      runnerHost: nameField(hostname())
    }
    const use = <T>(what: string, fn: (gate: FleetGate) => Promise<T>): Promise<T> =>
      this.ledger()
        .then((l) => fn(fleetGate(l, this.facts, this.clock)))
        .catch((e: unknown) => {
          if (e instanceof FleetRefused || e instanceof NotAttachable || (e instanceof HookError && e.message.startsWith('fleet.ledger')))
            throw e
          throw new HookError(`fleet.ledger (${this.kind}): cannot ${what}: ${formatError(e)}`, { cause: e })
        })
    this.gate = {
      reserve: (spec) =>
        use('reserve a launch, so the caps and the budget cannot be checked', async (g) => {
          const id = await g.reserve(spec)
          this.reserved.add(id)
          return id
        }),
      attach: (id, instanceId, at) => use(`attach ${instanceId} to reservation ${id}`, (g) => g.attach(id, instanceId, at)),
      settle: (id, opts) =>
        use(`settle reservation ${id}`, async (g) => {
          await g.settle(id, opts)
          this.reserved.delete(id)
        }),
      beat: (id) => use(`record a heartbeat of reservation ${id}`, (g) => g.beat(id))
    }
  }

  get kind(): string {
    return this.ctx.config.fleet.ledger.kind
  }

  /** The ledger, opened on the first call. */
  ledger(): Promise<Ledger> {
    this.opened ??= openLedger(this.ctx.config.fleet, { localRoot: this.ctx.localRoot, clock: this.clock }).catch((e: unknown) => {
      throw new HookError(`fleet.ledger (${this.kind}): cannot open the ledger: ${formatError(e)}`, { cause: e })
    })
    return this.opened
  }

  /**
   * Heartbeats of what this command reserves, every `everyMs` (the first after one period) until
   * stopBeating or close. reap judges a launched machine's job dead once its reservation has had no
   * heartbeat for fleet.reap.deadAfterMinutes, and a step beats only while it runs (main.ts): a
   * prepare_job with a long pull, or a container action without state (it has no reservation in a
   * state to beat), would otherwise look dead while it runs. A failed beat is said once.
   */
  keepBeating(everyMs: number = BEAT_MS, warn: (m: string) => void): void {
    if (this.beating) return
    let busy = false
    let warned = false
    const timer = setInterval(() => {
      if (busy || !this.reserved.size) return
      busy = true
      void Promise.all([...this.reserved].map((id) => this.gate.beat(id)))
        .catch((e: unknown) => {
          // A beat still in flight when the command stopped beating (and closed the ledger under it)
          // is no news: the command is over, and its end was written without it.
          if (!warned && this.beating === timer) warn(`fleet.ledger: could not record a heartbeat: ${formatError(e)}`)
          warned = true
        })
        .finally(() => (busy = false))
    }, everyMs)
    timer.unref()
    this.beating = timer
  }

  stopBeating(): void {
    if (this.beating) clearInterval(this.beating)
    this.beating = null
  }

  close(): void {
    this.stopBeating()
    void this.opened?.then((l) => l.close()).catch(() => undefined)
  }
}

const open = new Map<string, JobFleet>()

/** The job's fleet ledger in this process (one per job id, opened on first use). */
export function jobFleet(ctx: JobFleetContext, jobId: string): JobFleet {
  let f = open.get(jobId)
  if (!f) open.set(jobId, (f = new JobFleet(ctx, jobId)))
  return f
}

/** Closes the job's ledger connection once its command is done. */
export function closeJobFleet(jobId: string): void {
  open.get(jobId)?.close()
  open.delete(jobId)
}
