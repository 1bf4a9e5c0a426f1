// What a failed prepare_job must take back: each part that creates something pushes how to undo
// it, and on failure the list runs in reverse (containers before the folder they mount, the host
// released last). One failing entry does not stop the others.
export class Undo {
  private readonly entries: { what: string; fn: () => Promise<unknown> }[] = []

  /** `what` completes "could not …" in the warning when the undo itself fails. */
  push(what: string, fn: () => Promise<unknown>): void {
    this.entries.push({ what, fn })
  }

  get size(): number {
    return this.entries.length
  }

  /** Runs every entry, last pushed first, once; failures are reported through `warn`. */
  async run(warn: (msg: string) => void): Promise<void> {
    while (this.entries.length) {
      const u = this.entries.pop()!
      try {
        await u.fn()
      } catch (e) {
        warn(`while undoing prepare_job, could not ${u.what}: ${(e as Error).message}`)
      }
    }
  }
}
