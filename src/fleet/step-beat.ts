// Heartbeats of a launched machine's reservation while a step runs: the step's hook process lives
// as long as the step (whether the job's agent runs it or this process does), and has the runner's
// environment, which the agent deliberately does not (no cloud credentials reach it). So this
// process writes them: every minute, the first after a minute, and at once when the job's last
// heartbeat is a minute old (its stamp, beat-period.ts), so a run of steps each shorter than a minute
// still beats about once a minute; main.ts holds the timer (RCH_LEDGER_BEAT_MS, test-only, shortens
// the period).
import { readFileSync } from 'node:fs'
import type { Ledger } from './ledger'
import { stampBeat } from './beat-period'

let ledger: Promise<Ledger> | null = null

/** One heartbeat of the reservation the step's state names; any failure is left to reap's patience. */
export async function beatOnce(
  raw: string,
  env: Record<string, string | undefined>,
  localRoot: string,
  /** The job's local folder (checked private by the caller): where the beat is stamped (beatDue). */
  jobDir: string | null = null
): Promise<void> {
  const reservation = (JSON.parse(raw) as { state?: { host?: { reservation?: unknown } } }).state?.host?.reservation
  if (typeof reservation !== 'string') return
  ledger ??= (async () => {
    const { loadConfig } = await import('../config')
    const { openLedger } = await import('./open-ledger')
    const { ledgerClockFrom } = await import('./ledger-clock')
    const config = loadConfig(env, { readFile: (p) => readFileSync(p, 'utf8'), canRead: () => null })
    return openLedger(config.fleet, { localRoot, clock: ledgerClockFrom(env) })
  })()
  await (await ledger).beat(reservation)
  if (jobDir) stampBeat(jobDir)
}
