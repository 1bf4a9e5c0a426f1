// How often a running command records a heartbeat of its machine's reservation: every minute.
// Tests shorten it with RCH_LEDGER_BEAT_MS (at least 100 ms).
export const BEAT_ENV = 'RCH_LEDGER_BEAT_MS'
export const BEAT_MS = 60_000

export function beatPeriodFrom(env: Record<string, string | undefined>): number {
  const ms = Number(env[BEAT_ENV])
  return ms >= 100 ? ms : BEAT_MS
}
