// Snapshots of a tree on either side, as path → fingerprint. A changed fingerprint means the path
// must be copied; mtime+size is the same quick check rsync uses by default.
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs'
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
  return excludes.some((e) => rel === e || rel.startsWith(e + '/'))
}

/** A local file's fingerprint in the sync base: what a pull records must equal what the next walk computes. */
export function fileFp(st: Stats): string {
  return `f:${st.size}:${Math.floor(st.mtimeMs)}:${st.mode & 0o777}`
}

/** Walks `roots` (relative to base) on the local disk. Missing roots are skipped. */
export function walkLocal(base: string, roots: readonly string[], excludes: readonly string[]): Snapshot {
  const snap: Snapshot = new Map()
  const visit = (rel: string): void => {
    if (isExcluded(rel, excludes)) return
    let st
    try {
      st = lstatSync(`${base}/${rel}`)
    } catch {
      return
    }
    if (st.isDirectory()) {
      snap.set(rel, { t: 'd', fp: 'd' })
      let names: string[]
      try {
        names = readdirSync(`${base}/${rel}`)
      } catch {
        return
      }
      for (const n of names) visit(`${rel}/${n}`)
    } else if (st.isSymbolicLink()) {
      snap.set(rel, { t: 'l', fp: `l:${readlinkSync(`${base}/${rel}`)}` })
    } else if (st.isFile()) {
      snap.set(rel, { t: 'f', fp: fileFp(st) })
    }
  }
  for (const r of roots) visit(r)
  return snap
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

export interface RemoteListing {
  /** Files, directories and symlinks. */
  snap: Snapshot
  /** Everything else (fifo, socket, device…) by find's type letter: never fetched, never deleted. */
  other: Map<string, string>
}

export interface ListingRules {
  /** Every path must be one of these or under one. */
  roots: readonly string[]
  maxEntries: number
  /** A full tree walk: every path below a root comes after its parent, listed as a directory. */
  tree?: boolean
}

const OTHER_TYPES = new Set(['p', 's', 'c', 'b', 'D'])
const SIZE = /^\d{1,20}$/
const MTIME = /^-?\d{1,20}(\.\d{1,10})?$/
const MODE = /^[0-7]{1,5}$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The type kept in `other` for an entry whose name or link target is not valid UTF-8. */
export const NOT_UTF8 = 'n'

/** NUL-separated fields; records (6 fields) with a field that is not UTF-8 are flagged, not refused. */
function splitFields(buf: Buffer): { parts: string[]; notUtf8: Set<number> } {
  const notUtf8 = new Set<number>()
  try {
    return { parts: utf8.decode(buf).split('\0'), notUtf8 }
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
  return { parts, notUtf8 }
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
  const snap: Snapshot = new Map()
  const other = new Map<string, string>()
  if (buf.length === 0) return { snap, other }
  if (buf[buf.length - 1] !== 0) throw listingError('the last record is cut off', 0)
  const { parts, notUtf8 } = splitFields(buf.subarray(0, buf.length - 1))
  if (parts.length % 6 !== 0) throw listingError('the last record is cut off', Math.floor(parts.length / 6))
  const count = parts.length / 6
  if (count > rules.maxEntries)
    throw new HookError(`sync.limits.listingEntries: the remote listing has ${count} entries, over the limit of ${rules.maxEntries}`)
  for (let n = 0; n < count; n++) {
    const at = n * 6
    const y = parts[at]
    const size = parts[at + 1]
    const mtime = parts[at + 2]
    const mode = parts[at + 3]
    const link = parts[at + 4]
    const path = parts[at + 5]
    const bad = badRelPath(path)
    if (bad) throw listingError(`bad path: ${bad}`, n, path)
    let root: string | undefined
    for (const r of rules.roots)
      if (isWithin(path, r)) {
        root = r
        break
      }
    if (root === undefined) throw listingError('path outside the requested folders', n, path)
    if (snap.has(path) || other.has(path)) throw listingError('path listed twice', n, path)
    if (!SIZE.test(size) || !MTIME.test(mtime) || !MODE.test(mode)) throw listingError('malformed size, mtime or mode', n, path)
    if (y !== 'l' && link !== '') throw listingError('link target on something that is not a symlink', n, path)
    if (notUtf8.has(n)) {
      // Such a name cannot be written back as is: left alone on both sides, like a fifo.
      other.set(path, NOT_UTF8)
      continue
    }
    if (rules.tree && path !== root && snap.get(path.slice(0, path.lastIndexOf('/')))?.t !== 'd')
      throw listingError('listed before its folder', n, path)
    if (y === 'd') snap.set(path, { t: 'd', fp: 'd' })
    else if (y === 'l') {
      if (link === '') throw listingError('symlink without a target', n, path)
      snap.set(path, { t: 'l', fp: `l:${link}` })
    } else if (y === 'f') snap.set(path, { t: 'f', fp: `f:${size}:${mtime}:${parseInt(mode, 8)}`, size: Number(size) })
    else if (OTHER_TYPES.has(y)) other.set(path, y)
    else throw listingError(`unknown type ${JSON.stringify(y.slice(0, 8))}`, n, path)
  }
  return { snap, other }
}
