// What a failed prepare_job must take back: each part that creates something pushes how to undo
// it, and on failure the list runs in reverse (containers before the folder they mount, the host
// released last). One failing entry does not stop the others. allOf runs pieces side by side and
// fails only once all have landed, so the undo never misses what a sibling was still making.
import { settlesWithin } from '../retry'

export class Undo {
  private readonly entries: { what: string; fn: () => Promise<unknown> }[] = []
  private hostGoes = false

  /**
   * `what` completes "could not …" in the warning when the undo itself fails. `onHost`: what the
   * entry removes is on the host, so it is not kept when releasing the host destroys the host.
   */
  push(what: string, fn: () => Promise<unknown>, opts: { onHost?: boolean } = {}): void {
    if (opts.onHost && this.hostGoes) return
    this.entries.push({ what, fn })
  }

  /**
   * Releasing the host destroys it (EC2): entries for what is on it are dropped from now on. The
   * runner kills the hook 10 s after a cancel; tidying a machine about to go (a slow docker there)
   * must not hold its release back past that.
   */
  releaseDestroysHost(): void {
    this.hostGoes = true
  }

  get size(): number {
    return this.entries.length
  }

  /**
   * Runs every entry, last pushed first, once; failures are reported through `warn`. An entry that
   * has not ended after `entryMs` is given up (the VM can make a command hang), so the ones after it
   * still run: the host is released last. After a cancel, `leftBeforeRelease` bounds every entry but
   * the last (the release) as well: the runner's kill must not find the release not yet begun.
   */
  async run(warn: (msg: string) => void, entryMs?: number, budget?: { left(): number; due: Promise<void> }): Promise<void> {
    while (this.entries.length) {
      const u = this.entries.pop()!
      const done = Promise.resolve()
        .then(u.fn)
        .catch((e: unknown) => {
          warn(`while undoing prepare_job, could not ${u.what}: ${(e as Error).message}`)
        })
      const last = this.entries.length === 0
      const bound = last ? (entryMs ?? Infinity) : Math.min(entryMs ?? Infinity, budget?.left() ?? Infinity)
      // A part but the release also ends when the runner's cancel's time runs out, should the cancel come while it runs.
      const cut = last || !budget ? done : Promise.race([done, budget.due.then(() => 'cut' as const)])
      const ended = bound === Infinity ? await cut : await settlesWithin(cut, bound).then((ok) => (ok ? cut : 'time'))
      if (ended === 'time' && bound === entryMs)
        warn(`while undoing prepare_job, could not ${u.what}: no result after ${entryMs / 1000} s (timeouts.cleanupSeconds)`)
      else if (ended === 'time' || ended === 'cut')
        warn(
          `while undoing prepare_job, could not ${u.what}: no result before the runner's kill, which the release must come before (the same runner's next prepare_job on this host, or a cleanup_job without state, removes what is left)`
        )
    }
  }
}

/**
 * Like Promise.all, but settles only once every piece has: a piece that fails must not let the undo
 * start while a sibling is still creating something.
 */
export async function allOf<T extends readonly unknown[]>(pieces: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(pieces)
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T
}
