// Marks for what carries no tag (a reservation no instance was ever found for): kept in a private
// file of this runner host, so reap's two phases hold for them too. Each runner host's reap keeps
// its own; a mark another host's reap never saw only makes that host wait its own grace.
import { readFileSync } from 'node:fs'
import { checkPrivateDir, ensurePrivateDir, writePrivateFile } from '../private-fs'

export interface MarkStore {
  get(key: string): string | undefined
  set(key: string, at: string): void
  delete(key: string): void
  /**
   * Writes the marks back; keys not seen by this pass are dropped. A dry run writes only its
   * observations (WATCH keys: what it saw, not what it did), the other marks as they were.
   */
  save(seen: ReadonlySet<string>): void
}

/** Keys of reap's watch of heartbeats (reap.ts): observations, kept by a dry run too. */
export const WATCH = 'watch:'

export function fileMarks(dir: string, ledger: string, dryRun: boolean): MarkStore {
  const file = `${dir}/marks-${ledger}.json`
  let marks: Record<string, string> = {}
  // Checked before anything is read from it (as before it is written): marks another local user
  // planted would have reap remove at once what it should only mark.
  if (checkPrivateDir(dir))
    try {
      const v = JSON.parse(readFileSync(file, 'utf8')) as unknown
      if (v && typeof v === 'object' && !Array.isArray(v))
        marks = Object.fromEntries(Object.entries(v).filter(([, t]) => typeof t === 'string'))
    } catch {
      // No file yet, or a damaged one: every mark starts again (reap only ever waits longer).
    }
  const loaded = { ...marks }
  return {
    get: (k) => (Object.prototype.hasOwnProperty.call(marks, k) ? marks[k] : undefined),
    set: (k, at) => void (marks[k] = at),
    delete: (k) => void delete marks[k],
    save(seen) {
      const watched = Object.entries(marks).filter(([k]) => k.startsWith(WATCH) && seen.has(k))
      if (dryRun && !watched.length) return
      const others = Object.entries(dryRun ? loaded : marks).filter(([k]) => !k.startsWith(WATCH) && (dryRun || seen.has(k)))
      ensurePrivateDir(dir)
      writePrivateFile(file, JSON.stringify(Object.fromEntries([...others, ...watched])))
    }
  }
}
