// What a fleet ledger is: reservations counted against the caps and the day's budget before a
// launch, settled with the real instance time after it. Two kinds keep it (local file, DynamoDB);
// both answer the same calls with the same arithmetic (money.ts) and refusal lines (limits.ts).
import { HookError } from '../errors'

/** The reservation was settled before this attach (reap judged it unlaunched): it cannot count this instance. */
export class NotAttachable extends HookError {
  constructor(id: string) {
    super(`fleet ledger: reservation ${id} cannot be attached`)
  }
}

/** One launch to count. */
export interface ReserveRequest {
  repository: string
  workflow: string
  runId: string
  job: string
  runner: string
  pool?: string
  instanceType: string
  vcpus: number
  /** The instance ends itself by then, so its cost is bounded by price × this. */
  maxLifetimeMinutes: number
  /** The hook's id of the job that launched (labels.ts), and the runner machine's host name: what reap asks about. */
  jobId?: string
  runnerHost?: string
}

export type ReserveResult = { ok: true; id: string } | { ok: false; line: string }

/** A reservation as kept. Money is in integer micro-dollars, times in epoch milliseconds. */
export interface LedgerRecord extends ReserveRequest {
  id: string
  /** The budget day (YYYY-MM-DD in the budget's time zone) the cost counts against. */
  day: string
  reservedAt: number
  /** USD per hour in micro-dollars; null when the type has no price (only allowed without a budget). */
  priceMicroPerHour: number | null
  /** Price × maximum lifetime: what the day carries until settlement. */
  reservedMicro: number
  instanceId?: string
  attachedAt?: number
  settledAt?: number
  endedAt?: number
  billedSeconds?: number
  actualMicro?: number
  /** Last sign of life of the job holding it (its hook or agent); reap leaves a fresh one alone. */
  heartbeatAt?: number
  /** Per-phase durations in ms (acquire, boot, ...), as recorded. */
  timings: Record<string, number>
}

/** One job as seen by the hook, whatever its provider: what `report` counts jobs and phase times from. */
export interface JobRecord {
  jobId: string
  repository: string
  workflow: string
  runId: string
  job: string
  runner: string
  runnerHost: string
  /** The provider kind: static, ec2, ec2-pool. */
  provider: string
  pool?: string
  /** The instance id or host:port the job ran on. */
  machine?: string
  reservationId?: string
  startedAt: number
  endedAt?: number
  /** prepare_job's and cleanup_job's phases in ms (acquire, boot, ssh, sync, containers, health, total, cleanup, ...). */
  timings: Record<string, number>
  /** Set when a step lost its machine: why it went away (one of LOSS_CAUSES). */
  lost?: string
}

/**
 * Why a job's machine went away under a step, from EC2's state reason: a Spot interruption, a
 * shutdown from inside, its lifetime limit, an end through the API, another reason; `running`: EC2
 * still ran it (the connection failed); `gone`: EC2 no longer knew it.
 */
export const LOSS_CAUSES = ['spot', 'inside', 'lifetime', 'api', 'other', 'running', 'gone'] as const
export type LossCause = (typeof LOSS_CAUSES)[number]

/**
 * How long after its start a job's record may still change (its end, a lost machine): GitHub ends a
 * job on a self-hosted runner after 5 days. Readers of a time range rely on it.
 */
export const JOB_SETTLES_MS = 8 * 86_400_000

/**
 * A heartbeat only moves forward (beats of one job may land out of order), except past this: a
 * stored one further ahead of a new beat than any delay between two beats is from before the
 * beating host's clock stepped back (NTP, a resumed VM). Kept, it froze: every beat was dropped
 * until the clock caught up, and another host's reap, whose watch counts a changing heartbeat as a
 * live job whatever the skew, saw it unchanged and ended the live job.
 */
export const BEAT_STEP_BACK_MS = 2 * 60_000

/** A change to a job record: named fields replace, timings merge phase by phase. */
export type JobUpdate = Partial<JobRecord> & { jobId: string }

export interface SettleOptions {
  endedAt: number
  /** When billing started; default the attach time, else the reservation time. */
  startedAt?: number
  /** false: no instance ever ran for it (the launch failed): settled at zero cost. */
  launched?: boolean
}

export interface Ledger {
  /** One atomic step: counts the instance against every cap and the budget day of `now`, or refuses with one line. */
  reserve(req: ReserveRequest, now?: number): Promise<ReserveResult>
  attach(id: string, instanceId: string, at?: number): Promise<void>
  /** Replaces the reserved cost with the real one and frees the instance and its vCPUs; a second call changes nothing. */
  settle(id: string, opts: SettleOptions): Promise<LedgerRecord>
  recordTimings(id: string, timings: Record<string, number>): Promise<void>
  /** A sign of life of the job holding the reservation; nothing once it is settled. */
  beat(id: string, at?: number): Promise<void>
  unsettled(): Promise<LedgerRecord[]>
  /** Every reservation made in [since, until) (epoch ms; either bound optional), oldest first. */
  records(range?: { since?: number; until?: number }): Promise<LedgerRecord[]>
  /** Creates or amends the job's record (fields replace, timings merge). */
  recordJob(update: JobUpdate): Promise<void>
  /** Every job started in [since, until), oldest first. */
  jobs(range?: { since?: number; until?: number }): Promise<JobRecord[]>
  /** A line for whoever reads: the reads so far went through the whole store where an index would have served. */
  readNote?(): string | null
  close(): void
}

/** Whether a time is in the range [since, until) (either bound optional), as records() and jobs() take it. */
export const inTimeRange = (at: number, { since, until }: { since?: number; until?: number }): boolean =>
  (since === undefined || at >= since) && (until === undefined || at < until)

/** Reservations in the order records() and unsettled() give them: by reservation time, then id. */
export const byReservation = (rs: LedgerRecord[]): LedgerRecord[] =>
  rs.sort((a, b) => a.reservedAt - b.reservedAt || a.id.localeCompare(b.id))

/** The ledger's view of time: reservation and attach times, and the budget day when a call gives none. */
export interface LedgerClock {
  now(): number
}

export const systemLedgerClock: LedgerClock = { now: () => Date.now() }
