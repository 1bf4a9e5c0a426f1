// A reap pass's context for unit tests: at `now`, a grace of 2 minutes, deadAfterMinutes 15, every
// heartbeat watched long enough, and the ledger given (by default an empty one).
import type { Ledger } from '../../src/fleet/ledger'
import type { ReapContext } from '../../src/ops/reap-context'

const MIN = 60_000

export function reapContext(now: number, ledger: Partial<Ledger> = { records: async () => [], unsettled: async () => [] }): ReapContext {
  return {
    times: { now, deadAfterMs: 15 * MIN, graceMs: 2 * MIN, watched: () => Infinity },
    dryRun: false,
    ledger: ledger as Ledger,
    clock: { now: () => now },
    marks: { get: () => undefined, set: () => undefined, delete: () => undefined, save: () => undefined },
    seenMarks: new Set(),
    rows: [],
    signal: new AbortController().signal,
    connectMs: 1000
  } as unknown as ReapContext
}
