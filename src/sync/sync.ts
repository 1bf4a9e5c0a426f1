// Incremental two-way sync between the runner's `_work` and the job folder on the remote, used
// around every step. One round trip pushes (deletions + a tar of changed files) and returns the
// remote listing; one lists remote changes after the step and, only if there are any, one more
// pulls them as a tar. The first, bulk copy in prepare_job is a tar over the connection for a small
// tree, else rsync (see first-copy.ts and rsync.ts).
// The VM is untrusted (the job is root there): what comes back is parsed and checked here, written
// only through safe-fs.ts, and capped by sync.limits.
import { dirname, isAbsolute } from 'node:path'
import { Cancelled, TransportError, HookError } from '../errors'
import { check, dropped, endedOrClosed, exitOf, OutputLimitError, stopper, type ExecChannel, type Remote } from '../remote/remote'
import { shq } from '../remote/quote'
import { holdLock } from '../remote/plain-file'
import {
  earliest,
  listingTimes,
  loadBase,
  recordSince,
  reservePull,
  saveBase,
  underRoots,
  UNSURE,
  type Base,
  type BaseEntry,
  type ListingTime,
  type ListingTimes
} from './manifest'
import {
  fileFp,
  isExcluded,
  NOT_UTF8,
  parseRemoteListing,
  remoteFindScript,
  remoteListScript,
  walkLocal,
  type Node,
  type RemoteListing,
  type Snapshot
} from './tree'
import { checkNamesDistinct, isWithin, SafeTree, type FileWriter } from './safe-fs'
import { TarReader, type TarEntry } from './untar'
import { tarOf } from './tar-writer'
import { lineTail } from '../line-tail'
import { whenAborted } from '../retry'
import { withFileLock } from '../file-lock'
import { FewWarnings } from './few-warnings'

export interface SyncLimits {
  stepBytes: number
  stepFiles: number
  jobBytes: number
  jobFiles: number
  listingEntries: number
  listingBytes: number
  fileCommandBytes: number
}

/** Used when a caller gives none (the config's defaults are the real ones). */
const NO_LIMITS: SyncLimits = {
  stepBytes: Number.MAX_SAFE_INTEGER,
  stepFiles: Number.MAX_SAFE_INTEGER,
  jobBytes: Number.MAX_SAFE_INTEGER,
  jobFiles: Number.MAX_SAFE_INTEGER,
  listingEntries: Number.MAX_SAFE_INTEGER,
  listingBytes: 256 * 1024 * 1024,
  fileCommandBytes: Number.MAX_SAFE_INTEGER
}

export interface SyncTarget {
  remote: Remote
  hostWork: string
  remoteWork: string
  manifestFile: string
  excludes: readonly string[]
  limits?: SyncLimits
  /** Non-fatal problems (e.g. files the SSH user cannot read on the remote). */
  warn?: (msg: string) => void
  /** A cancel closes the transfer and fails it at once (a hostile VM may stream for ever). */
  signal?: AbortSignal
  /** Pulls list only what changed on the remote since the last listing (sync.deltaListing). */
  deltaListing?: boolean
  /**
   * The lock every hook command that reads or writes this `_work` takes (treeLockOf): two
   * container actions without state of one job have job folders of their own, and one `_work`.
   * Without it, one beside the manifest.
   */
  treeLock?: string
}

export interface SyncStats {
  files: number
  bytes: number
  deleted: number
  ms: number
  /** A pull's listing: of the changes since the last one, or of everything. */
  listed?: 'changes' | 'all'
  /** Why a pull listed everything although it could have listed only the changes. */
  why?: string
}

/** A first copy's base: the remote has nothing yet. */
const NO_BASE: Base = new Map()

/** How long a hook command waits for another one of its job to be done with the job's tree. */
const HOST_TREE_WAIT_MS = 24 * 3600_000

/**
 * Runs `fn` while no other hook command of the job reads or writes the job's tree on the runner
 * host. Background steps run hook commands of one job at once, and the tree's checks (each folder
 * looked at once per pull, the last name of a pushed file opened without following a link) hold
 * only while nothing else changes the tree: a pull that turned a folder another pull had already
 * looked at into a link (the VM times both streams) led that pull's writes out of `_work`, and a
 * push's reads with them. Commands of one process wait for each other as for another process's.
 */
async function onHostTree<T>(t: SyncTarget, fn: () => Promise<T>): Promise<T> {
  const lock = t.treeLock ?? `${dirname(t.manifestFile)}/host-tree.lock`
  // A private local folder, never a relative one: the hook runs in /.
  if (!isAbsolute(lock)) throw new HookError(`sync: no job folder to hold the lock on the job's files (${JSON.stringify(lock)})`)
  let inside = false
  try {
    return await withFileLock(
      lock,
      () => {
        inside = true
        return fn()
      },
      HOST_TREE_WAIT_MS,
      // Its holders are this runner's own hook commands and agents, all in the runner's pid
      // namespace: one from another namespace was left by the runner's earlier life (its container
      // restarted) and is dead. Never broken, it held every later job of this _work for 24 h.
      { signal: t.signal, what: "the job's lock on its files on the runner host", foreignStaleMs: 0 }
    )
  } catch (e) {
    // Given up on while waiting for the lock: the step's cancel. What the work itself threw is its own.
    if (!inside && t.signal?.aborted && !(e instanceof Cancelled)) throw Cancelled.by(t.signal)
    throw e
  }
}

/**
 * Opens a channel unless `t`'s signal fires first. Not waited for after that: the job's lock on its
 * tree may be held, and a VM (root there can serve its own SSH port) may never open the channel. A
 * channel that opens later is shut.
 */
async function openRaced(t: SyncTarget, command: string): Promise<ExecChannel> {
  const opening = t.remote.openExec(command)
  const shut = (c: ExecChannel): void => {
    c.stdin.destroy()
    c.stdout.destroy()
  }
  const ch = await Promise.race([opening, ...(t.signal ? [whenAborted(t.signal)] : [])]).catch((e: unknown) => {
    if (!t.signal?.aborted) throw e
    opening.then(shut, () => undefined)
    throw Cancelled.by(t.signal)
  })
  if (t.signal?.aborted) {
    shut(ch)
    throw Cancelled.by(t.signal)
  }
  return ch
}

/**
 * Whether a folder above a path is in `set`. Each folder is answered once, from its parent's
 * answer, however many paths lie under it: looking up every ancestor of every path cost the
 * square of the depth (a tree 2,000 folders deep, which the VM chooses, made each path 2,000
 * lookups of keys up to 4 KB, the agent blocked for minutes).
 */
function aboveIn(set: ReadonlySet<string>): (p: string) => boolean {
  const folders = new Map<string, boolean>()
  // A stack, not recursion: paths may be thousands of folders deep.
  return (p) => {
    const todo: string[] = []
    let answer = false
    for (let d = parentOf(p); d !== null; d = parentOf(d)) {
      const known = folders.get(d)
      if (known !== undefined) {
        answer = known
        break
      }
      if (set.has(d)) {
        answer = true
        folders.set(d, true)
        break
      }
      todo.push(d)
    }
    for (const d of todo) folders.set(d, answer)
    return answer
  }
}

const parentOf = (p: string): string | null => {
  const i = p.lastIndexOf('/')
  return i > 0 ? p.slice(0, i) : null
}

/** Drops children of deleted directories: removing the directory covers them. */
function topmost(paths: string[]): string[] {
  const covered = aboveIn(new Set(paths))
  return paths.filter((p) => !covered(p)).sort()
}

/**
 * The base's paths that deleting `del` removes: each and what is under it. Linear in the base: a
 * step that deleted a file in each of many folders has as many deletions as the base has entries.
 */
export function removedByDeletions(base: Base, del: readonly string[]): Set<string> {
  const gone = new Set(del)
  const covered = aboveIn(gone)
  const out = new Set<string>()
  if (gone.size) for (const p of base.keys()) if (gone.has(p) || covered(p)) out.add(p)
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

function deletedPaths(
  now: Snapshot,
  base: Base,
  roots: readonly string[],
  excludes: readonly string[],
  only: (p: string) => boolean = () => true
): string[] {
  const out: string[] = []
  for (const p of base.keys()) if (underRoots(p, roots) && !now.has(p) && !isExcluded(p, excludes) && only(p)) out.push(p)
  return topmost(out)
}

/**
 * Copies src into dst with backpressure, and keeps src flowing once dst is gone (a tar that stopped
 * reading at its end-of-archive blocks), so an SSH channel is always read to its end and closes.
 * With pipe() instead, a step now and then hung in the pull with both tars finished (4 of 27 EC2
 * test runs; none in 28 since).
 */
export function forward(
  src: NodeJS.ReadableStream & { pause(): void; resume(): void },
  dst: NodeJS.WritableStream,
  onChunk: (n: number) => void = () => undefined
): void {
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

/**
 * What the remote has for the paths just sent: those paths alone when they are few (a step usually
 * sends a handful of files; listing all of _actions every step would cost more than the copy).
 */
function listSent(sent: string[], roots: readonly string[], excludes: readonly string[]): string {
  // Only the sent paths are read from it: none sent, nothing to list.
  if (sent.length === 0) return 'true'
  // Roots inside other roots (an early push's folders) would be listed twice.
  if (sent.length > 256) return remoteFindScript(topmost([...roots]), excludes, shq)
  return `find ${sent.map((p) => shq(p)).join(' ')} -maxdepth 0 -printf ${shq('%y\\0%s\\0%T@\\0%m\\0%l\\0%p\\0')} 2>/dev/null; true`
}

/**
 * How long a push waits for the one before it: a push the hook gave up on ends at its next read of
 * the closed channel, so only a job holding the lock itself (it is root on the VM) waits this long.
 */
const PUSH_LOCK_WAIT = 60

/**
 * The push's remote command, run in `remoteWork` (the job folder's `w`). Its stdin: the byte length
 * of the deletion list, a newline, the list (NUL-terminated paths), then the tar.
 * - umask 077 and --no-same-permissions: the job's files are not readable by other users of the VM.
 * - The list is read whole into a file in the job folder first: a list cut short (a push stopped
 *   half-way) must not hand its last, unterminated name to rm, which would remove whatever that
 *   prefix names.
 * - Pushes of one job take turns (flock, where the VM has it): one given up on by the hook may
 *   still be running there, and must not delete or write beside the one after it. The wait is
 *   bounded, so a lock the job itself holds fails the step (exit 75, saying so) instead of hanging it.
 * - The lock is opened only as a plain file and the list's file is made by mktemp: a FIFO planted at
 *   a name the push opens would hang it.
 */
export function pushCommand(remoteWork: string, listing: string, lockWaitSeconds = PUSH_LOCK_WAIT): string {
  const held = `the job folder's push lock stayed taken for ${lockWaitSeconds} s (an earlier push still running there, or the job holding it)`
  return (
    `umask 077 && cd ${shq(remoteWork)} && L=../.rch-push.lock && ${holdLock('$L', lockWaitSeconds, held, 75)} && ` +
    `IFS= read -r n && ` +
    `{ [ "$n" = 0 ] || { d=$(mktemp ../.rch-delete.XXXXXX) && { dd ibs=1 count="$n" of="$d" status=none && [ "$(wc -c < "$d")" -eq "$n" ] && xargs -0 -r rm -rf -- < "$d"; }; r=$?; rm -f "$d"; [ "$r" = 0 ]; }; } && ` +
    `tar -x -f - --no-same-permissions && { ${listing}; }`
  )
}

/** A remote listing over sync.limits.listingBytes: an error, never a shorter listing read as deletions. */
const listingTooLarge = (limit: number): HookError =>
  new HookError(`sync.limits.listingBytes: the remote file listing is larger than ${limit} bytes`)

/** What a first copy's command may print (it prints nothing; a shell's start-up files may). */
const NOISE_BYTES = 1024 * 1024

/** The runner's file-command files (GITHUB_ENV, GITHUB_PATH…): the runner reads them on the host. */
const FILE_COMMANDS = '_temp/_runner_file_commands'

const TYPE_NAMES: Record<string, string> = {
  d: 'a folder',
  l: 'a symlink',
  p: 'a fifo',
  s: 'a socket',
  c: 'a character device',
  b: 'a block device',
  D: 'a door',
  [NOT_UTF8]: 'named in bytes that are not UTF-8'
}

/**
 * They must be regular files in a real folder, and every folder above it (`_temp`) a real folder
 * too: a `_temp` symlink would put them, unchecked, under its target. Anything else fails the step
 * before anything is copied back.
 */
function checkFileCommands(listing: RemoteListing, limits: SyncLimits): void {
  for (const [p, n] of listing.snap) checkFileCommand(p, n.t, n.size ?? 0, limits)
  for (const [p, t] of listing.other) checkFileCommand(p, t, 0, limits)
}

function checkFileCommand(p: string, t: string, size: number, limits: SyncLimits): void {
  const command = isFileCommand(p)
  const ok = isWithin(FILE_COMMANDS, p) ? t === 'd' : !command || t === 'f'
  if (!ok)
    throw new HookError(
      `${p} is ${TYPE_NAMES[t] ?? t} on the remote; the runner's file-command files must be regular files in real folders (nothing was copied back)`
    )
  if (command && size > limits.fileCommandBytes) {
    throw new HookError(
      `sync.limits.fileCommandBytes: ${p} is ${size} bytes on the remote, over the limit of ${limits.fileCommandBytes} (the runner reads these files whole; nothing was copied back)`
    )
  }
}

const isFileCommand = (p: string): boolean => p !== FILE_COMMANDS && isWithin(p, FILE_COMMANDS)

function limitsOf(t: SyncTarget): SyncLimits {
  return t.limits ?? NO_LIMITS
}

/** The remote's listing of `roots` (remoteListScript), of the changes since `from` when it is given. */
async function listRemote(t: SyncTarget, roots: readonly string[], from: ListingTime | null = null): Promise<RemoteListing> {
  const limits = limitsOf(t)
  const since = from === null ? null : from.since
  const listing = await check(t.remote, `cd ${shq(t.remoteWork)} && ${remoteListScript(roots, t.excludes, shq, since)}`, {
    collect: true,
    maxCollect: limits.listingBytes,
    label: 'remote file listing',
    signal: t.signal
  }).catch((e: unknown) => {
    if (e instanceof OutputLimitError) throw listingTooLarge(e.limit)
    throw e
  })
  return parseRemoteListing(listing.stdout, { roots, maxEntries: limits.listingEntries, stamped: true, delta: since !== null })
}

/**
 * Seconds a delta listing reaches back before the last stamp: ctime is taken from a clock that may
 * lag the stamp's by a tick, and some file systems keep whole (or even two) seconds. A clock set
 * back by less than this cannot hide a change either.
 */
const SINCE_MARGIN = 2

/** A copy this long re-lists at most a tenth of itself in the first pull's delta listing (recordBase). */
export const LONG_COPY_MS = 10 * SINCE_MARGIN * 1000

/** The listing's time, for the next delta listing to start from. */
const timeOf = (l: RemoteListing): ListingTime => ({ since: Math.floor(l.stamp!) - SINCE_MARGIN, stamp: l.stamp!, up: l.up ?? null })

/** Where the next delta listing of `roots` may start, or null: everything must be listed. */
function sinceFor(t: SyncTarget, roots: readonly string[], base: Base, seen: ListingTimes): ListingTime | null {
  if (!t.deltaListing || base.size === 0) return null
  // A path an early push left unsure may hold anything on the remote, with any ctime: all are listed.
  for (const [p, e] of base) if (e.r === UNSURE.r && underRoots(p, roots)) return null
  return earliest(roots, seen)
}

/**
 * Why a delta listing cannot be relied on, or null:
 * - its changed folders' entries are not all in it (remoteListScript's trailer);
 * - the VM's clock went back since `from` by more than a second beyond what the uptime says passed
 *   (what changed meanwhile may carry ctimes before `since`), or the VM restarted, or its uptime is
 *   unknown;
 * - a folder that did not change is not the one the base knows at that path (by device and inode):
 *   a tree moved there keeps the ctimes of everything in it but the folder moved.
 */
function deltaProblem(listing: RemoteListing, from: ListingTime, base: Base): string | null {
  if (listing.partial) return listing.partial
  if (from.up === null || listing.up === null || listing.up === undefined) return "the VM's uptime is unknown"
  const passed = listing.up - from.up
  if (passed < 0) return 'the VM restarted'
  if (passed - (listing.stamp! - from.stamp) > 1) return "the VM's clock went back"
  for (const [p, n] of listing.snap) {
    if (n.t !== 'd' || listing.changedDirs!.has(p)) continue
    const b = base.get(p)
    if (b?.t !== 'd' || b.r !== n.fp) return `${p.slice(0, 200)} is not the folder the last listing saw there`
  }
  return null
}

/**
 * What a delta listing shows deleted: every folder is listed, so a folder it lacks is gone, and so is
 * everything under it; another entry is gone when its folder's entries were all listed without it.
 */
function deletedSince(listing: RemoteListing, base: Base, roots: readonly string[], excludes: readonly string[]): string[] {
  const { snap, other, changedDirs } = listing
  const out: string[] = []
  for (const [p, e] of base) {
    if (snap.has(p) || other.has(p) || !underRoots(p, roots) || isExcluded(p, excludes)) continue
    if (e.t === 'd') {
      out.push(p)
      continue
    }
    const parent = p.slice(0, p.lastIndexOf('/'))
    // A folder named in bytes that are not UTF-8 is left alone, and so is what is in it.
    if (other.has(parent)) continue
    if (snap.get(parent)?.t !== 'd' || changedDirs!.has(parent)) out.push(p)
  }
  return topmost(out)
}

/** What an early push (early-push.ts) changes about a push. */
export interface PushScope {
  /** Sent even when their fingerprints match the base: written again after an earlier push read them. */
  force?: (p: string) => boolean
  /** Only these are sent or deleted, and no path that changed its type (what the watch covers). */
  only?: (p: string) => boolean
  /** How deep the walk goes below each root (1: the entries directly in it). */
  depth?: number
  /** Told what is about to be sent, before anything is. */
  onPlan?: (send: readonly string[]) => void
  /** Asked before the base is saved: false leaves it (the push was given up on meanwhile). */
  mayRecord?: () => boolean
  /**
   * Asked once the job's lock on its tree is held, before the walk, and again before the channel
   * opens: false ends the push with nothing read or sent (an early push whose machine or job is no
   * longer this one's: the lock and the walk can take long).
   */
  mayStart?: () => boolean
  /**
   * A first copy into an empty folder: this walk is sent whole and nothing is deleted; the remote is
   * not listed and no base is saved (the caller records it, as after an rsync copy).
   */
  fresh?: Snapshot
  /** A first copy's bound on a stall (FIRST_COPY_STALL_MS; tests shorten it). */
  stallMs?: number
}

/**
 * How long a first copy may go without the remote taking a byte (or, after the last, without ending).
 * A step's push waits on a stalled VM as the step does, until its cancel; prepare_job's first copy
 * holds a slot or an instance and the runner, and an `rsync` has the same bound (rsync.ts).
 */
export const FIRST_COPY_STALL_MS = 120_000

/** Pushes local changes under `roots` to the remote. */
export function push(t: SyncTarget, roots: readonly string[], scope: PushScope = {}): Promise<SyncStats> {
  // A first copy runs before any step, and has no job manifest yet to lock beside.
  return scope.fresh ? pushHeld(t, roots, scope) : onHostTree(t, () => pushHeld(t, roots, scope))
}

async function pushHeld(t: SyncTarget, roots: readonly string[], scope: PushScope): Promise<SyncStats> {
  const notNow = (): Error => new Error('push not started: the machine or the job is no longer the one it was for')
  if (scope.mayStart && !scope.mayStart()) throw notNow()
  const started = Date.now()
  const limits = limitsOf(t)
  const base = scope.fresh ? NO_BASE : loadBase(t.manifestFile)
  const local = scope.fresh ?? walkLocal(t.hostWork, roots, t.excludes, scope.depth)
  let send = changedPaths(local, base, 'l')
  let del = deletedPaths(local, base, roots, t.excludes, scope.only)
  if (scope.force) {
    const sending = new Set(send)
    for (const [p, n] of local) if (n.t !== 'd' && !sending.has(p) && scope.force(p)) send.push(p)
  }
  if (scope.only) {
    const only = scope.only
    send = send.filter((p) => only(p) && (base.get(p)?.t ?? local.get(p)!.t) === local.get(p)!.t)
    del = del.filter(only)
  }
  scope.onPlan?.(send)
  if (send.length === 0 && del.length === 0) return { files: 0, bytes: 0, deleted: 0, ms: Date.now() - started }

  const delList = Buffer.from(del.map((p) => p + '\0').join(''))
  let bytes = 0
  if (scope.mayStart && !scope.mayStart()) throw notNow()
  // Given up on while the channel opened (an early push): nothing is written, so nothing runs there.
  const ch = await openRaced(t, pushCommand(t.remoteWork, scope.fresh ? 'true' : listSent(send, roots, t.excludes)))
  const out: Buffer[] = []
  let outLen = 0
  const errTail = lineTail(2000)
  const tar = tarOf(t.hostWork, send)
  const stop = stopper(ch, t.signal, () => tar.destroy())
  // Restarted by progress alone: what the VM prints could be dripped to keep it from firing.
  const stallMs = scope.stallMs ?? FIRST_COPY_STALL_MS
  const stalled = scope.fresh
    ? setTimeout(
        () =>
          stop.stop(
            new HookError(`the first copy to the remote made no progress for ${Math.round(stallMs / 1000)} s: the remote stopped taking it`)
          ),
        stallMs
      )
    : undefined
  // A first copy asks for no listing: what the VM prints (a shell's start-up noise) is dropped, up
  // to a bound of its own. Over either bound the channel is closed rather than read to its end: a
  // VM can print for ever.
  const max = scope.fresh ? NOISE_BYTES : limits.listingBytes
  ch.stdout.on('data', (c: Buffer) => {
    outLen += c.length
    if (outLen <= max) {
      if (!scope.fresh) out.push(c)
    } else if (scope.fresh) stop.stop(new HookError(`the remote printed over ${max} bytes during the first copy, which prints nothing`))
    else stop.stop(listingTooLarge(max))
  })
  ch.stderr.on('data', (c: Buffer) => errTail.push(c))
  ch.stdin.on('error', () => undefined)
  ch.stdin.write(`${delList.length}\n`)
  if (delList.length) ch.stdin.write(delList)
  const tarred = new Promise<void>((resolve, reject) => {
    tar.on('end', resolve)
    tar.on('error', (e) => reject(new HookError(`reading the files to sync to the remote: ${e.message}`)))
  })
  tarred.catch(() => undefined)
  forward(tar, ch.stdin, (n) => {
    bytes += n
    stalled?.refresh()
  })
  const [, status] = await Promise.race([Promise.all([tarred, ch.done]), stop.stopped]).finally(() => {
    clearTimeout(stalled)
    stop.dispose()
  })
  if (dropped(status)) throw new TransportError('connection lost while syncing files to the remote', 'lost')
  if (status.code !== 0)
    throw new HookError(`sync to remote failed (${exitOf(status)}): ${errTail.text().trim().split('\n').slice(-2).join(' | ')}`)
  const files = send.filter((p) => local.get(p)!.t === 'f').length
  if (scope.fresh) return { files, bytes, deleted: 0, ms: Date.now() - started }
  const remote = parseRemoteListing(Buffer.concat(out), { roots, maxEntries: limits.listingEntries }).snap
  const set = new Map<string, BaseEntry>()
  for (const p of send) {
    const l = local.get(p)!
    const r = remote.get(p)
    if (r && r.t === l.t) set.set(p, { t: l.t, l: l.fp, r: r.fp })
  }
  const remove = removedByDeletions(base, del)
  await saveBase(t.manifestFile, { set, remove }, scope.mayRecord)
  return { files, bytes, deleted: del.length, ms: Date.now() - started }
}

const KIND: Record<TarEntry['type'], Node['t']> = { file: 'f', dir: 'd', symlink: 'l' }

/**
 * Writes the tar of `fetch` coming from the remote under hostWork. Only the requested paths, each
 * once and of the type the listing announced, are accepted. Resolves with the base entries of what
 * was written; rejects at the first refused member or byte, closing the channel. A file whose size
 * changed since the listing (a log still being written, another step's output) is not written and
 * not recorded, so the next pull fetches it again; its bytes still count against
 * sync.limits.stepBytes.
 */
async function receive(
  t: SyncTarget,
  fs: SafeTree,
  remote: Snapshot,
  fetch: string[],
  got: Received,
  onBytes: (n: number) => void
): Promise<void> {
  const limits = limitsOf(t)
  const want = new Map(fetch.map((p) => [p, remote.get(p)!]))
  const seen = new Set<string>()
  const set = got.set
  const dirs: TarEntry[] = []
  let file: FileWriter | null = null
  let skipping = false
  let received = 0
  const notes = new FewWarnings(t.warn)
  const reader = new TarReader({
    entry(e) {
      const n = want.get(e.name)
      if (!n) throw new HookError(`tar stream from the remote: ${JSON.stringify(e.name.slice(0, 200))} was not asked for`)
      if (seen.has(e.name)) throw new HookError(`tar stream from the remote: ${JSON.stringify(e.name.slice(0, 200))} sent twice`)
      seen.add(e.name)
      if (KIND[e.type] !== n.t)
        throw new HookError(`tar stream from the remote: ${JSON.stringify(e.name.slice(0, 200))} is not of the type the listing announced`)
      if (e.type === 'file') {
        skipping = e.size !== n.size
        // The runner reads these files right after the step: a skipped one would lose its commands.
        if (skipping && isFileCommand(e.name))
          throw new HookError(
            `${e.name} changed on the remote while it was being copied (${n.size} bytes listed, ${e.size} sent); the step's file commands cannot be read reliably`
          )
        if (skipping)
          notes.add(
            'files not copied back this time (changed while being copied)',
            () =>
              `not copied back this time: ${e.name} changed on the remote while it was being copied (${n.size} bytes listed, ${e.size} sent); the next step's pull-back brings it`
          )
        else file = fs.openFile(e.name, e.mode, e.mtime)
      } else if (e.type === 'dir') {
        fs.makeDir(e.name)
        dirs.push(e)
        // Which folder it is (device, inode) is recorded only once the whole pull succeeded.
        set.set(e.name, { t: 'd', l: 'd', r: 'd' })
      } else if (n.fp !== `l:${e.linkname}`) {
        throw new HookError(
          `tar stream from the remote: the symlink ${JSON.stringify(e.name.slice(0, 200))} does not have the target the listing announced`
        )
      } else if (fs.makeSymlink(e.name, e.linkname)) {
        set.set(e.name, { t: 'l', l: n.fp, r: n.fp })
      } else {
        // Not created and not in the base: whatever the host had there goes, so the next push
        // neither sees a deletion nor sends the old entry back over the job's symlink.
        fs.removeUnder(e.name)
        got.dropped.add(e.name)
        notes.add(
          'symlinks not copied back (absolute, or pointing outside the folders synced back)',
          () =>
            `not copied back: ${e.name} is a symlink to ${JSON.stringify(e.linkname.slice(0, 200))}, which is absolute or points outside the folders synced back (the repository's folder, _temp)`
        )
      }
    },
    data(c) {
      received += c.length
      if (received > limits.stepBytes)
        throw new HookError(
          `sync.limits.stepBytes: the step's files copied back from the remote went over ${limits.stepBytes} bytes; nothing more was copied back`
        )
      if (!skipping) file!.write(c)
    },
    endEntry(e) {
      if (e.type !== 'file') return
      if (skipping) {
        skipping = false
        return
      }
      const st = file!.finish()
      file = null
      set.set(e.name, { t: 'f', l: fileFp(st), r: want.get(e.name)!.fp })
    }
  })
  const ch = await openRaced(
    t,
    `cd ${shq(t.remoteWork)} && tar -c -b 20 -f - --no-recursion --ignore-failed-read --hard-dereference --null -T -`
  )
  const errTail = lineTail(2000)
  let failed: unknown = null
  ch.stderr.on('data', (c: Buffer) => errTail.push(c))
  ch.stdin.on('error', () => undefined)
  ch.stdin.end(fetch.map((p) => p + '\0').join(''))
  const stop = stopper(ch, t.signal, () => {
    failed ??= 'cancelled'
    file?.abort()
  })
  ch.stdout.on('data', (c: Buffer) => {
    if (failed) return
    onBytes(c.length)
    try {
      reader.write(c)
    } catch (e) {
      // Closed, not drained: a VM that streams for ever would otherwise keep this channel busy.
      failed = e
      stop.stop(e as Error)
    }
  })
  // All of stdout read, not only the channel closed: the last chunks may still be on their way.
  const ended = endedOrClosed(ch.stdout)
  // A stream that ended inside a file (the VM's tar failed, the connection dropped, the archive was
  // cut short): that file's temporary copy goes, and its descriptor is closed (the agent lives all job).
  const dropPartial = (): void => file?.abort()
  try {
    const [status] = await Promise.race([Promise.all([ch.done, ended]), stop.stopped]).finally(() => stop.dispose())
    if (dropped(status)) throw new TransportError('connection lost while syncing files back from the remote', 'lost')
    if (status.code !== 0)
      throw new HookError(`sync from remote failed (${exitOf(status)}): ${errTail.text().trim().split('\n').slice(-2).join(' | ')}`)
    reader.finish()
  } catch (e) {
    dropPartial()
    throw e
  } finally {
    notes.flush()
  }
  const unread = fetch.filter((p) => isFileCommand(p) && !seen.has(p))
  if (unread.length)
    throw new HookError(
      `${unread[0]} could not be read on the remote (is it readable by the SSH user?); the step's file commands would be lost`
    )
  if (errTail.text().trim())
    t.warn?.(`some files could not be read on the remote: ${errTail.text().trim().split('\n').slice(0, 3).join(' | ')}`)
  // Folder modes last, deepest first, so a read-only folder does not stop its own contents.
  for (const d of dirs.reverse()) fs.setDirMode(d.name, d.mode)
}

interface Received {
  /** Base entries of what was written. */
  set: Map<string, BaseEntry>
  /** Refused symlinks: removed on the host and from the base. */
  dropped: Set<string>
}

/**
 * A delta listing carries only the changes, so step by step the base could grow past what one full
 * listing may carry, and on to sizes its saved form cannot be (V8's strings end at 512 MiB): the
 * next full listing, or the base's next snapshot, would then fail for good and without naming a
 * cap. Its paths (in UTF-16 units, a byte each for ASCII) are kept within sync.limits.listingBytes.
 */
function checkBaseFits(
  base: Base,
  roots: readonly string[],
  remove: ReadonlySet<string>,
  fetch: readonly string[],
  listingBytes: number
): void {
  let units = 0
  // The pulled folders' part of the base (a push also records what it sent, _actions among it).
  for (const p of base.keys()) if (!remove.has(p) && underRoots(p, roots)) units += p.length
  for (const p of fetch) if (!base.has(p) || remove.has(p)) units += p.length
  if (units > listingBytes)
    throw new HookError(
      `sync.limits.listingBytes: the synced folders' paths would add up to ${units} bytes, over the ${listingBytes} one listing of them may carry; nothing was copied back`
    )
}

/** Pulls remote changes under `roots` back to the host, deletions included. */
export async function pull(t: SyncTarget, roots: readonly string[]): Promise<SyncStats> {
  const started = Date.now()
  const limits = limitsOf(t)
  const seen = listingTimes(t.manifestFile, roots, t.excludes)
  const from = sinceFor(t, roots, loadBase(t.manifestFile), seen)
  let listing: RemoteListing | null = null
  let why: string | null = null
  if (from) {
    // A delta listing that fails (a full disk: it writes two small files) is tried again in full.
    listing = await listRemote(t, roots, from).catch((e: unknown) => {
      if (e instanceof Cancelled || e instanceof TransportError) throw e
      why = `the listing of the changes failed: ${(e as Error).message}`
      return null
    })
    why ??= listing && deltaProblem(listing, from, loadBase(t.manifestFile))
  }
  if (!listing || why) listing = await listRemote(t, roots, null)
  // Everything is checked before anything on the host changes.
  checkFileCommands(listing, limits)
  const remote = listing.snap
  const base = loadBase(t.manifestFile)
  const fetch = changedPaths(remote, base, 'r').filter((p) => !isExcluded(p, t.excludes))
  const del = listing.changedDirs
    ? deletedSince(listing, base, roots, t.excludes)
    : deletedPaths(remote, base, roots, t.excludes).filter((p) => !listing.other.has(p))
  const announced = fetch.reduce((sum, p) => sum + (remote.get(p)!.size ?? 0), 0)
  if (fetch.length > limits.stepFiles)
    throw new HookError(
      `sync.limits.stepFiles: the step changed ${fetch.length} files on the remote, over the limit of ${limits.stepFiles}; nothing was copied back`
    )
  if (announced > limits.stepBytes)
    throw new HookError(
      `sync.limits.stepBytes: the step's changed files on the remote add up to ${announced} bytes, over the limit of ${limits.stepBytes}; nothing was copied back`
    )
  const remove = removedByDeletions(base, del)
  if (listing.changedDirs && fetch.length) checkBaseFits(base, roots, remove, fetch, limits.listingBytes)
  if (del.length || fetch.length) checkNamesDistinct(t.hostWork)
  if (fetch.length) await reservePull(t.manifestFile, { files: fetch.length, bytes: announced }, limits)
  let bytes = 0
  const got: Received = { set: new Map(), dropped: new Set() }
  await onHostTree(t, async () => {
    // Cancelled while the listing came or the locks were waited for: nothing on the host changes.
    if (t.signal?.aborted) throw Cancelled.by(t.signal)
    // Deletions first: a folder the step replaced by a file or symlink is emptied before it is replaced.
    // Links from the VM point into the synced folders, never at another repository's folder beside
    // them in _work. Not into _actions either: the runner unpacks the job's actions there with their
    // own symlinks, which may lead anywhere (a link's target is judged by its text alone).
    const fs = new SafeTree(t.hostWork, new Set(roots))
    for (const p of del) fs.removeUnder(p)
    try {
      if (fetch.length) await receive(t, fs, remote, fetch, got, (n) => (bytes += n))
    } finally {
      // Also after a refusal: what was written is recorded, so it is not pushed back as a change.
      for (const p of got.dropped) remove.add(p)
      await saveBase(t.manifestFile, { set: got.set, remove })
    }
  })
  // Only a pull that brought everything back records which folder each path is (a refused one
  // must not make a moved tree look known) and moves the next listing's start.
  const ids = new Map<string, BaseEntry>()
  for (const [p, n] of remote) {
    const b = got.set.get(p) ?? base.get(p)
    if (n.t === 'd' && b?.t === 'd' && b.r !== n.fp) ids.set(p, { t: 'd', l: b.l, r: n.fp })
  }
  await saveBase(t.manifestFile, { set: ids, remove: new Set() })
  // A file the VM's tar could not read (the SSH user may not) is listed again once it changes:
  // making it readable moves its ctime, or its folder's.
  await recordSince(t.manifestFile, roots, t.excludes, timeOf(listing), seen)
  const stats = { files: fetch.filter((p) => remote.get(p)!.t === 'f').length, bytes, deleted: del.length, ms: Date.now() - started }
  return { ...stats, listed: listing.changedDirs ? 'changes' : 'all', ...(why ? { why } : {}) }
}

/**
 * Records both sides as equal after a bulk copy of `roots`, which took `copyMs`. What the copy wrote
 * has ctimes spread over the copy, and a delta listing from this listing's time (less its 2 s
 * margin) prints again whatever the copy wrote in its last seconds; over 256 folders among them, and
 * that listing is made again in full. After a copy of a few seconds that is most of the tree (at
 * 100,000 files the first pull took 1.3 s, two listings, against 0.9 s for one), so the first pull
 * lists everything instead; only after a long copy does it start from this listing's time.
 */
export async function recordBase(t: SyncTarget, roots: readonly string[], localSnapshot?: Snapshot, copyMs = 0): Promise<void> {
  // What since.json said before this listing: needed only to record a time after a long copy.
  const seen = copyMs >= LONG_COPY_MS ? listingTimes(t.manifestFile, roots, t.excludes) : null
  const listing = await listRemote(t, roots)
  const remote = listing.snap
  const local = localSnapshot ?? walkLocal(t.hostWork, roots, t.excludes)
  const set = new Map<string, BaseEntry>()
  for (const [p, l] of local) {
    const r = remote.get(p)
    if (r && r.t === l.t) set.set(p, { t: l.t, l: l.fp, r: r.fp })
  }
  await saveBase(t.manifestFile, { set, remove: new Set() })
  if (!seen) return
  // What the remote has and the base does not (nothing, after a copy) is fetched by the first pull
  // only if that pull lists everything.
  for (const p of remote.keys()) if (!set.has(p)) return
  await recordSince(t.manifestFile, roots, t.excludes, timeOf(listing), seen)
}
