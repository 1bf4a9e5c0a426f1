// Durations (phase timings, the ledger's per-job records) are measured on the monotonic clock: a
// wall clock stepped back mid-job would make one negative, and the ledger refuses those.
import { readFileSync } from 'node:fs'

export const monoMs = (): number => Math.round(performance.now())

/** bootMs() − monoMs() at the last read of /proc/uptime: where a later read fails, the monotonic clock goes on from it. */
let bootOffset: number | null = null
/** The first read failed: this process stays on the monotonic clock (a later read would jump it by the uptime). */
let monoOnly = false

/**
 * Milliseconds since boot, time suspended included (Linux's /proc/uptime, CLOCK_BOOTTIME; 10 ms
 * steps): for how long something held elsewhere has gone unrenewed. The monotonic clock (and
 * timers) stop while the runner host is suspended; a pool member's clock does not.
 */
export function bootMs(): number {
  if (monoOnly) return monoMs()
  try {
    const up = Math.round(parseFloat(readFileSync('/proc/uptime', 'latin1')) * 1000)
    if (Number.isFinite(up)) {
      bootOffset = up - monoMs()
      return up
    }
  } catch {
    // Not Linux, or /proc not mounted: the monotonic clock (from the last read, if any).
  }
  if (bootOffset === null) monoOnly = true
  return monoMs() + (bootOffset ?? 0)
}
