// Cancelling multi-step work (prepare_job): stop waiting as soon as the runner cancels, but keep
// track of what was still running, so the undo starts only once it has landed. A container created
// a moment after the undo looked for it would otherwise be left behind.
import { Cancelled } from './errors'
import { settlesWithin, unlessCancelled } from './retry'
import { monoMs } from './mono-clock'

/**
 * How long after a cancel the undo has for everything but the release: the runner sends SIGTERM
 * 7.5 s after its SIGINT and SIGKILL 2.5 s later, so the release (the host's slot, a pool lease)
 * keeps those last seconds whatever else hangs.
 */
export const UNDO_BEFORE_RELEASE_MS = 7_500

export class InFlight {
  private readonly pending = new Set<Promise<unknown>>()
  private cancelledAt: number | null = null

  constructor(private readonly signal: AbortSignal) {
    if (signal.aborted) this.cancelledAt = monoMs()
    else signal.addEventListener('abort', () => (this.cancelledAt = monoMs()), { once: true })
  }

  /** Milliseconds left of UNDO_BEFORE_RELEASE_MS since the cancel; Infinity without one. */
  leftBeforeRelease(): number {
    return this.cancelledAt === null ? Infinity : Math.max(0, this.cancelledAt + UNDO_BEFORE_RELEASE_MS - monoMs())
  }

  /** Resolves or rejects as `work` does, or rejects with Cancelled as soon as the signal fires. */
  track<T>(work: Promise<T>): Promise<T> {
    const settled = work.then(
      () => undefined,
      () => undefined
    )
    this.pending.add(settled)
    void settled.then(() => this.pending.delete(settled))
    return unlessCancelled(work, this.signal, undefined, (s) => Cancelled.by(s))
  }

  /**
   * Resolves once everything tracked has settled, or after maxMs, whichever comes first. Work that
   * lands may have started more (containers created once their network exists): that is waited
   * for too, not only what was running when the wait began.
   */
  async settle(maxMs: number): Promise<void> {
    const end = monoMs() + maxMs
    while (this.pending.size > 0) {
      const left = end - monoMs()
      if (left <= 0 || !(await settlesWithin(Promise.all([...this.pending]), left))) return
    }
  }
}
