// Host paths the runner hands over → paths on the remote host. Only what the hook syncs can be
// mapped: the runner's `_work` (→ <jobRoot>/w), its externals (→ a shared, content-versioned copy)
// and the Docker socket.
import { tmpdir } from 'node:os'
import { posix } from 'node:path'
import { InputError } from './errors'
import { sha256Hex } from './sha256'

export interface Layout {
  hostWork: string
  remoteWork: string
  hostExternals: string | null
  remoteExternals: string | null
  /** The VM's Docker socket (`remote.dockerSocket`): where a mount of the runner's socket goes. */
  dockerSocket: string
}

function under(path: string, root: string): string | null {
  const p = posix.normalize(path).replace(/\/+$/, '')
  const r = posix.normalize(root).replace(/\/+$/, '')
  if (p === r) return ''
  return p.startsWith(r + '/') ? p.slice(r.length + 1) : null
}

export function remotePath(layout: Layout, hostPath: string, field: string): string {
  if (hostPath === '/var/run/docker.sock') return layout.dockerSocket
  const w = under(hostPath, layout.hostWork)
  if (w !== null) return w ? `${layout.remoteWork}/${w}` : layout.remoteWork
  if (layout.hostExternals && layout.remoteExternals) {
    const e = under(hostPath, layout.hostExternals)
    if (e !== null) return e ? `${layout.remoteExternals}/${e}` : layout.remoteExternals
  }
  throw new InputError(
    `${field}: host path ${hostPath} is outside the runner's work folder ${layout.hostWork}, so it cannot be synced to the remote host`
  )
}

/** Whether a host path is `root` itself or inside it (lexically, after normalising both). */
export const isUnder = (path: string, root: string): boolean => under(path, root) !== null

/** Relative path of a host path under `_work`, or null. */
export function relToWork(hostWork: string, hostPath: string): string | null {
  return under(hostPath, hostWork)
}

/**
 * The runner's own folders in `_work`. The runner names a repository's folder after the repository
 * alone, so a repository called `_PipelineMapping` would have its workspace there, and the pull-back
 * would let the job rewrite where other repositories' workspaces are.
 */
export const RUNNER_FOLDERS: readonly string[] = ['_actions', '_temp', '_tool', '_PipelineMapping']

/** The repository folder (first component under `_work`) a job of this runner syncs, if any. */
export function repoRootOf(workDir: string, workspace: string): string | null {
  const repo = relToWork(workDir, workspace)?.split('/')[0] || null
  if (repo !== null && RUNNER_FOLDERS.includes(repo))
    throw new InputError(
      `GITHUB_WORKSPACE: the repository's folder ${repo} is one of the runner's own folders in _work (${RUNNER_FOLDERS.join(', ')}), which the hook never syncs back from the VM; rename the repository`
    )
  return repo
}

/**
 * The job's local folder (agent socket, sync manifests, keys): `<localRoot>/<owner>-<jobId>`, so a
 * state-less cleanup can find a lost job's. Always derived from these, never read from the state.
 */
export const localDirOf = (localRoot: string, owner: string, jobId: string): string => `${localRoot}/${owner}-${jobId}`

/** The hook's private folder on the runner host (agent sockets, per-job keys, the local ledger): one per user. */
const uid = (): number => (typeof process.getuid === 'function' ? process.getuid() : 0)

export const hookLocalRoot = (): string => `${tmpdir()}/rch-${uid()}`

/** The log file when the configuration names none (log.file). */
export const defaultLogFile = (): string => `${tmpdir()}/remote-container-hooks-${uid()}/hook.log`

/**
 * The lock hook commands take while they read or write the runner's `_work` (sync.ts onHostTree):
 * per `_work`, in the hook's private folder, so every command of one job takes the same, whichever
 * job folder it has (a container action without state makes its own).
 */
export const treeLockOf = (localRoot: string, hostWork: string): string =>
  `${localRoot}/tree-${sha256Hex(`work\0${hostWork}`).slice(0, 16)}.lock`

/** The job's sync base (sync/manifest.ts), in its local folder. */
export const baseFileIn = (localDir: string): string => `${localDir}/base.json`
