// How often a running command records a heartbeat of its machine's reservation: every minute.
// Tests shorten it with RCH_LEDGER_BEAT_MS (100 ms to a minute; anything else is the minute: node
// takes a timer over 2^31-1 ms, or Infinity, for 1 ms, which would beat back to back).
import { statSync } from 'node:fs'
import { writePrivateFile } from '../private-fs'

export const BEAT_ENV = 'RCH_LEDGER_BEAT_MS'
export const BEAT_MS = 60_000
/** How long a step's hook waits at its end for a heartbeat still being written. */
export const BEAT_LAND_MS = 5_000

export function beatPeriodFrom(env: Record<string, string | undefined>): number {
  const ms = Number(env[BEAT_ENV])
  return ms >= 100 && ms <= BEAT_MS ? ms : BEAT_MS
}

/** How far ahead of this host's clock a stamp may be and still count as written now. */
const FUTURE_SLACK_MS = 1000

/** In the job's local folder: its mtime is when the job last recorded a heartbeat (prepare_job's last, or a step's). */
export const BEAT_STAMP = 'step-beat'

/** Notes in the job's (private) local folder that the job recorded a heartbeat now. */
export function stampBeat(jobDir: string): void {
  writePrivateFile(`${jobDir}/${BEAT_STAMP}`, '')
}

/**
 * Whether a step starting now must beat at once: the job's last step heartbeat is a period old or
 * more, or there is none. A step beats every period while it runs, the first after one period, so
 * a job whose steps are each shorter than the period would otherwise never beat after prepare_job,
 * and reap would end its machine after fleet.reap.deadAfterMinutes of such steps.
 */
export function beatDue(jobDir: string, everyMs: number, now = Date.now()): boolean {
  // Wall clock against a file's mtime, both this host's. A stamp from the future (the clock was set
  // back since) says nothing of when the last beat was: due. Not one of a moment ago: Date.now() is
  // cut to the millisecond and the mtime is not, so a stamp just written can look up to 1 ms ahead.
  try {
    const age = now - statSync(`${jobDir}/${BEAT_STAMP}`).mtimeMs
    return age >= everyMs || age < -FUTURE_SLACK_MS
  } catch {
    return true
  }
}
