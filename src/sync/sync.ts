// Incremental two-way sync between the runner's `_work` and the job folder on the remote, used
// around every step. One round trip pushes (deletions + a tar of changed files) and returns the
// remote listing; one lists remote changes after the step and, only if there are any, one more
// pulls them as a tar. The first, bulk copy in prepare_job uses rsync (see rsync.ts).
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { TransportError, HookError } from '../errors'
import { check, type Remote } from '../remote/remote'
import { shq } from '../remote/quote'
import { requireTool, TOOL_ENV } from '../tools'
import { loadBase, saveBase, underRoots, type Base, type BaseEntry } from './manifest'
import { isExcluded, localNode, parseRemoteListing, remoteFindScript, walkLocal, type Snapshot } from './tree'

export interface SyncTarget {
  remote: Remote
  hostWork: string
  remoteWork: string
  manifestFile: string
  excludes: readonly string[]
  /** Non-fatal problems (e.g. files the SSH user cannot read on the remote). */
  warn?: (msg: string) => void
}

export interface SyncStats {
  files: number
  bytes: number
  deleted: number
  ms: number
}

/** Drops children of deleted directories: removing the directory covers them. */
function topmost(paths: string[]): string[] {
  const sorted = [...paths].sort()
  const out: string[] = []
  for (const p of sorted) if (!out.some((d) => p.startsWith(d + '/'))) out.push(p)
  return out
}

function changedPaths(now: Snapshot, base: Base, side: 'l' | 'r'): string[] {
  const out: string[] = []
  for (const [p, n] of now) {
    const b = base.get(p)
    if (!b || b.t !== n.t || (n.t !== 'd' && b[side] !== n.fp)) out.push(p)
  }
  return out
}

function deletedPaths(now: Snapshot, base: Base, roots: readonly string[], excludes: readonly string[]): string[] {
  const out: string[] = []
  for (const p of base.keys()) if (underRoots(p, roots) && !now.has(p) && !isExcluded(p, excludes)) out.push(p)
  return topmost(out)
}

/**
 * Copies src into dst with backpressure, and keeps src flowing once dst is gone (a tar that stopped
 * reading at its end-of-archive blocks), so an SSH channel is always read to its end and closes.
 * With pipe() instead, a step now and then hung in the pull with both tars finished (4 of 27 EC2
 * test runs; none in 28 since).
 */
export function forward(src: NodeJS.ReadableStream & { pause(): void; resume(): void }, dst: NodeJS.WritableStream, onChunk: (n: number) => void = () => undefined): void {
  let open = true
  const drop = (): void => {
    open = false
    src.resume()
  }
  dst.on('error', drop)
  dst.on('close', drop)
  src.on('data', (c: Buffer) => {
    onChunk(c.length)
    if (open && !dst.write(c)) {
      src.pause()
      dst.once('drain', () => src.resume())
    }
  })
  src.on('end', () => void (open && dst.end()))
}

/** Local `tar` as a child process (GNU tar on the runner host, never one found on the job's PATH). */
function localTar(args: string[], cwd: string): ReturnType<typeof spawn> {
  return spawn(requireTool('tar'), args, { cwd, stdio: ['pipe', 'pipe', 'pipe'], env: { ...TOOL_ENV } })
}

function waitChild(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  let err = ''
  child.stderr?.on('data', (c) => (err = (err + c).slice(-2000)))
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new HookError(`${what}: ${e.message}`)))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new HookError(`${what} exited ${code}: ${err.trim()}`))))
  })
}

/**
 * What the remote has for the paths just sent: those paths alone when they are few (a step usually
 * sends a handful of files; listing all of _actions every step would cost more than the copy).
 */
function listSent(sent: string[], roots: readonly string[], excludes: readonly string[]): string {
  if (sent.length === 0 || sent.length > 256) return remoteFindScript(roots, excludes, shq)
  return `find ${sent.map((p) => shq(p)).join(' ')} -maxdepth 0 -printf ${shq('%y\\0%s\\0%T@\\0%m\\0%l\\0%p\\0')} 2>/dev/null; true`
}

/** Pushes local changes under `roots` to the remote. */
export async function push(t: SyncTarget, roots: readonly string[]): Promise<SyncStats> {
  const started = Date.now()
  const base = loadBase(t.manifestFile)
  const local = walkLocal(t.hostWork, roots, t.excludes)
  const send = changedPaths(local, base, 'l')
  const del = deletedPaths(local, base, roots, t.excludes)
  if (send.length === 0 && del.length === 0) return { files: 0, bytes: 0, deleted: 0, ms: Date.now() - started }

  const delList = Buffer.from(del.map((p) => p + '\0').join(''))
  let bytes = 0
  const cmd =
    `cd ${shq(t.remoteWork)} && IFS= read -r n && ` +
    `{ [ "$n" = 0 ] || dd ibs=1 count="$n" 2>/dev/null | xargs -0 -r rm -rf --; } && ` +
    `tar -x -f - && { ${listSent(send, roots, t.excludes)}; }`
  const ch = await t.remote.openExec(cmd)
  const out: Buffer[] = []
  let errTail = ''
  ch.stdout.on('data', (c: Buffer) => out.push(c))
  ch.stderr.on('data', (c: Buffer) => (errTail = (errTail + c).slice(-2000)))
  ch.stdin.on('error', () => undefined)
  ch.stdin.write(`${delList.length}\n`)
  if (delList.length) ch.stdin.write(delList)
  const tar = localTar(['-c', '-f', '-', '--no-recursion', '--ignore-failed-read', '--null', '-T', '-'], t.hostWork)
  tar.stdin!.end(send.map((p) => p + '\0').join(''))
  forward(tar.stdout!, ch.stdin, (n) => (bytes += n))
  const [, status] = await Promise.all([waitChild(tar, 'local tar (sync to remote)'), ch.done])
  if (status.code === null) throw new TransportError('connection lost while syncing files to the remote')
  if (status.code !== 0) throw new HookError(`sync to remote failed (exit ${status.code}): ${errTail.trim().split('\n').slice(-2).join(' | ')}`)
  const remote = parseRemoteListing(Buffer.concat(out))
  const set = new Map<string, BaseEntry>()
  for (const p of send) {
    const l = local.get(p)!
    const r = remote.get(p)
    if (r && r.t === l.t) set.set(p, { t: l.t, l: l.fp, r: r.fp })
  }
  const remove = new Set<string>()
  for (const p of base.keys()) if (del.some((d) => p === d || p.startsWith(d + '/'))) remove.add(p)
  saveBase(t.manifestFile, { set, remove })
  return { files: send.filter((p) => local.get(p)!.t === 'f').length, bytes, deleted: del.length, ms: Date.now() - started }
}

/** Pulls remote changes under `roots` back to the host, deletions included. */
export async function pull(t: SyncTarget, roots: readonly string[]): Promise<SyncStats> {
  const started = Date.now()
  const listing = await check(t.remote, `cd ${shq(t.remoteWork)} && { ${remoteFindScript(roots, t.excludes, shq)}; }`, {
    collect: true,
    label: 'remote file listing'
  })
  const remote = parseRemoteListing(listing.stdout)
  const base = loadBase(t.manifestFile)
  const fetch = changedPaths(remote, base, 'r').filter((p) => !isExcluded(p, t.excludes))
  const del = deletedPaths(remote, base, roots, t.excludes)
  let bytes = 0
  if (fetch.length) {
    const tar = localTar(['-x', '-f', '-', '--no-same-owner', '--delay-directory-restore'], t.hostWork)
    const ch = await t.remote.openExec(`cd ${shq(t.remoteWork)} && tar -c -f - --no-recursion --ignore-failed-read --null -T -`)
    let errTail = ''
    ch.stderr.on('data', (c: Buffer) => (errTail = (errTail + c).slice(-2000)))
    forward(ch.stdout, tar.stdin!, (n) => (bytes += n))
    ch.stdin.end(fetch.map((p) => p + '\0').join(''))
    const [status] = await Promise.all([ch.done, waitChild(tar, 'local tar (sync from remote)')])
    if (status.code === null) throw new TransportError('connection lost while syncing files back from the remote')
    if (status.code !== 0) throw new HookError(`sync from remote failed (exit ${status.code}): ${errTail.trim().split('\n').slice(-2).join(' | ')}`)
    if (errTail.trim()) t.warn?.(`some files could not be read on the remote: ${errTail.trim().split('\n').slice(0, 3).join(' | ')}`)
  }
  for (const p of del) rmSync(`${t.hostWork}/${p}`, { recursive: true, force: true })
  const set = new Map<string, BaseEntry>()
  for (const p of fetch) {
    const r = remote.get(p)!
    const l = localNode(t.hostWork, p)
    if (l && l.t === r.t) set.set(p, { t: r.t, l: l.fp, r: r.fp })
  }
  const remove = new Set<string>()
  for (const p of base.keys()) if (del.some((d) => p === d || p.startsWith(d + '/'))) remove.add(p)
  saveBase(t.manifestFile, { set, remove })
  return { files: fetch.filter((p) => remote.get(p)!.t === 'f').length, bytes, deleted: del.length, ms: Date.now() - started }
}

/** Records both sides as equal after a bulk copy (rsync) of `roots`. */
export async function recordBase(t: SyncTarget, roots: readonly string[], localSnapshot?: Snapshot): Promise<void> {
  const listing = await check(t.remote, `cd ${shq(t.remoteWork)} && { ${remoteFindScript(roots, t.excludes, shq)}; }`, {
    collect: true,
    label: 'remote file listing'
  })
  const remote = parseRemoteListing(listing.stdout)
  const local = localSnapshot ?? walkLocal(t.hostWork, roots, t.excludes)
  const set = new Map<string, BaseEntry>()
  for (const [p, l] of local) {
    const r = remote.get(p)
    if (r && r.t === l.t) set.set(p, { t: l.t, l: l.fp, r: r.fp })
  }
  saveBase(t.manifestFile, { set, remove: new Set() })
}
