// Marks for what carries no tag (a reservation no instance was ever found for): kept in a private
// file of this runner host, so reap's two phases hold for them too. Each runner host's reap keeps
// its own; a mark another host's reap never saw only makes that host wait its own grace.
import { readFileSync } from 'node:fs'
import { ensurePrivateDir, writePrivateFile } from '../private-fs'

export interface MarkStore {
  get(key: string): string | undefined
  set(key: string, at: string): void
  delete(key: string): void
  /** Writes the marks back (nothing in a dry run); keys not seen by this pass are dropped. */
  save(seen: ReadonlySet<string>): void
}

export function fileMarks(dir: string, ledger: string, dryRun: boolean): MarkStore {
  const file = `${dir}/marks-${ledger}.json`
  let marks: Record<string, string> = {}
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown
    if (v && typeof v === 'object' && !Array.isArray(v))
      marks = Object.fromEntries(Object.entries(v).filter(([, t]) => typeof t === 'string'))
  } catch {
    // No file yet, or a damaged one: every mark starts again (reap only ever waits longer).
  }
  return {
    get: (k) => (Object.prototype.hasOwnProperty.call(marks, k) ? marks[k] : undefined),
    set: (k, at) => void (marks[k] = at),
    delete: (k) => void delete marks[k],
    save(seen) {
      if (dryRun) return
      const kept = Object.fromEntries(Object.entries(marks).filter(([k]) => seen.has(k)))
      ensurePrivateDir(dir)
      writePrivateFile(file, JSON.stringify(kept))
    }
  }
}
