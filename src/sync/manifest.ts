// The base of the two-way sync: for every path, the fingerprints both sides had when they were last
// known equal. A side whose fingerprint differs from the base changed it; a path in the base that a
// side no longer has was deleted there. Saved per job in the hook's local folder; concurrent hook
// processes (background steps) merge their updates under a short lock.
import { mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { HookError } from '../errors'
import { waitUntil } from '../retry'
import { writePrivateFile } from '../private-fs'
import type { Kind } from './tree'
import { isWithin } from './safe-fs'

export interface BaseEntry {
  t: Kind
  l: string
  r: string
}
/** A base as handed out: never changed afterwards (a save makes a new one). */
export type Base = ReadonlyMap<string, BaseEntry>

/**
 * A path whose state on the remote is unknown (an early push that failed may have left it there):
 * it matches no fingerprint of either side, so the next push sends it, or deletes it on the remote
 * when the host no longer has it.
 */
export const UNSURE: BaseEntry = { t: 'f', l: '?', r: '?' }

export interface BaseUpdate {
  set: Map<string, BaseEntry>
  remove: Set<string>
}

// The agent runs every step of a job, so it keeps the last base it read or wrote and re-reads the
// file only when another process replaced it (a new file: new inode), instead of parsing a large
// base again on every step. With it, each entry's JSON text: a save re-encodes only the entries it
// changes (a step's push changes a handful of a workspace's thousands).
interface Cached {
  key: string
  base: Map<string, BaseEntry>
  json: Map<string, string>
}
const cache = new Map<string, Cached>()

function fileKey(file: string): string | null {
  try {
    const st = statSync(file)
    return `${st.ino}:${st.size}:${st.mtimeMs}`
  } catch {
    return null
  }
}

/**
 * The base as saved, kept in the cache; empty when there is none yet or it is not JSON. A failed read
 * is never cached (it may be passing: EMFILE, EIO); `forSave` makes it an error, so a save cannot
 * replace a base it could not read.
 */
function current(file: string, forSave = false): Cached {
  const key = fileKey(file)
  const hit = cache.get(file)
  if (key !== null && hit?.key === key) return hit
  cache.delete(file)
  const fresh: Cached = { key: key ?? '', base: new Map(), json: new Map() }
  if (key === null) return fresh
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    if (forSave) throw new HookError(`cannot read the sync base ${file}: ${(e as Error).message}`)
    return fresh
  }
  try {
    fresh.base = new Map(Object.entries(JSON.parse(text) as Record<string, BaseEntry>))
  } catch {
    // not JSON: start again from an empty base, as before any copy
    return fresh
  }
  cache.set(file, fresh)
  return fresh
}

/** Which version of the saved base the file holds now (null: none): another one means another writer. */
export function baseVersion(file: string): string | null {
  return fileKey(file)
}

/**
 * The saved base; empty when there is none yet. Not a copy (that cost a step ~4 ms per 10,000
 * entries, twice): a save never changes a map it handed out, it makes a new one.
 */
export function loadBase(file: string): Base {
  return current(file).base
}

const entryJson = (p: string, e: BaseEntry): string => `${JSON.stringify(p)}:${JSON.stringify(e)}`

async function withLock<T>(file: string, fn: () => T): Promise<T> {
  const lock = `${file}.lock`
  const take = (): true | undefined => {
    try {
      mkdirSync(lock)
      return true
    } catch (e) {
      // Only a lock that exists is waited for: a folder gone or not writable is not mended by waiting.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      // A lock older than 30 s belongs to a killed process.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30_000) rmdirSync(lock)
      } catch {
        // raced with its owner removing it
      }
      return undefined
    }
  }
  await waitUntil(() => Promise.resolve(take()), {
    timeoutMs: 10_000,
    minDelayMs: 5,
    maxDelayMs: 50,
    onTimeout: () => new Error(`sync manifest ${file} stayed locked for 10 s`)
  })
  try {
    return fn()
  } finally {
    rmdirSync(lock)
  }
}

/**
 * Applies an update to the saved base (re-read under the lock, so concurrent updates merge).
 * `still` is asked once the lock is held: false leaves the base as it is.
 */
export async function saveBase(file: string, update: BaseUpdate, still?: () => boolean): Promise<void> {
  if (update.set.size === 0 && update.remove.size === 0) return
  await withLock(file, () => {
    if (still && !still()) return
    const c = current(file, true)
    cache.delete(file)
    // A new map: the old one may be in a reader's hands (loadBase hands out no copies). The texts
    // are this module's own, changed in place (the cache entry holding them is dropped above).
    const base = new Map(c.base)
    // Every entry's text, in the base's order, before the update (a base read from the file has none yet).
    const json = c.json.size === c.base.size ? c.json : new Map([...c.base].map(([p, e]) => [p, entryJson(p, e)]))
    for (const p of update.remove) {
      base.delete(p)
      json.delete(p)
    }
    for (const [p, e] of update.set) {
      // A copy: the cached text must describe the entry even if the caller's object changes later.
      const entry: BaseEntry = { t: e.t, l: e.l, r: e.r }
      base.set(p, entry)
      json.set(p, entryJson(p, entry))
    }
    writePrivateFile(file, `{${[...json.values()].join(',')}}`)
    const key = fileKey(file)
    if (key) cache.set(file, { key, base, json })
  })
}

export interface PulledTotals {
  files: number
  bytes: number
}

/** What the job's pulls brought back so far (kept next to the base). */
function pulledFile(manifestFile: string): string {
  return `${dirname(manifestFile)}/pulled.json`
}

export function loadPulled(manifestFile: string): PulledTotals {
  try {
    const t = JSON.parse(readFileSync(pulledFile(manifestFile), 'utf8')) as PulledTotals
    if (Number.isSafeInteger(t.files) && Number.isSafeInteger(t.bytes)) return { files: t.files, bytes: t.bytes }
  } catch {
    // none yet
  }
  return { files: 0, bytes: 0 }
}

/**
 * Adds a pull's files and bytes to the job's totals, or throws (naming the config key) when that
 * would go over a cap. Done under the base's lock before anything is fetched, so steps that run at
 * the same time cannot both pass the check.
 */
export function reservePull(manifestFile: string, add: PulledTotals, caps: { jobFiles: number; jobBytes: number }): Promise<PulledTotals> {
  return withLock(manifestFile, () => {
    const t = loadPulled(manifestFile)
    const next = { files: t.files + add.files, bytes: t.bytes + add.bytes }
    if (next.files > caps.jobFiles)
      throw new HookError(
        `sync.limits.jobFiles: this step would bring the job's files copied back from the remote to ${next.files}, over the limit of ${caps.jobFiles}; nothing was copied back`
      )
    if (next.bytes > caps.jobBytes)
      throw new HookError(
        `sync.limits.jobBytes: this step would bring the job's bytes copied back from the remote to ${next.bytes}, over the limit of ${caps.jobBytes}; nothing was copied back`
      )
    writePrivateFile(pulledFile(manifestFile), JSON.stringify(next))
    return next
  })
}

/**
 * Per pull root, where a delta listing may start (remoteListScript's `since`): everything in that
 * root that changed on the remote before it is in the base as it is there. With the stamp and the
 * VM's uptime it came from, to tell whether the VM's clock was set back since. Kept next to the
 * base, with the excludes it holds for (a path excluded then is in no base).
 */
export interface ListingTime {
  since: number
  stamp: number
  up: number | null
}

interface SinceFile {
  excludes: string
  roots: Record<string, ListingTime>
}

function sinceFile(manifestFile: string): string {
  return `${dirname(manifestFile)}/since.json`
}

function readSince(manifestFile: string): SinceFile | null {
  try {
    const f = JSON.parse(readFileSync(sinceFile(manifestFile), 'utf8')) as SinceFile
    if (typeof f.excludes === 'string' && f.roots && typeof f.roots === 'object') return f
  } catch {
    // none yet
  }
  return null
}

const isTime = (t: unknown): t is ListingTime =>
  typeof t === 'object' &&
  t !== null &&
  Number.isSafeInteger((t as ListingTime).since) &&
  Number.isFinite((t as ListingTime).stamp) &&
  ((t as ListingTime).up === null || Number.isFinite((t as ListingTime).up))

/** What since.json says of each of some roots (none: nothing, or recorded under other excludes). */
export type ListingTimes = Readonly<Record<string, ListingTime | undefined>>

export function listingTimes(manifestFile: string, roots: readonly string[], excludes: readonly string[]): ListingTimes {
  const f = readSince(manifestFile)
  const out: Record<string, ListingTime | undefined> = {}
  for (const r of roots) {
    const t: unknown =
      f && f.excludes === JSON.stringify(excludes) && Object.prototype.hasOwnProperty.call(f.roots, r) ? f.roots[r] : undefined
    out[r] = isTime(t) ? t : undefined
  }
  return out
}

/** Where a delta listing of `roots` may start (the earliest of their times), or null when one has none. */
export function earliest(roots: readonly string[], seen: ListingTimes): ListingTime | null {
  let first: ListingTime | null = null
  for (const r of roots) {
    const t = seen[r]
    if (!t) return null
    if (!first || t.since < first.since) first = t
  }
  return first
}

/**
 * Records that the base holds everything in `roots` that changed before `next.since`, after a
 * listing, made when since.json said `seen`, was brought back whole. Under the base's lock. A root
 * whose time another listing changed meanwhile keeps the earlier of the two: pulls that ran at the
 * same time may have saved older sights of a path last, and the next listing must reach back to them.
 */
export function recordSince(
  manifestFile: string,
  roots: readonly string[],
  excludes: readonly string[],
  next: ListingTime,
  seen: ListingTimes
): Promise<void> {
  return withLock(manifestFile, () => {
    const key = JSON.stringify(excludes)
    const f = readSince(manifestFile)
    const all: SinceFile = { excludes: key, roots: f && f.excludes === key ? { ...f.roots } : {} }
    for (const r of roots) {
      const raw: unknown = Object.prototype.hasOwnProperty.call(all.roots, r) ? all.roots[r] : undefined
      const now = isTime(raw) ? raw : undefined
      const moved = now?.since !== seen[r]?.since
      all.roots[r] = moved && now && now.since < next.since ? now : next
    }
    writePrivateFile(sinceFile(manifestFile), JSON.stringify(all))
  })
}

export function underRoots(path: string, roots: readonly string[]): boolean {
  return roots.some((r) => isWithin(path, r))
}
