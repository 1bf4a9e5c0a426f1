// Per-job facts derived from state: remote layout, sync targets, the Engine, output sinks.
import { existsSync } from 'node:fs'
import { wrote } from './line-start'
import type { HookContext, Sink } from './context'
import type { HookState } from './state'
import type { Remote } from './remote/remote'
import type { SyncTarget } from './sync/sync'
import type { Output } from './docker/engine'
import { baseFileIn, treeLockOf, type Layout } from './paths'

/** Never synced: the runner's response files (host only) and anything of ours. */
export const SYNC_EXCLUDES = ['_temp/_runner_hook_responses']
/** Up to this, the first copy is a tar over the hook's connection instead of rsync over a new one. */
export const TAR_COPY_MAX = { entries: 2000, bytes: 8 * 1024 * 1024 }
/** SYNC_EXCLUDES as rsync arguments (anchored at the transfer root). */
export const RSYNC_EXCLUDES = SYNC_EXCLUDES.map((e) => `--exclude=/${e}`)

/** The roots (relative to `_work`) that exist on the runner host: the ones a first copy sends. */
export function existingRoots(hostWork: string, roots: readonly string[]): string[] {
  return roots.filter((root) => existsSync(`${hostWork}/${root}`))
}
/** Pushed before every step: what the runner writes on the host between steps. */
export const PUSH_ROOTS = ['_temp', '_actions']

/**
 * What a step of this job pushes. A job without a job container (services only) runs its `run:`
 * steps and JS actions on the runner host, so the repository changes there between its container
 * actions (a checkout, a build) and goes up too; with a job container it changes only on the VM.
 */
export function pushRootsOf(state: Pick<HookState, 'container' | 'pullRoots'>): string[] {
  return state.container ? PUSH_ROOTS : [...PUSH_ROOTS, ...state.pullRoots.filter((r) => !PUSH_ROOTS.includes(r))]
}

export function layoutOf(state: Pick<HookState, 'hostWork' | 'jobRoot' | 'externals'>, dockerSocket: string): Layout {
  return {
    hostWork: state.hostWork,
    remoteWork: `${state.jobRoot}/w`,
    hostExternals: state.externals?.host ?? null,
    remoteExternals: state.externals?.remote ?? null,
    dockerSocket
  }
}

export function syncTarget(ctx: HookContext, state: Pick<HookState, 'hostWork' | 'jobRoot' | 'localDir'>, remote: Remote): SyncTarget {
  return {
    remote,
    hostWork: state.hostWork,
    remoteWork: `${state.jobRoot}/w`,
    manifestFile: baseFileIn(state.localDir),
    excludes: [...SYNC_EXCLUDES, ...ctx.config.sync.excludeFromPullBack],
    limits: ctx.config.sync.limits,
    deltaListing: ctx.config.sync.deltaListing,
    warn: (m) => ctx.log.warn(m),
    signal: ctx.signal,
    treeLock: treeLockOf(ctx.localRoot, state.hostWork)
  }
}

/**
 * Streams to the hook's stdout/stderr with backpressure, so large outputs use bounded memory. One
 * drain listener per full sink, however many writes found it full: each write of a chunk's frames
 * used to add its own, and a pipe held full for a few frames gathered them past node's warning limit.
 */
export function outputTo(stdout: Sink, stderr: Sink): Output {
  const pending = new Map<Sink, Promise<void>>()
  const write = (s: Sink, c: Buffer): boolean => {
    const ok = s.write(c)
    wrote(s, c)
    if (!ok && !pending.has(s))
      pending.set(
        s,
        new Promise((res) =>
          s.once('drain', () => {
            pending.delete(s)
            res()
          })
        )
      )
    return ok
  }
  return {
    onStdout: (c) => write(stdout, c),
    onStderr: (c) => write(stderr, c),
    // Every full sink, also one that filled while the source waited (the rest of its chunk went on
    // being written): the source must not resume into a sink still full.
    waitDrain: async () => {
      while (pending.size) await Promise.all(pending.values())
    }
  }
}

export function mb(bytes: number): string {
  return (bytes / 1048576).toFixed(1)
}

/** What a job's first copy sends, relative to `_work`: the runner's folders and the job's repository. */
export function firstCopyRoots(repoRel: string | null, toolCache: boolean): string[] {
  return ['_temp', '_actions', ...(toolCache ? ['_tool'] : []), ...(repoRel ? [repoRel] : [])]
}
