// The fleet ledger as one command of a job uses it: opened on first use only (a step that launches
// nothing never pays for it), with the job's facts filled in. A ledger that cannot be opened or
// written before a launch fails the job naming fleet.ledger: the caps could not be checked.
import { hostname } from 'node:os'
import type { FleetConfig } from '../config'
import { formatError, HookError } from '../errors'
import { FleetRefused, fleetGate, type FleetGate, type JobFacts } from './gate'
import { systemLedgerClock, type Ledger, type LedgerClock } from './ledger'
import { openLedger } from './open-ledger'

export interface JobFleetContext {
  config: { fleet: FleetConfig }
  runner: { runnerName: string; github: { repository?: string; workflow?: string; runId?: string; job?: string } }
  localRoot: string
  ledgerClock?: LedgerClock
}

export class JobFleet {
  private opened: Promise<Ledger> | null = null
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
      repository: g.repository ?? '',
      workflow: g.workflow ?? '',
      runId: g.runId ?? '',
      job: g.job ?? '',
      runner: ctx.runner.runnerName,
      jobId,
      runnerHost: hostname()
    }
    const use = <T>(what: string, fn: (gate: FleetGate) => Promise<T>): Promise<T> =>
      this.ledger()
        .then((l) => fn(fleetGate(l, this.facts, this.clock)))
        .catch((e: unknown) => {
          if (e instanceof FleetRefused || (e instanceof HookError && e.message.startsWith('fleet.ledger'))) throw e
          throw new HookError(`fleet.ledger (${this.kind}): cannot ${what}: ${formatError(e)}`, { cause: e })
        })
    this.gate = {
      reserve: (spec) => use('reserve a launch, so the caps and the budget cannot be checked', (g) => g.reserve(spec)),
      attach: (id, instanceId, at) => use(`attach ${instanceId} to reservation ${id}`, (g) => g.attach(id, instanceId, at)),
      settle: (id, opts) => use(`settle reservation ${id}`, (g) => g.settle(id, opts)),
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

  close(): void {
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
