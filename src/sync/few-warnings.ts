// Warnings about single entries of one sync: the first few of each kind named, the rest counted.
// The VM decides how many there are (a job can make 200,000 symlinks that are not copied back), and
// each warning goes to the step log and to hook.log, which every job of the runner shares.
export const NAMED_PER_KIND = 5

export class FewWarnings {
  private readonly counts = new Map<string, number>()

  constructor(
    private readonly warn: ((msg: string) => void) | undefined,
    private readonly named = NAMED_PER_KIND
  ) {}

  /** Warns `message()` while fewer than `named` of `kind` were; after that only counts it. */
  add(kind: string, message: () => string): void {
    const n = (this.counts.get(kind) ?? 0) + 1
    this.counts.set(kind, n)
    if (n <= this.named) this.warn?.(message())
  }

  /** One line per kind with entries past the named ones, e.g. `... and 1995 more symlinks not copied back`. */
  flush(): void {
    for (const [kind, n] of this.counts) if (n > this.named) this.warn?.(`... and ${n - this.named} more ${kind}`)
    this.counts.clear()
  }
}
