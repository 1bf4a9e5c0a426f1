// Cancelling multi-step work (prepare_job): stop waiting as soon as the runner cancels, but keep
// track of what was still running, so the undo starts only once it has landed. A container created
// a moment after the undo looked for it would otherwise be left behind.
import { Cancelled } from './errors'
import { settlesWithin, unlessCancelled } from './retry'
import { monoMs } from './mono-clock'

export class InFlight {
  private readonly pending = new Set<Promise<unknown>>()

  constructor(private readonly signal: AbortSignal) {}

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
