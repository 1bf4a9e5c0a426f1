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

/** The runner's cancels, which its kill follows (main.ts aborts with the signal's name). */
const RUNNER_CANCELS: readonly unknown[] = ['SIGINT', 'SIGTERM']

export class InFlight {
  private readonly pending = new Set<Promise<unknown>>()
  private cancelledAt: number | null = null
  private readonly due: Promise<void>

  constructor(private readonly signal: AbortSignal) {
    let come!: () => void
    this.due = new Promise<void>((r) => (come = r))
    const start = (): void => {
      // Another abort (the runner closed the hook's output: no kill follows) leaves the undo its full time.
      if (!RUNNER_CANCELS.includes(signal.reason)) return
      this.cancelledAt = monoMs()
      setTimeout(come, UNDO_BEFORE_RELEASE_MS).unref()
    }
    if (signal.aborted) start()
    else signal.addEventListener('abort', start, { once: true })
  }

  /** Milliseconds left of UNDO_BEFORE_RELEASE_MS since the runner's cancel; Infinity without one. */
  leftBeforeRelease(): number {
    return this.cancelledAt === null ? Infinity : Math.max(0, this.cancelledAt + UNDO_BEFORE_RELEASE_MS - monoMs())
  }

  /** Resolves UNDO_BEFORE_RELEASE_MS after the runner's cancel, also one that comes during the undo; never without one. */
  releaseDue(): Promise<void> {
    return this.due
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
      const left = Math.min(end - monoMs(), this.leftBeforeRelease())
      if (left <= 0 || !(await settlesWithin(Promise.race([Promise.all([...this.pending]), this.due]), left))) return
    }
  }
}
