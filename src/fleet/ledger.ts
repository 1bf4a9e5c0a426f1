// What a fleet ledger is: reservations counted against the caps and the day's budget before a
// launch, settled with the real instance time after it. Two kinds keep it (local file, DynamoDB);
// both answer the same calls with the same arithmetic (money.ts) and refusal lines (limits.ts).

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
  /** Per-phase durations in ms (acquire, boot, ...), as recorded. */
  timings: Record<string, number>
}

export interface SettleOptions {
  endedAt: number
  /** When billing started; default the attach time, else the reservation time. */
  startedAt?: number
}

export interface Ledger {
  /** One atomic step: counts the instance against every cap and the budget day of `now`, or refuses with one line. */
  reserve(req: ReserveRequest, now?: number): Promise<ReserveResult>
  attach(id: string, instanceId: string, at?: number): Promise<void>
  /** Replaces the reserved cost with the real one and frees the instance and its vCPUs; a second call changes nothing. */
  settle(id: string, opts: SettleOptions): Promise<LedgerRecord>
  recordTimings(id: string, timings: Record<string, number>): Promise<void>
  unsettled(): Promise<LedgerRecord[]>
  /** Every reservation made in [since, until) (epoch ms; either bound optional), oldest first. */
  records(range?: { since?: number; until?: number }): Promise<LedgerRecord[]>
  close(): void
}

/** The ledger's view of time: reservation and attach times, and the budget day when a call gives none. */
export interface LedgerClock {
  now(): number
}

export const systemLedgerClock: LedgerClock = { now: () => Date.now() }
