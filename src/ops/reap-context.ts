// What every reap pass is given: the times it judges by, whether it may change anything, the
// ledger (when the configuration has one), its marks for untagged things, and the rows it reports.
import type { Ledger, LedgerClock } from '../fleet/ledger'
import type { MarkStore } from './reap-marks'
import type { Action, ReapRow, ReapTimes } from './reap-plan'

export interface ReapContext {
  times: ReapTimes
  /** Nothing is changed, not even a mark: the rows say what would be done. */
  dryRun: boolean
  ledger: Ledger
  /** The ledger's clock: settlement times (tests move it with RCH_LEDGER_NOW_MS). */
  clock: LedgerClock
  marks: MarkStore
  /** Keys of `marks` this pass still has a use for (the others are dropped when it ends). */
  seenMarks: Set<string>
  rows: ReapRow[]
  signal: AbortSignal
  connectMs: number
  /**
   * AWS's clock against this host's (ms AWS is ahead), from the pass's first answer with a Date;
   * undefined before one, and for static hosts. See alignToAws.
   */
  awsOffsetMs?: number
}

/** Within this, this host's clock is taken as it is: the Date has whole seconds, and the call takes its own time. */
export const ALIGN_MS = 2_000

/**
 * Puts the pass on AWS's clock, from the first answer with a Date, when this host's is further off
 * than ALIGN_MS. EC2's times (launch, end, stop) are AWS's, and the marks reap tags are read by every
 * runner host's reap: judged by one host's own clock, a host minutes ahead would end live jobs and
 * replace held members that much early, fleet-wide.
 */
export function alignToAws(ctx: ReapContext, offsetMs: number): void {
  if (ctx.awsOffsetMs !== undefined) return
  ctx.awsOffsetMs = offsetMs
  ctx.times = { ...ctx.times, now: ctx.times.now + appliedOffset(ctx) }
}

/** How far the pass's clock is moved from this host's (0 within ALIGN_MS). */
export function appliedOffset(ctx: Pick<ReapContext, 'awsOffsetMs'>): number {
  const ms = ctx.awsOffsetMs ?? 0
  return Math.abs(ms) > ALIGN_MS ? Math.round(ms) : 0
}

/** Now by the pass's clock (the ledger's, on AWS's once aligned): when reap settles a reservation. */
export const passNow = (ctx: Pick<ReapContext, 'awsOffsetMs' | 'clock'>): number => ctx.clock.now() + appliedOffset(ctx)

export function addRow(ctx: Pick<ReapContext, 'rows'>, kind: ReapRow['kind'], what: string, action: Action, why: string): void {
  ctx.rows.push({ kind, what, why, action })
}

/** Runs `act` unless this is a dry run; a failure becomes a `failed` row instead of ending the pass. */
export async function act(
  ctx: ReapContext,
  kind: ReapRow['kind'],
  what: string,
  action: Action,
  why: string,
  fn: () => Promise<string | void>
): Promise<boolean> {
  if (ctx.dryRun) {
    addRow(ctx, kind, what, action, why)
    return true
  }
  try {
    const more = await fn()
    addRow(ctx, kind, what, action, more ? `${why}; ${more}` : why)
    return true
  } catch (e) {
    addRow(ctx, kind, what, 'failed', `${why}; ${action === 'left alone' ? '' : `${action}: `}${(e as Error).message}`)
    return false
  }
}

/** One part of a pass; its failure is a row, and the other parts still run. */
export async function step<T>(ctx: ReapContext, kind: ReapRow['kind'], what: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn()
  } catch (e) {
    ctx.rows.push({ kind, what, action: 'failed', why: (e as Error).message })
    return null
  }
}
