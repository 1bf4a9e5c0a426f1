// The ledger's clock for one hook process. Tests set RCH_LEDGER_NOW_MS (epoch ms) to move the
// budget day without moving the machine's clock: read once, then it runs on from there at real speed.
import { InputError } from '../errors'
import { systemLedgerClock, type LedgerClock } from './ledger'

export const LEDGER_NOW_ENV = 'RCH_LEDGER_NOW_MS'

export function ledgerClockFrom(env: Record<string, string | undefined>, real: () => number = Date.now): LedgerClock {
  const v = env[LEDGER_NOW_ENV]
  if (v === undefined || v === '') return systemLedgerClock
  if (!/^\d{1,16}$/.test(v)) throw new InputError(`${LEDGER_NOW_ENV} must be a time in epoch milliseconds`)
  const start = Number(v)
  const t0 = real()
  return { now: () => start + (real() - t0) }
}
