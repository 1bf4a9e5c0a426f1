// What a ledger accepts as phase timings, on a reservation and on a job record alike.
import { HookError } from '../errors'

// A plain word: it becomes an attribute or key name in a ledger and a column of a report.
const PHASE = /^[a-z][a-z0-9_]{0,39}$/

/** Rejects what would corrupt a report: a phase name that is not a plain word, or a time that is not a duration in ms. */
export function checkTimings(timings: Record<string, number>): void {
  for (const [phase, ms] of Object.entries(timings)) {
    if (!PHASE.test(phase)) throw new HookError(`fleet ledger: timing ${JSON.stringify(phase)} is not a phase name`)
    if (!Number.isFinite(ms) || ms < 0) throw new HookError(`fleet ledger: timing ${JSON.stringify(phase)} is not a number of milliseconds`)
  }
}
