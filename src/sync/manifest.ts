// The base of the two-way sync: for every path, the fingerprints both sides had when they were last
// known equal. A side whose fingerprint differs from the base changed it; a path in the base that a
// side no longer has was deleted there. Saved per job in the hook's local folder; concurrent hook
// processes (background steps) merge their updates under a short lock.
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
  type Stats
} from 'node:fs'
import { dirname } from 'node:path'
import { errnoOf, HookError } from '../errors'
import { withFileLock } from '../file-lock'
import { openPrivateAppend, writePrivateFile } from '../private-fs'
import type { Kind } from './tree'
import { isGone, isWithin } from './safe-fs'
import { LayeredMap } from './layered-map'

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

// Saved as a snapshot (`base.json`, the whole base as one JSON object) and a journal beside it
// (`base.json.log`) to which a save appends its update as one line: a step that changes a few paths
// of a 200,000-entry base no longer rewrites 25 MB. The journal's first line names the snapshot it
// applies to (its file identity), so one left beside a newer snapshot (a save killed between its two
// writes) is ignored. Once the journal reaches a quarter of the snapshot, a save writes a new
// snapshot instead, then removes the journal.
//
// The agent runs every step of a job, so it keeps the last base it read or wrote and reads only
// what another process appended since (or everything, when the snapshot was replaced). It holds the
// snapshot it read open: a file system reuses a freed inode at once, and sizes and mtimes repeat, so
// only a file still open cannot share its identity with the one that replaces it.
interface Cached {
  /** The snapshot's identity ('' when there is none), as keyOf gives it. */
  snap: string
  /** The snapshot, held open (null when none was read). */
  fd: number | null
  snapBytes: number
  /** Whether the snapshot was a JSON base: a journal applies only to one that was. */
  parsed: boolean
  /** The journal read so far: its inode and how many bytes (whole lines) of it; null when none applies. */
  journal: { ino: number; bytes: number } | null
  base: LayeredMap<string, BaseEntry>
}
const cache = new Map<string, Cached>()
const journalOf = (file: string): string => `${file}.log`
const header = (snap: string): string => `${JSON.stringify({ snapshot: snap })}\n`
const keyOf = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}`

function fileKey(file: string): string | null {
  try {
    return keyOf(statSync(file))
  } catch {
    return null
  }
}

/** fileKey for the base's read: null only when there is none (a base that cannot be looked at is an error). */
function baseKey(file: string): string | null {
  try {
    return keyOf(statSync(file))
  } catch (e) {
    if (isGone(e)) return null
    throw new HookError(`cannot read the sync base ${file}: ${errnoOf(e)}`)
  }
}

/** Caches `c` for `file` (null: forgets it), closing a snapshot no longer held. */
function remember(file: string, c: Cached | null): void {
  const old = cache.get(file)
  if (old?.fd != null && old.fd !== c?.fd) closeSync(old.fd)
  if (c) cache.set(file, c)
  else cache.delete(file)
}

const EMPTY = (): Cached => ({
  snap: '',
  fd: null,
  snapBytes: 0,
  parsed: false,
  journal: null,
  base: LayeredMap.of(new Map<string, BaseEntry>())
})

/** The journal's bytes from `from` to its end, with its inode and size; null when there is none. */
function readJournal(file: string, from: number): { ino: number; size: number; bytes: Buffer } | null {
  let fd: number
  try {
    fd = openSync(journalOf(file), constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
  try {
    const st = fstatSync(fd)
    const buf = Buffer.alloc(Math.max(0, st.size - from))
    for (let off = 0; off < buf.length;) {
      const n = readSync(fd, buf, off, buf.length - off, from + off)
      if (n === 0) break
      off += n
    }
    return { ino: st.ino, size: st.size, bytes: buf }
  } finally {
    closeSync(fd)
  }
}

type JournalRecord = [string[], [string, string, string, string][]]
const isRecord = (r: unknown): r is JournalRecord =>
  Array.isArray(r) &&
  r.length === 2 &&
  Array.isArray(r[0]) &&
  r[0].every((p) => typeof p === 'string') &&
  Array.isArray(r[1]) &&
  r[1].every((e) => Array.isArray(e) && e.length === 4 && e.every((x) => typeof x === 'string'))

/**
 * Applies the journal's whole lines in `bytes` (from a line start) to `c`, as one update: the lines in
 * order, each its removals then its sets (one new version per line would copy the layer per line). A
 * line cut short (a save killed while appending, or one being appended now) is not valid JSON and is
 * passed over. Returns how many bytes were whole lines, or -1 when the header names another snapshot.
 */
function applyLines(c: Cached, bytes: Buffer, atStart: boolean): number {
  const end = bytes.lastIndexOf(0x0a) + 1
  let lines = bytes.toString('utf8', 0, end).split('\n')
  lines.pop()
  if (atStart) {
    if (lines[0] + '\n' !== header(c.snap)) return -1
    lines = lines.slice(1)
  }
  const ops = new Map<string, BaseEntry | null>()
  for (const line of lines) {
    let rec: unknown
    try {
      rec = JSON.parse(line)
    } catch {
      continue
    }
    if (!isRecord(rec)) continue
    for (const p of rec[0]) ops.set(p, null)
    for (const [p, t, l, r] of rec[1]) ops.set(p, { t: t as Kind, l, r })
  }
  if (ops.size) {
    const set: [string, BaseEntry][] = []
    const remove: string[] = []
    for (const [p, e] of ops) {
      if (e) set.push([p, e])
      else remove.push(p)
    }
    c.base = c.base.with(set, remove)
  }
  return end
}

/** Reads what another process appended to the journal since `hit`; null when that cannot be done (re-read all). */
function tail(file: string, hit: Cached): Cached | null {
  if (!hit.parsed) return hit
  const j = readJournal(file, hit.journal?.bytes ?? 0)
  if (!j) return hit.journal ? null : hit
  if (hit.journal && (j.ino !== hit.journal.ino || j.size < hit.journal.bytes)) return null
  if (!j.bytes.length) return hit
  const next: Cached = { ...hit }
  const used = applyLines(next, j.bytes, !hit.journal)
  if (used < 0) return hit.journal ? null : hit
  next.journal = { ino: j.ino, bytes: (hit.journal?.bytes ?? 0) + used }
  return next
}

/** The snapshot (held open) and its journal, read whole. */
function readAll(file: string): Cached {
  const c = EMPTY()
  const fd = openSync(file, 'r')
  let text: string
  try {
    const st = fstatSync(fd)
    c.snap = keyOf(st)
    c.snapBytes = st.size
    text = readFileSync(fd, 'utf8')
  } catch (e) {
    closeSync(fd)
    throw e
  }
  c.fd = fd
  try {
    c.base = LayeredMap.of(new Map(Object.entries(JSON.parse(text) as Record<string, BaseEntry>)))
    c.parsed = true
  } catch {
    // Saves replace the file whole: one that is not JSON was not written by a save, and its entries
    // are unknown (an empty base in its place would lose what the VM deleted).
    closeSync(fd)
    throw new Error('it is not JSON')
  }
  try {
    const j = readJournal(file, 0)
    if (j) {
      const used = applyLines(c, j.bytes, true)
      if (used >= 0) c.journal = { ino: j.ino, bytes: used }
    }
  } catch (e) {
    closeSync(fd)
    throw e
  }
  return c
}

/**
 * The base as saved, kept in the cache; empty when there is none yet. A base that cannot be read
 * (EMFILE, EIO, not JSON) is an error, never cached (it may be passing), and never taken for an
 * empty one: a pull against an empty base misses what the VM deleted, and then moves its listing's
 * start past it for good; a save would replace the base.
 */
function current(file: string): Cached {
  let why = ''
  // A save that replaces the snapshot during the read shows as a new identity at the path: read again.
  for (let tries = 0; tries < 5; tries++) {
    const snap = baseKey(file)
    if (snap === null) {
      remember(file, null)
      return EMPTY()
    }
    const hit = cache.get(file)
    let got: Cached
    try {
      got = (hit?.snap === snap && tail(file, hit)) || readAll(file)
    } catch (e) {
      why = (e as Error).message
      break
    }
    if (got.snap === fileKey(file)) {
      remember(file, got)
      return got
    }
    if (got.fd !== null && got.fd !== hit?.fd) closeSync(got.fd)
    why = 'it was replaced while being read, five times'
  }
  remember(file, null)
  throw new HookError(`cannot read the sync base ${file}: ${why}`)
}

/** Which version of the saved base the files hold now (null: none): another one means another writer. */
export function baseVersion(file: string): string | null {
  const snap = fileKey(file)
  return snap && `${snap}/${fileKey(journalOf(file)) ?? ''}`
}

/**
 * The saved base; empty when there is none yet (one that cannot be read is an error). Not a copy:
 * a save never changes a map it handed out, it makes a new version (layered-map.ts).
 */
export function loadBase(file: string): Base {
  return current(file).base
}

/**
 * The base's lock, a file-lock.ts lock: it names its holder (pid and start time), so one whose
 * holder died (a hook the runner killed) is taken over at once, by one breaker at a time. (The
 * `.lock` folder of builds before 2026-12-07 went by age: waiters gave up after 10 s while a lock
 * counted as dead only after 30 s, and two waiters could both break one and both hold it.)
 */
export const manifestLockOf = (file: string): string => `${file}.lk`

function withLock<T>(file: string, fn: () => T): Promise<T> {
  return withFileLock(manifestLockOf(file), fn, 10_000, { what: 'sync manifest lock' })
}

/**
 * Appends `line` to the journal read so far; null when the journal is not that one (then the caller
 * writes a snapshot). Past what was read there can only be a half line of a save that was killed
 * (this one holds the lock): it is cut off first. A failed write takes back what it wrote.
 */
function append(file: string, line: string, read: { ino: number; bytes: number }): { ino: number; bytes: number } | null {
  const fd = openPrivateAppend(journalOf(file))
  try {
    const st = fstatSync(fd)
    if (st.ino !== read.ino || st.size < read.bytes) return null
    if (st.size > read.bytes) ftruncateSync(fd, read.bytes)
    const buf = Buffer.from(line)
    try {
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off)
    } catch (e) {
      ftruncateSync(fd, read.bytes)
      throw e
    }
    return { ino: st.ino, bytes: read.bytes + buf.length }
  } finally {
    closeSync(fd)
  }
}

/**
 * A copy of `s` that holds nothing else alive. V8 makes a substring of 13 or more characters a
 * view of the string it was cut from: a path cut from a listing (tens of MB) and kept in the
 * agent's cached base would keep that whole listing for as long as the job runs.
 */
export function ownString(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string)
}

/**
 * Applies an update to the saved base (re-read under the lock, so concurrent updates merge).
 * `still` is asked once the lock is held: false leaves the base as it is.
 */
export async function saveBase(file: string, update: BaseUpdate, still?: () => boolean): Promise<void> {
  if (update.set.size === 0 && update.remove.size === 0) return
  await withLock(file, () => {
    if (still && !still()) return
    const c = current(file)
    // Copies: the saved entry must be the entry as given, even if the caller's object changes later;
    // and the path a string of its own, kept in the cached base (see ownString).
    const set = [...update.set].map(([p, e]): [string, BaseEntry] => [ownString(p), { t: e.t, l: e.l, r: e.r }])
    const base = c.base.with(set, update.remove)
    const line = `${JSON.stringify([[...update.remove], set.map(([p, e]) => [p, e.t, e.l, e.r])])}\n`
    const small = c.parsed && (c.journal?.bytes ?? 0) + Buffer.byteLength(line) <= 65_536 + c.snapBytes / 4
    const appended = small && c.snap && c.journal ? append(file, line, c.journal) : null
    if (appended) {
      remember(file, { ...c, base, journal: appended })
    } else if (small && c.snap && !c.journal) {
      // A new journal (replacing one left for an older snapshot), whole or not at all.
      writePrivateFile(journalOf(file), header(c.snap) + line)
      const st = statSync(journalOf(file))
      remember(file, { ...c, base, journal: { ino: st.ino, bytes: st.size } })
    } else {
      const parts: string[] = []
      for (const [p, e] of base) parts.push(`${JSON.stringify(p)}:${JSON.stringify(e)}`)
      const text = `{${parts.join(',')}}`
      writePrivateFile(file, text)
      rmSync(journalOf(file), { force: true })
      // Held open as a read one is (see Cached); this process wrote it, under the lock.
      const fd = openSync(file, 'r')
      const st = fstatSync(fd)
      remember(file, { snap: keyOf(st), fd, snapBytes: st.size, parsed: true, journal: null, base })
    }
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
  const file = pulledFile(manifestFile)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { files: 0, bytes: 0 } // none yet
    // Read as none, a passing failure (EMFILE) would start the job's caps over.
    throw new HookError(`cannot read the job's pulled totals ${file} (${errnoOf(e)})`)
  }
  try {
    const t = JSON.parse(text) as PulledTotals
    if (Number.isSafeInteger(t.files) && Number.isSafeInteger(t.bytes)) return { files: t.files, bytes: t.bytes }
  } catch {
    // not JSON: as below
  }
  throw new HookError(`the job's pulled totals ${file} are not what this hook writes`)
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
