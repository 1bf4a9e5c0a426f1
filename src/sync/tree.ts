// Snapshots of a tree on either side, as path → fingerprint. A changed fingerprint means the path
// must be copied; mtime+size is the same quick check rsync uses by default.
import { accessSync, constants, lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs'
import { HookError } from '../errors'
import { badRelPath, isWithin, readFailure } from './safe-fs'

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
    } catch (e) {
      // gone, or named in bytes node cannot pass back: skipped (walkSmall gives up on the latter)
      const failed = readFailure(`${base}/${rel}`, e)
      if (failed) throw failed
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
      } catch (e) {
        const failed = readFailure(`${base}/${rel}`, e)
        if (failed) throw failed
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

/** A find -path pattern that matches `p` only (excludes are prefixes, not patterns). */
const exactPath = (p: string): string => p.replace(/[[\]*?\\]/g, (c) => `\\${c}`)

/** find -printf fields after the type: size, mtime, mode, link target, path (NUL-separated). */
const FIELDS = '\\0%s\\0%T@\\0%m\\0%l\\0%p\\0'

/** The find expression that skips the excluded paths, and all below them. */
function pruneOf(excludes: readonly string[], quote: (s: string) => string): string {
  return excludes.length ? `\\( ${excludes.map((e) => `-path ${quote(exactPath(e))}`).join(' -o ')} \\) -prune -o ` : ''
}

/**
 * Remote listing command (GNU find): NUL-separated fields type, size, mtime, mode, link target, path.
 * Roots that do not exist are skipped silently.
 */
export function remoteFindScript(roots: readonly string[], excludes: readonly string[], quote: (s: string) => string): string {
  const prune = pruneOf(excludes, quote)
  const fmt = quote(`%y${FIELDS}`)
  return roots
    .map((r) => `if [ -e ${quote(r)} ] || [ -L ${quote(r)} ]; then find ${quote(r)} ${prune}-printf ${fmt} || exit 1; fi`)
    .join('; ')
}

/** A listing's stamp file, beside the job folder's `w` (the folder a listing runs in), made fresh each time. */
const STAMP = '../.rch-list-stamp'
/** The folders a delta listing found changed, handed from its walk to the listing of their entries. */
const CHANGED = '../.rch-list-changed'
/** A delta listing's record types: a folder whose entries changed, an entry of such a folder, the end. */
export const CHANGED_DIR = 'd+'
const IN_CHANGED = '='
const TRAILER = '#'
/** Past this many changed folders a delta listing leaves their entries out (the pull lists everything). */
export const MAX_CHANGED_DIRS = 256

/**
 * The listing a pull reads: remoteFindScript's records, one walk for all roots, after two fields:
 * the VM's uptime (a clock that is never set) and the ctime of a file made just before the walk.
 * That stamp comes from the clock the file system stamps changes with, so a later listing can ask
 * for what changed after it; the uptime tells whether that clock was set back meanwhile. A folder's
 * record carries `device:inode` in the link field: a folder at a known path that is another folder
 * (a tree moved over it) is told apart.
 *
 * `since` (seconds, from an earlier stamp) makes it a delta listing: every folder (those whose ctime
 * is after `since` typed `d+`), every root, every other entry whose ctime is after `since`, then
 * every entry but folders directly in a `d+` folder, typed `=` + its type (so an entry added, removed
 * or renamed there is seen, and one that was not is not taken for a deletion), then a trailer with
 * the number of changed folders whose entries it listed (`-`: none, there were too many). ctime moves
 * with every change of content, mode, mtime or name and cannot be set back by a tool, unlike mtime.
 */
export function remoteListScript(
  roots: readonly string[],
  excludes: readonly string[],
  quote: (s: string) => string,
  since: number | null
): string {
  const prune = pruneOf(excludes, quote)
  const fmt = quote(`%y${FIELDS}`)
  const dirFields = '\\0%s\\0%T@\\0%m\\0%D:%i\\0%p\\0'
  // Roots that do not exist are skipped, as in remoteFindScript.
  const existing = `set -- && for r in ${roots.map(quote).join(' ')}; do if [ -e "$r" ] || [ -L "$r" ]; then set -- "$@" "$r"; fi; done`
  const head =
    // The stamp is made by mktemp (O_EXCL: never a FIFO, folder or link the job planted at a name it
    // could guess). Without room for it (a full disk), the job folder stands in: an old time, so the
    // next listing reaches back further, and it is never removed. No `: >`: a failed redirection of
    // a special built-in like `:` ends a POSIX shell (dash, bash as sh) instead of failing it.
    `c= && ${existing} && { s=$(mktemp ${STAMP}.XXXXXX) && k=$s || { s=.. k=; }; } 2>/dev/null && ` +
    `{ up=; read -r up _ < /proc/uptime; } 2>/dev/null; printf '%s\\0' "\${up:-?}" && `
  const stamp = `\\( -path "$s" -printf '%C@\\0' -prune \\) -o `
  const end = `r=$?; rm -f $k $c; exit $r; }`
  if (since === null)
    return `${head}{ find "$s" "$@" ${prune}${stamp}\\( -type d -printf ${quote(`d${dirFields}`)} \\) -o -printf ${fmt}; ${end}`
  if (!Number.isSafeInteger(since)) throw new Error(`not a listing time: ${since}`)
  const newer = `-newerct @${since}`
  const rootPaths = roots.map((r) => `-path ${quote(exactPath(r))}`).join(' -o ')
  // The changed folders go to a file a line each, but for a name with a newline in it: its entries
  // are not listed, and the pull lists everything again (sync.ts). The file is made by mktemp, as the
  // stamp is (find's -fprintf would open a FIFO planted at a guessable name and wait on it); without
  // room for it the delta listing fails, and a full one is made.
  const walk =
    `c=$(mktemp ${CHANGED}.XXXXXX) && find "$s" "$@" ${prune}${stamp}` +
    `\\( -type d ${newer} -printf ${quote(`${CHANGED_DIR}${dirFields}`)} \\( -path ${quote('*\n*')} -o -fprintf "$c" '%p\\n' \\) \\) -o ` +
    `\\( -type d -printf ${quote(`d${dirFields}`)} \\) -o \\( ${newer} -printf ${fmt} \\) -o \\( \\( ${rootPaths} \\) -printf ${fmt} \\)`
  // A folder gone since the walk is not asked for (its entries read as deleted, as they are); the
  // trailer counts what was read, so a list cut short (a full disk) is noticed.
  const entries =
    `n=0 && set -- && while IFS= read -r d; do n=$((n + 1)); [ $n -le ${MAX_CHANGED_DIRS} ] || break; if [ -d "$d" ]; then set -- "$@" "$d"; fi; done < "$c" && ` +
    `if [ $n -gt ${MAX_CHANGED_DIRS} ]; then printf '${TRAILER}\\0-\\0\\0\\0\\0\\0'; else ` +
    `{ [ $# = 0 ] || find "$@" -mindepth 1 -maxdepth 1 ${prune}! -type d -printf ${quote(`${IN_CHANGED}%y${FIELDS}`)}; } && ` +
    `printf '${TRAILER}\\0%s\\0\\0\\0\\0\\0' "$n"; fi`
  return `${head}{ ${walk} && ${entries}; ${end}`
}

export interface RemoteListing {
  /** Files, directories and symlinks. */
  snap: Snapshot
  /** Everything else (fifo, socket, device…) by find's type letter: never fetched, never deleted. */
  other: Map<string, string>
  /** remoteListScript's stamp (seconds), and the VM's uptime then (null: unknown). */
  stamp?: number
  up?: number | null
  /** A delta listing's folders whose entries were all listed; what they no longer hold was deleted. */
  changedDirs?: Set<string>
  /** Why a delta listing cannot be relied on (its changed folders' entries are not all there). */
  partial?: string
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
const UPTIME = /^(\?|\d{1,12}(\.\d{1,10})?)$/
/** A folder's `device:inode` in a stamped listing. */
const DIR_ID = /^\d{1,20}:\d{1,20}$/
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
  // Two fields first: the uptime and the stamp (remoteListScript).
  const first = buf.indexOf(0)
  const second = first < 0 ? -1 : buf.indexOf(0, first + 1)
  const up = buf.subarray(0, Math.max(first, 0)).toString('latin1')
  const stamp = second < 0 ? '' : buf.subarray(first + 1, second).toString('latin1')
  if (second < 0 || !UPTIME.test(up) || !STAMP_TIME.test(stamp))
    throw new HookError(`remote file listing: no listing time at its start (${JSON.stringify(buf.subarray(0, 40).toString('latin1'))})`)
  const listing = parseRecords(buf.subarray(second + 1), { ...rules, tree: true, stamped: true })
  listing.stamp = Number(stamp)
  listing.up = up === '?' ? null : Number(up)
  return listing
}

function parseRecords(buf: Buffer, rules: ListingRules): RemoteListing {
  const snap: Snapshot = new Map()
  const other = new Map<string, string>()
  const changedDirs = rules.delta ? new Set<string>() : undefined
  if (buf.length === 0) {
    if (changedDirs) throw listingError('no trailer', 0)
    return { snap, other }
  }
  if (buf[buf.length - 1] !== 0) throw listingError('the last record is cut off', 0)
  const body = buf.subarray(0, buf.length - 1)
  // Counted in the bytes, before anything is decoded (a NUL is a NUL either way): a listing of
  // hundreds of millions of fields, one of them not UTF-8, is refused by its count, not decoded
  // field by field into an array of them all. Counting stops well past the limit.
  const countTo = 2 * (rules.maxEntries + 1) * 6
  let fields = 1
  for (let i = body.indexOf(0); i >= 0 && fields <= countTo; i = body.indexOf(0, i + 1)) fields++
  if (fields > rules.maxEntries * 6) {
    const has = fields > countTo ? `more than ${2 * rules.maxEntries}` : `${Math.ceil(fields / 6)}`
    throw new HookError(`sync.limits.listingEntries: the remote listing has ${has} entries, over the limit of ${rules.maxEntries}`)
  }
  if (fields % 6 !== 0) throw listingError('the last record is cut off', Math.floor(fields / 6))
  const count = fields / 6
  // Fields by position in the one string: no array of every field, and no string for a field
  // that is only checked (type, mode, an empty link target).
  const { text, notUtf8 } = decodeFields(body)
  /** The folder last found to be the parent of an entry (always a listed directory). */
  let lastDir = ''
  /** Past the walk, in the entries of the changed folders; the paths seen there. */
  let entriesPart = false
  const again = new Set<string>()
  /** Changed folders whose entries the script was to list (not those with a newline in the name). */
  let toList = 0
  let partial: string | undefined
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
    if (changedDirs && n === count - 1) {
      // The trailer: how many changed folders' entries were listed ('-': none, too many).
      const listed = text.slice(from[F_SIZE], to[F_SIZE])
      const empty = (f: number): boolean => from[f] === to[f]
      if (y !== TRAILER || path !== '' || !(listed === '-' || SIZE.test(listed)) || !empty(F_MTIME) || !empty(F_MODE) || !empty(F_LINK))
        throw listingError('no trailer', n)
      if (listed === '-') partial = `more than ${MAX_CHANGED_DIRS} folders changed`
      else if (Number(listed) !== toList) partial = `${listed} of the ${toList} changed folders were read back`
      break
    }
    // A delta listing's second part: the entries of its changed folders (see remoteListScript).
    const inChanged = changedDirs !== undefined && y.length === 2 && y[0] === IN_CHANGED
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
    const isDir = y === 'd' || (y === CHANGED_DIR && changedDirs !== undefined)
    if (!isDir && y !== 'f' && y !== 'l' && !OTHER_TYPES.has(y))
      throw listingError(`unknown type ${JSON.stringify(y.slice(0, 8))}`, n, path)
    const link = text.slice(from[F_LINK], to[F_LINK])
    if (isDir && rules.stamped ? !DIR_ID.test(link) : y !== 'l' && link !== '')
      throw listingError(isDir ? 'a folder without its device and inode' : 'link target on something that is not a symlink', n, path)
    const cut = path.lastIndexOf('/')
    if (inChanged && (path === root || !changedDirs.has(path.slice(0, cut)))) throw listingError('not in a changed folder', n, path)
    if (y === CHANGED_DIR && changedDirs) {
      changedDirs.add(path)
      if (path.includes('\n')) partial = 'a changed folder has a newline in its name'
      else toList++
    }
    if (notUtf8.has(n)) {
      // Such a name cannot be written back as is: left alone on both sides, like a fifo.
      other.set(path, NOT_UTF8)
      continue
    }
    if (!inChanged && rules.tree && path !== root && !(cut === lastDir.length && path.startsWith(lastDir))) {
      // find lists a folder's entries together: most have the folder just checked as their parent.
      const parent = path.slice(0, cut)
      if (snap.get(parent)?.t !== 'd') throw listingError('listed before its folder', n, path)
      lastDir = parent
    }
    if (isDir) snap.set(path, { t: 'd', fp: rules.stamped ? `d:${link}` : 'd' })
    else if (y === 'l') {
      if (link === '') throw listingError('symlink without a target', n, path)
      snap.set(path, { t: 'l', fp: `l:${link}` })
    } else if (y === 'f') snap.set(path, { t: 'f', fp: `f:${size}:${mtime}:${mode}`, size: Number(size) })
    else other.set(path, y)
  }
  return { snap, other, changedDirs, partial }
}
