// The fleet's arithmetic, shared by both ledger kinds so that they agree to the micro-dollar.
// Integer micro-dollars: sums of float dollars drift, and a cap compared against a drifted sum
// can let one launch too many through.
import type { FleetConfig } from '../config'
import { HookError } from '../errors'

export const MICRO = 1_000_000

export const toMicro = (usd: number): number => Math.round(usd * MICRO)

/** "48.10": micro-dollars as USD with cents (rounded up, so a spent budget never prints as less). */
export const usd = (micro: number): string => (Math.ceil(micro / 10_000) / 100).toFixed(2)

/** Cost of `seconds` at `microPerHour`, rounded up to the micro-dollar. */
export const costMicro = (microPerHour: number, seconds: number): number => Math.ceil((microPerHour * seconds) / 3600)

/** Billed seconds of an instance that ran from `startedAt` to `endedAt` (ms): per second, 60 s minimum. */
export const billedSeconds = (startedAt: number, endedAt: number): number => Math.max(60, Math.ceil((endedAt - startedAt) / 1000))

// One formatter per zone: making one costs ~50 µs, and `report --by day` asks once per record.
const dayFormats = new Map<string, Intl.DateTimeFormat>()

/** The budget day of `at` (epoch ms) in `timeZone`: YYYY-MM-DD. */
export function budgetDay(at: number, timeZone: string): string {
  let format = dayFormats.get(timeZone)
  if (!format) {
    format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    dayFormats.set(timeZone, format)
  }
  const parts = format.formatToParts(new Date(at))
  const get = (t: string): string => parts.find((p) => p.type === t)!.value
  return `${get('year')}-${get('month')}-${get('day')}`
}

/** The price of a type in micro-dollars per hour, or null when the config has none. */
export function priceOf(fleet: FleetConfig, instanceType: string): number | null {
  const p = fleet.budget?.prices[instanceType]
  return p === undefined ? null : toMicro(p)
}

/**
 * What settling a reservation bills: per second with a 60 s minimum, or nothing when no instance ever ran.
 * A start or end that is not a time is refused (the reservation stays open for a later settle or
 * reap): its NaN cost would make the budget day's total NaN, which the local ledger writes as null
 * and reads back as 0, forgetting the day's spending and every open reservation's cost.
 */
export function settlement(
  r: { id: string; priceMicroPerHour: number | null; attachedAt?: number; reservedAt: number },
  opts: { startedAt?: number; endedAt: number; launched?: boolean }
): { seconds: number; actual: number } {
  const refuse = (what: string): HookError =>
    new HookError(`fleet ledger: reservation ${r.id} cannot be settled: its ${what} is not a time`)
  if (!Number.isFinite(opts.endedAt)) throw refuse('end')
  // An instance attached since the caller judged nothing ran (reap's read, then a hook's attach):
  // settled at no cost, its counts freed, it would run outside the caps and the budget.
  if (opts.launched === false && r.attachedAt !== undefined)
    throw new HookError(`fleet ledger: reservation ${r.id} cannot be settled as unlaunched: an instance is attached to it`)
  if (opts.launched === false) return { seconds: 0, actual: 0 }
  const startedAt = opts.startedAt ?? r.attachedAt ?? r.reservedAt
  if (!Number.isFinite(startedAt)) throw refuse('start')
  const seconds = billedSeconds(startedAt, opts.endedAt)
  return { seconds, actual: r.priceMicroPerHour === null ? 0 : costMicro(r.priceMicroPerHour, seconds) }
}

/** An attach time, checked: billing runs from it. */
export function attachTime(id: string, at: number): number {
  if (!Number.isFinite(at)) throw new HookError(`fleet ledger: reservation ${id} cannot be attached: the time is not a time`)
  return at
}
