// Snapshots of a tree on either side, as path → fingerprint. A changed fingerprint means the path
// must be copied; mtime+size is the same quick check rsync uses by default.
import { lstatSync, readdirSync, readlinkSync } from 'node:fs'

export type Kind = 'f' | 'd' | 'l'
export interface Node {
  t: Kind
  fp: string
}
export type Snapshot = Map<string, Node>

export function isExcluded(rel: string, excludes: readonly string[]): boolean {
  return excludes.some((e) => rel === e || rel.startsWith(e + '/'))
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
      let names: string[] = []
      try {
        names = readdirSync(`${base}/${rel}`)
      } catch {
        return
      }
      for (const n of names) visit(`${rel}/${n}`)
    } else if (st.isSymbolicLink()) {
      snap.set(rel, { t: 'l', fp: `l:${readlinkSync(`${base}/${rel}`)}` })
    } else if (st.isFile()) {
      snap.set(rel, { t: 'f', fp: `f:${st.size}:${Math.floor(st.mtimeMs)}:${st.mode & 0o777}` })
    }
  }
  for (const r of roots) visit(r)
  return snap
}

export function localNode(base: string, rel: string): Node | null {
  return walkLocal(base, [rel], []).get(rel) ?? null
}

/**
 * Remote listing command (GNU find): NUL-separated fields type, size, mtime, mode, link target, path.
 * Roots that do not exist are skipped silently.
 */
export function remoteFindScript(roots: readonly string[], excludes: readonly string[], quote: (s: string) => string): string {
  const prune = excludes.length ? `\\( ${excludes.map((e) => `-path ${quote(e)}`).join(' -o ')} \\) -prune -o ` : ''
  const fmt = quote('%y\\0%s\\0%T@\\0%m\\0%l\\0%p\\0')
  return roots.map((r) => `if [ -e ${quote(r)} ] || [ -L ${quote(r)} ]; then find ${quote(r)} ${prune}-printf ${fmt} || exit 1; fi`).join('; ')
}

export function parseRemoteListing(buf: Buffer): Snapshot {
  const snap: Snapshot = new Map()
  const parts = buf.toString('utf8').split('\0')
  for (let i = 0; i + 5 < parts.length; i += 6) {
    const [y, size, mtime, mode, link, path] = parts.slice(i, i + 6)
    if (y === 'd') snap.set(path, { t: 'd', fp: 'd' })
    else if (y === 'l') snap.set(path, { t: 'l', fp: `l:${link}` })
    else if (y === 'f') snap.set(path, { t: 'f', fp: `f:${size}:${mtime}:${parseInt(mode, 8)}` })
  }
  return snap
}
