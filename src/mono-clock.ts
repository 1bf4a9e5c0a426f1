// Durations (phase timings, the ledger's per-job records) are measured on the monotonic clock: a
// wall clock stepped back mid-job would make one negative, and the ledger refuses those.
export const monoMs = (): number => Math.round(performance.now())
