// The job folder and the first copy of the runner's files into it, shared by prepare_job and by a
// container step that runs without one. A small tree (the usual case: before the first step the
// workspace is empty and _actions holds a few actions) goes as a tar over the hook's own SSH
// connection; a larger one with rsync (OpenSSH's transport when the runner host has it), whose own
// connection costs a handshake but whose C data path is faster for bulk. The runner's externals are
// copied once per content version and shared by jobs.
import { monoMs } from '../mono-clock'
import { createHash } from 'node:crypto'
import { posix } from 'node:path'
import type { HookContext } from '../context'
import { HookError } from '../errors'
import { check, run, type ConnectInfo, type Remote } from '../remote/remote'
import { ask, expectEach, record, UnexpectedAnswer } from '../remote/answer'
import { shjoin, shq } from '../remote/quote'
import { createJobFolderScript, HEX16_GLOB } from '../docker/job-folder'
import { bulkTransport } from '../session'
import { rsyncUp } from '../sync/rsync'
import { existingRoots, RSYNC_EXCLUDES, SYNC_EXCLUDES, TAR_COPY_MAX } from '../job'
import { walkLocal, walkSmall, type Snapshot } from '../sync/tree'
import { push } from '../sync/sync'
import { allOf } from './undo'
import { externalsGcScript, externalsLookScript } from './externals-gc'

/**
 * Creates the job folder, and checks in the same round trip that rsync is there for the copy (and,
 * given `externals`, whether that content version is already on the host).
 * With `pruneOwner`, that runner's other job folders go first: a runner runs one job at a time, so
 * they are leftovers of a job that ended without cleanup. `dirs` (inside the job's `w`) are made
 * too, for a container that is started while the copy runs.
 */
export async function makeJobFolder(
  remote: Remote,
  workRoot: string,
  jobRoot: string,
  opts: { pruneOwner?: string; dirs?: string[]; externals?: string; externalsKeepDays?: number } = {}
): Promise<{ externalsPresent: boolean | null }> {
  const label = 'create the job folder'
  const { pruneOwner, dirs = [], externals, externalsKeepDays = 0 } = opts
  // Only names of the exact job folder pattern; rm of a symlink removes the link, never its target.
  const prune = pruneOwner
    ? `for d in ${shq(workRoot)}/jobs/${pruneOwner}-${HEX16_GLOB}; do [ -L "$d" ] || [ -e "$d" ] || continue; rm -rf "$d" 2>/dev/null || true; done; `
    : ''
  for (const d of dirs)
    if (!d.startsWith(`${jobRoot}/w/`) || d.split('/').includes('..'))
      throw new HookError(`not a folder of the job's copy: ${JSON.stringify(d)}`)
  // Made as docker would make a missing bind source, but owned by the SSH user, so the copy can fill them.
  const mkdirs = dirs.length ? ` && (umask 022 && mkdir -p ${shjoin(dirs)})` : ''
  const ext = externals
    ? `; ${externalsLookScript(externals, record('externals'), record('no-externals'))}; ` +
      externalsGcScript(workRoot, posix.basename(externals), externalsKeepDays)
    : ''
  const answer = await ask(
    remote,
    `${prune}${createJobFolderScript(workRoot, jobRoot)}${mkdirs} || exit 1; if command -v rsync >/dev/null; then ${record('rsync')}; else ${record('no-rsync')}; fi${ext}`,
    { label, silentShell: true }
  )
  const [rsync, extAnswer, ...rest] = answer
  if (rest.length || (externals ? !extAnswer : extAnswer !== undefined))
    throw new UnexpectedAnswer(`${label}: expected ${externals ? 2 : 1} answers from the remote, got ${answer.length}`)
  if (expectEach([rsync], /^(no-)?rsync$/, label)[0] !== 'rsync')
    throw new HookError("rsync is not installed on the remote host (it is needed to sync the job's files)")
  return { externalsPresent: externals ? expectEach([extAnswer], /^(no-)?externals$/, label)[0] === 'externals' : null }
}

/** Content version of the runner's externals: same files → same remote copy, shared by jobs. */
export function externalsVersion(dir: string): string {
  const h = createHash('sha256')
  for (const [p, n] of [...walkLocal(dir, ['.'], []).entries()].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`${p}\0${n.fp}\0`)
  return h.digest('hex').slice(0, 16)
}

export interface CopySpec {
  hostWork: string
  jobRoot: string
  jobId: string
  /** Folders under `_work` to send; those missing on the host are skipped. */
  roots: string[]
  externals: { host: string; remote: string } | null
  /** Already known (makeJobFolder looked): whether the externals' content version is on the host. */
  externalsPresent?: boolean | null
}

export interface Copied {
  files: number
  bytes: number
  /** How the job's files went: a tar over the hook's connection, rsync, or nothing to copy. */
  via: 'tar' | 'rsync' | 'none'
  externals: 'none' | 'reused' | 'copied'
  /** The roots that were sent (the sync base is recorded for these). */
  roots: string[]
  /** The local walk the tar copy sent, for the sync base (an rsync copy leaves it to be read after). */
  local?: Snapshot
  ms: number
}

/** Starts the copy: the job's roots and the externals, in parallel; `externals` settles when the latter are in place. */
export function startCopy(
  ctx: HookContext,
  remote: Remote,
  connect: ConnectInfo,
  localDir: string,
  spec: CopySpec
): { externals: Promise<Copied['externals']>; copied: Promise<Copied> } {
  const t = monoMs()
  const roots = existingRoots(spec.hostWork, spec.roots)
  const small = roots.length ? walkSmall(spec.hostWork, roots, SYNC_EXCLUDES, TAR_COPY_MAX) : null
  const via: Copied['via'] = !roots.length ? 'none' : small ? 'tar' : 'rsync'
  // Made only when something goes by rsync (without OpenSSH's client it needs the agent).
  let transport: ReturnType<typeof bulkTransport> | undefined
  const bulk = (): ReturnType<typeof bulkTransport> => (transport ??= bulkTransport(ctx, connect, localDir))
  const work = small
    ? tarUp(remote, spec, roots, small.snap, ctx.signal).then((files) => ({ files, bytes: small.bytes }))
    : via === 'rsync'
      ? rsyncUp(bulk(), spec.hostWork, roots, `${spec.jobRoot}/w`, RSYNC_EXCLUDES, ctx.signal)
      : Promise.resolve({ files: 0, bytes: 0 })
  const externals = (async (): Promise<Copied['externals']> => {
    if (!spec.externals) return 'none'
    const dest = spec.externals.remote
    const have =
      spec.externalsPresent ??
      (await ask(remote, externalsLookScript(dest, record('yes'), ':'), { label: 'look for the externals' })).join() === 'yes'
    if (have) return 'reused'
    // Copied into the job folder, then renamed into place: a prepare_job killed half-way leaves the
    // half copy where every cleanup of the job (and the runner's next prune) removes it. Beside
    // `dest`, named by the job id only, nothing would ever find it again.
    const tmp = `${spec.jobRoot}/externals.tmp`
    // Unlike job folders, the content-versioned externals stay readable: they hold no secrets,
    // are shared by jobs, and containers running as other users must run the node in them.
    await check(remote, `umask 022 && mkdir -p ${shq(posix.dirname(dest))} ${shq(tmp)}`)
    try {
      await rsyncUp(bulk(), spec.externals.host, ['.'], tmp, [], ctx.signal, 'shared')
      await check(remote, `touch ${shq(tmp)}/.rch-complete && { mv -T ${shq(tmp)} ${shq(dest)} 2>/dev/null || rm -rf ${shq(tmp)}; }`, {
        label: 'install externals'
      })
    } catch (e) {
      await run(remote, `rm -rf ${shq(tmp)}`).catch(() => undefined)
      throw e
    }
    return 'copied'
  })()
  externals.catch(() => undefined)
  // Settles once both halves have: prepare_job's undo waits for the copy (cancel.ts), and must not
  // start while the externals are still being installed because the roots' half failed first.
  const copied = allOf<[{ files: number; bytes: number }, Copied['externals']]>([work, externals]).then(([w, e]) => ({
    files: w.files,
    bytes: w.bytes,
    via,
    externals: e,
    roots,
    local: small?.snap,
    ms: monoMs() - t
  }))
  return { externals, copied }
}

/** The tar copy: the walk's entries into the job's `w`, as a push would send them; resolves with the files sent. */
async function tarUp(remote: Remote, spec: CopySpec, roots: string[], snap: Snapshot, signal: AbortSignal): Promise<number> {
  const target = { remote, hostWork: spec.hostWork, remoteWork: `${spec.jobRoot}/w`, manifestFile: '', excludes: SYNC_EXCLUDES, signal }
  return (await push(target, roots, { fresh: snap })).files
}

export function copyUp(ctx: HookContext, remote: Remote, connect: ConnectInfo, localDir: string, spec: CopySpec): Promise<Copied> {
  return startCopy(ctx, remote, connect, localDir, spec).copied
}
