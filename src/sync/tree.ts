// Snapshots of a tree on either side, as path → fingerprint. A changed fingerprint means the path
// must be copied; mtime+size is the same quick check rsync uses by default.
import { accessSync, constants, lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs'
import { HookError } from '../errors'
import { badRelPath, isWithin } from './safe-fs'

export type Kind = 'f' | 'd' | 'l'
export interface Node {
  t: Kind
  fp: string
  /** Remote regular files: the apparent size the listing announced (what the caps count). */
  size?: number
}
export type Snapshot = Map<string, Node>

export function isExcluded(rel: string, excludes: readonly string[]): boolean {
  for (const e of excludes) if (isWithin(rel, e)) return true
  return false
}

/** A local file's fingerprint in the sync base: what a pull records must equal what the next walk computes. */
export function fileFp(st: Stats): string {
  return `f:${st.size}:${Math.floor(st.mtimeMs)}:${st.mode & 0o777}`
}

/**
 * Walks `roots` (relative to base) on the local disk. Missing roots are skipped. `depth` 1 takes
 * each root and the entries directly in it (the early push's folders), nothing below.
 */
export function walkLocal(base: string, roots: readonly string[], excludes: readonly string[], depth = Infinity): Snapshot {
  return walk(base, roots, excludes, depth, () => true)!
}

/** A small tree's walk and the bytes of its files. */
export interface SmallTree {
  snap: Snapshot
  bytes: number
}

/**
 * walkLocal for a tree a tar copy can carry as rsync would, or null as soon as the tree is found to
 * be past `max` entries or file bytes, or to hold what the tar would lose where rsync copies it or
 * fails loudly: a name or link target that is not UTF-8 (node reads it with U+FFFD), a folder or
 * file this process cannot read (rsync fails on it; the tar writer would leave it out), a fifo,
 * socket or device (rsync -a copies fifos and sockets; the walk skips them).
 */
export function walkSmall(
  base: string,
  roots: readonly string[],
  excludes: readonly string[],
  max: { entries: number; bytes: number },
  access: (path: string, mode: number) => void = accessSync
): SmallTree | null {
  let entries = 0
  let bytes = 0
  const readable = (rel: string, mode: number): boolean => {
    try {
      access(`${base}/${rel}`, mode)
      return true
    } catch {
      return false
    }
  }
  const snap = walk(base, roots, excludes, Infinity, (rel, st) => {
    if (rel.includes('\uFFFD')) return false
    if (st === null) return true // gone since it was listed, or a root that is not there
    if (++entries > max.entries) return false
    if (st.isFile()) {
      bytes += st.size
      return bytes <= max.bytes && readable(rel, constants.R_OK)
    }
    if (st.isDirectory()) return readable(rel, constants.R_OK | constants.X_OK)
    return st.isSymbolicLink()
  })
  if (!snap) return null
  // A link's target is in its fingerprint (read once, by the walk).
  for (const n of snap.values()) if (n.t === 'l' && n.fp.includes('\uFFFD')) return null
  return { snap, bytes }
}

/** The walk; `see` false for an entry (null: one that could not be read) ends it, with null. */
function walk(
  base: string,
  roots: readonly string[],
  excludes: readonly string[],
  depth: number,
  see: (rel: string, st: Stats | null) => boolean
): Snapshot | null {
  const snap: Snapshot = new Map()
  let over = false
  const visit = (rel: string, level: number): void => {
    if (over || isExcluded(rel, excludes)) return
    let st: Stats | null = null
    try {
      st = lstatSync(`${base}/${rel}`)
    } catch {
      // gone, or named in bytes node cannot pass back: skipped (walkSmall gives up on the latter)
    }
    if (!see(rel, st)) {
      over = true
      return
    }
    if (!st) return
    if (st.isDirectory()) {
      snap.set(rel, { t: 'd', fp: 'd' })
      if (level >= depth) return
      let names: string[]
      try {
        names = readdirSync(`${base}/${rel}`)
      } catch {
        return
      }
      for (const n of names) visit(`${rel}/${n}`, level + 1)
    } else if (st.isSymbolicLink()) {
      snap.set(rel, { t: 'l', fp: `l:${readlinkSync(`${base}/${rel}`)}` })
    } else if (st.isFile()) {
      snap.set(rel, { t: 'f', fp: fileFp(st) })
    }
  }
  for (const r of roots) visit(r, 0)
  return over ? null : snap
}

/**
 * Remote listing command (GNU find): NUL-separated fields type, size, mtime, mode, link target, path.
 * Roots that do not exist are skipped silently.
 */
export function remoteFindScript(roots: readonly string[], excludes: readonly string[], quote: (s: string) => string): string {
  const prune = excludes.length ? `\\( ${excludes.map((e) => `-path ${quote(e)}`).join(' -o ')} \\) -prune -o ` : ''
  const fmt = quote('%y\\0%s\\0%T@\\0%m\\0%l\\0%p\\0')
  return roots
    .map((r) => `if [ -e ${quote(r)} ] || [ -L ${quote(r)} ]; then find ${quote(r)} ${prune}-printf ${fmt} || exit 1; fi`)
    .join('; ')
}

/** A listing's stamp file, beside the job folder's `w` (the folder a listing runs in), made fresh each time. */
const STAMP = '../.rch-list-stamp'
/** The folders a delta listing found changed, handed from its walk to the listing of their entries. */
const CHANGED = '../.rch-list-changed'
/** A delta listing's record types: a folder whose entries changed, and an entry of such a folder. */
export const CHANGED_DIR = 'd+'
const IN_CHANGED = '='

/**
 * The listing a pull reads: remoteFindScript's records, one walk for all roots, after a first field
 * that is the ctime of a file made just before the walk. That stamp comes from the clock the file
 * system stamps changes with, so a later listing can ask for what changed after it.
 *
 * `since` (seconds, from an earlier stamp) makes it a delta listing: every folder (those whose ctime
 * is after `since` typed `d+`), every other entry whose ctime is after `since`, then every entry but
 * folders directly in a `d+` folder, typed `=` + its type (so an entry added, removed or renamed
 * there is seen, and one that was not is not taken for a deletion). ctime moves with every change of
 * content, mode, mtime or name and cannot be set back by a tool, unlike mtime.
 */
export function remoteListScript(
  roots: readonly string[],
  excludes: readonly string[],
  quote: (s: string) => string,
  since: number | null
): string {
  const prune = excludes.length ? `\\( ${excludes.map((e) => `-path ${quote(e)}`).join(' -o ')} \\) -prune -o ` : ''
  const fields = '\\0%s\\0%T@\\0%m\\0%l\\0%p\\0'
  const fmt = quote(`%y${fields}`)
  // Roots that do not exist are skipped, as in remoteFindScript.
  const existing = `set -- && for r in ${roots.map(quote).join(' ')}; do if [ -e "$r" ] || [ -L "$r" ]; then set -- "$@" "$r"; fi; done`
  const stamp = `\\( -path "$s" -printf '%C@\\0' \\) -o `
  if (since === null)
    return `s=${STAMP}.$$ && ${existing} && : > "$s" && { find "$s" "$@" ${prune}${stamp}-printf ${fmt}; r=$?; rm -f "$s"; exit $r; }`
  if (!Number.isSafeInteger(since)) throw new Error(`not a listing time: ${since}`)
  const newer = `-newerct @${since}`
  // The changed folders go to a file a line each, but for a name with a newline in it: its entries
  // are not listed, and the pull lists everything again (sync.ts).
  const walk =
    `find "$s" "$@" ${prune}${stamp}` +
    `\\( -type d ${newer} -printf ${quote(`${CHANGED_DIR}${fields}`)} \\( -path ${quote('*\n*')} -o -fprintf "$c" '%p\\n' \\) \\) -o ` +
    `\\( -type d -printf ${fmt} \\) -o \\( ${newer} -printf ${fmt} \\)`
  const entries =
    `set -- && while IFS= read -r d; do set -- "$@" "$d"; done < "$c" && ` +
    `{ [ $# = 0 ] || find "$@" -mindepth 1 -maxdepth 1 ${prune}! -type d -printf ${quote(`${IN_CHANGED}%y${fields}`)}; }`
  return `s=${STAMP}.$$ c=${CHANGED}.$$ && ${existing} && : > "$s" && { ${walk} && ${entries}; r=$?; rm -f "$s" "$c"; exit $r; }`
}

export interface RemoteListing {
  /** Files, directories and symlinks. */
  snap: Snapshot
  /** Everything else (fifo, socket, device…) by find's type letter: never fetched, never deleted. */
  other: Map<string, string>
  /** remoteListScript's stamp (whole seconds, rounded down). */
  stamp?: number
  /** A delta listing's folders whose entries were all listed; what they no longer hold was deleted. */
  changedDirs?: Set<string>
}

export interface ListingRules {
  /** Every path must be one of these or under one. */
  roots: readonly string[]
  maxEntries: number
  /** A full tree walk: every path below a root comes after its parent, listed as a directory. */
  tree?: boolean
  /** remoteListScript's output: a stamp first. */
  stamped?: boolean
  /** remoteListScript's delta listing (implies tree and stamped). */
  delta?: boolean
}

const OTHER_TYPES = new Set(['p', 's', 'c', 'b', 'D'])
const SIZE = /^\d{1,20}$/
const STAMP_TIME = /^\d{1,12}(\.\d{1,10})?$/
const MTIME = /^-?\d{1,20}(\.\d{1,10})?$/
// ignoreBOM: a leading U+FEFF is part of a name, not a marker to drop (find never writes one).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** The type kept in `other` for an entry whose name or link target is not valid UTF-8. */
export const NOT_UTF8 = 'n'

/**
 * The listing as one string of NUL-separated fields; records (6 fields) with a field that is not
 * UTF-8 are flagged, not refused (such a field is decoded with replacement characters).
 */
function decodeFields(buf: Buffer): { text: string; notUtf8: Set<number> } {
  const notUtf8 = new Set<number>()
  try {
    return { text: utf8.decode(buf), notUtf8 }
  } catch {
    // rare: decode field by field
  }
  const parts: string[] = []
  let start = 0
  for (;;) {
    const end = buf.indexOf(0, start)
    const field = buf.subarray(start, end < 0 ? buf.length : end)
    try {
      parts.push(utf8.decode(field))
    } catch {
      notUtf8.add(Math.floor(parts.length / 6))
      parts.push(field.toString('utf8'))
    }
    if (end < 0) break
    start = end + 1
  }
  return { text: parts.join('\0'), notUtf8 }
}

/** A listing record's fields, in the order of the find format. */
const [F_TYPE, F_SIZE, F_MTIME, F_MODE, F_LINK, F_PATH] = [0, 1, 2, 3, 4, 5]

/** An octal mode of 1 to 5 digits as a number, or -1. */
function octalMode(text: string, from: number, to: number): number {
  if (to - from < 1 || to - from > 5) return -1
  let v = 0
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - 0x30
    if (d < 0 || d > 7) return -1
    v = v * 8 + d
  }
  return v
}

function listingError(what: string, n: number, path?: string): HookError {
  const where = path === undefined ? '' : ` ${JSON.stringify(path.slice(0, 200))}`
  return new HookError(`remote file listing: ${what} (entry ${n + 1}${where})`)
}

/**
 * Parses the listing strictly: it comes from a machine the job controls, so every field is checked
 * and anything malformed is an error rather than skipped (a skipped entry would read as a deletion).
 */
export function parseRemoteListing(buf: Buffer, rules: ListingRules): RemoteListing {
  if (!rules.stamped && !rules.delta) return parseRecords(buf, rules)
  const end = buf.indexOf(0)
  const stamp = buf.subarray(0, end < 0 ? buf.length : end).toString('latin1')
  if (end < 0 || !STAMP_TIME.test(stamp))
    throw new HookError(`remote file listing: no listing time at its start (${JSON.stringify(stamp.slice(0, 40))})`)
  const listing = parseRecords(buf.subarray(end + 1), { ...rules, tree: true })
  listing.stamp = Number(stamp.split('.')[0])
  return listing
}

function parseRecords(buf: Buffer, rules: ListingRules): RemoteListing {
  const snap: Snapshot = new Map()
  const other = new Map<string, string>()
  const changedDirs = rules.delta ? new Set<string>() : undefined
  if (buf.length === 0) return { snap, other, changedDirs }
  if (buf[buf.length - 1] !== 0) throw listingError('the last record is cut off', 0)
  const { text, notUtf8 } = decodeFields(buf.subarray(0, buf.length - 1))
  // Fields by position in the one string: no array of every field, and no string for a field
  // that is only checked (type, mode, an empty link target).
  let fields = 1
  for (let i = text.indexOf('\0'); i >= 0; i = text.indexOf('\0', i + 1)) fields++
  if (fields % 6 !== 0) throw listingError('the last record is cut off', Math.floor(fields / 6))
  const count = fields / 6
  if (count > rules.maxEntries)
    throw new HookError(`sync.limits.listingEntries: the remote listing has ${count} entries, over the limit of ${rules.maxEntries}`)
  /** The folder last found to be the parent of an entry (always a listed directory). */
  let lastDir = ''
  /** Past the walk, in the entries of the changed folders; the paths seen there. */
  let entriesPart = false
  const again = new Set<string>()
  // Where each of a record's six fields (F_TYPE…F_PATH) starts and ends; reused for every record.
  const from = new Int32Array(6)
  const to = new Int32Array(6)
  let pos = 0
  for (let n = 0; n < count; n++) {
    for (let f = 0; f < 6; f++) {
      const nul = text.indexOf('\0', pos)
      from[f] = pos
      to[f] = nul < 0 ? text.length : nul
      pos = to[f] + 1
    }
    const path = text.slice(from[F_PATH], to[F_PATH])
    let y = to[F_TYPE] - from[F_TYPE] === 1 ? text[from[F_TYPE]] : text.slice(from[F_TYPE], to[F_TYPE])
    // A delta listing's second part: the entries of its changed folders (see remoteListScript).
    const inChanged = changedDirs !== undefined && y.length === 2 && y[0] === '='
    if (inChanged) {
      y = y[1]
      if (y === 'd') throw listingError('a folder in the entries of a changed folder', n, path)
      entriesPart = true
    } else if (entriesPart) throw listingError('listed after the entries of the changed folders', n, path)
    const bad = badRelPath(path)
    if (bad) throw listingError(`bad path: ${bad}`, n, path)
    let root: string | undefined
    for (const r of rules.roots)
      if (isWithin(path, r)) {
        root = r
        break
      }
    if (root === undefined) throw listingError('path outside the requested folders', n, path)
    if (inChanged) {
      // The walk also lists an entry that changed itself; this later sight of it replaces that one.
      if (again.has(path) || snap.get(path)?.t === 'd') throw listingError('path listed twice', n, path)
      again.add(path)
      snap.delete(path)
      other.delete(path)
    } else if (snap.has(path) || other.has(path)) throw listingError('path listed twice', n, path)
    const size = text.slice(from[F_SIZE], to[F_SIZE])
    const mtime = text.slice(from[F_MTIME], to[F_MTIME])
    const mode = octalMode(text, from[F_MODE], to[F_MODE])
    if (!SIZE.test(size) || !MTIME.test(mtime) || mode < 0) throw listingError('malformed size, mtime or mode', n, path)
    if (y !== 'l' && to[F_LINK] !== from[F_LINK]) throw listingError('link target on something that is not a symlink', n, path)
    if (notUtf8.has(n)) {
      // Such a name cannot be written back as is: left alone on both sides, like a fifo.
      other.set(path, NOT_UTF8)
      continue
    }
    const cut = path.lastIndexOf('/')
    if (inChanged) {
      if (path === root || !changedDirs.has(path.slice(0, cut))) throw listingError('not in a changed folder', n, path)
    } else if (rules.tree && path !== root && !(cut === lastDir.length && path.startsWith(lastDir))) {
      // find lists a folder's entries together: most have the folder just checked as their parent.
      const parent = path.slice(0, cut)
      if (snap.get(parent)?.t !== 'd') throw listingError('listed before its folder', n, path)
      lastDir = parent
    }
    if (y === 'd' || (y === CHANGED_DIR && changedDirs)) {
      snap.set(path, { t: 'd', fp: 'd' })
      if (y === CHANGED_DIR) changedDirs!.add(path)
    } else if (y === 'l') {
      if (to[F_LINK] === from[F_LINK]) throw listingError('symlink without a target', n, path)
      snap.set(path, { t: 'l', fp: `l:${text.slice(from[F_LINK], to[F_LINK])}` })
    } else if (y === 'f') snap.set(path, { t: 'f', fp: `f:${size}:${mtime}:${mode}`, size: Number(size) })
    else if (OTHER_TYPES.has(y)) other.set(path, y)
    else throw listingError(`unknown type ${JSON.stringify(y.slice(0, 8))}`, n, path)
  }
  return { snap, other, changedDirs }
}
