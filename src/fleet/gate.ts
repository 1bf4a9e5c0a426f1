// What a provider sees of the fleet ledger: reserve before a launch (refused → the job fails with
// the ledger's one line), attach the instance, settle at release. The job's facts (repository,
// run, runner...) are filled in here, so a provider passes only what it is launching.
import { HookError } from '../errors'
import { systemLedgerClock, type Ledger, type LedgerClock, type ReserveRequest, type SettleOptions } from './ledger'

/** What a provider is about to launch. */
export interface LaunchSpec {
  instanceType: string
  vcpus: number
  /** The instance's cost is bounded by its price × this (it ends itself, or is recycled, by then). */
  maxLifetimeMinutes: number
  pool?: string
}

/** The job's facts every reservation carries. */
export type JobFacts = Pick<ReserveRequest, 'repository' | 'workflow' | 'runId' | 'job' | 'runner' | 'jobId' | 'runnerHost'>

/** A refused launch: its message is the ledger's line, printed as the job's one `::error::`. */
export class FleetRefused extends HookError {}

export interface FleetGate {
  /** Reserves one launch; throws FleetRefused with the limit and the current use. */
  reserve(spec: LaunchSpec): Promise<string>
  /** `at`: when billing started (default the ledger's now); an already attached reservation keeps its time. */
  attach(id: string, instanceId: string, at?: number): Promise<void>
  /** endedAt defaults to the ledger's now, startedAt to the attach time. */
  settle(id: string, opts?: Partial<SettleOptions>): Promise<void>
  beat(id: string): Promise<void>
}

export function fleetGate(ledger: Ledger, facts: JobFacts, clock: LedgerClock = systemLedgerClock): FleetGate {
  return {
    async reserve(spec) {
      const r = await ledger.reserve({ ...facts, ...spec })
      if (!r.ok) throw new FleetRefused(r.line)
      return r.id
    },
    attach: (id, instanceId, at) => ledger.attach(id, instanceId, at ?? clock.now()),
    settle: async (id, opts = {}) => void (await ledger.settle(id, { ...opts, endedAt: opts.endedAt ?? clock.now() })),
    beat: (id) => ledger.beat(id)
  }
}
