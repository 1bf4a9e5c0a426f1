// cleanup_job: remove everything the job created on the remote and give the machine back. Works
// from labels/tags when state is null (prepare_job failed or was killed), and is safe to run twice.
import { readdirSync, rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { formatError, InputError } from '../errors'
import { LABEL_JOB, ownerId } from '../labels'
import { decodeState, stateFacts, type HookState } from '../state'
import { openJobRemote, stopAgents } from '../session'
import { removeLabelled } from '../docker/cli'
import { removeJobFolder } from '../docker/job-folder'
import { providerFor } from '../providers/provider'
import type { Remote } from '../remote/remote'
import { withDeadline } from '../remote/deadline'
import type { VmProvider } from '../providers/provider'

export async function cleanupJob(raw: Record<string, unknown> | null, ctx: HookContext): Promise<HandlerResult> {
  const { log } = ctx
  let state: HookState | null
  try {
    state = decodeState(raw, stateFacts(ctx))
  } catch (e) {
    if (!(e instanceof InputError)) throw e
    // Nothing the state names is touched; this runner's own leftovers are still removed, and the
    // command fails so the bad state is seen.
    try {
      await withoutState(ctx, await providerFor(ctx.config))
    } catch (f) {
      log.warn(`cleanup without state, after the state was refused, failed too: ${formatError(f)}`)
    }
    throw e
  }
  const provider = await providerFor(ctx.config)
  if (!state) {
    await withoutState(ctx, provider)
    return { exitCode: 0 }
  }
  const lease = { index: state.host.index, slot: state.host.slot, instanceId: state.host.instanceId, connect: state.host }
  let remote: Remote | null = null
  try {
    // A machine that is destroyed on release needs no tidying (and may already be gone).
    if (!provider.releaseDestroys) {
      remote = await openJobRemote(ctx, state.host, state.localDir, { startAgent: false })
      const secs = ctx.config.timeouts.cleanupSeconds
      const bounded = withDeadline(
        remote,
        secs * 1000,
        `timeouts.cleanupSeconds: cleaning up ${state.host.host}:${state.host.port} took longer than ${secs} s and was stopped (the next prepare_job of this runner there removes what is left)`
      )
      try {
        const removed = await removeLabelled(bounded.remote, LABEL_JOB, state.jobId)
        await removeJobFolder(bounded.remote, ctx.config.remote.workRoot, state.jobRoot, state.container?.image ?? null)
        log.progress(`cleaned up ${state.host.host}:${state.host.port}: ${removed}`)
      } finally {
        // The host goes back even if removing something failed; the next prepare_job prunes by label.
        try {
          await provider.release(ctx, bounded.remote, lease, state.jobId)
        } finally {
          bounded.clear()
        }
      }
    } else {
      await provider.release(ctx, null, lease, state.jobId)
    }
  } finally {
    remote?.close()
    await stopAgents(state.localDir)
    rmSync(state.localDir, { recursive: true, force: true })
  }
  return { exitCode: 0 }
}

/** Everything this runner left, found by owner label/tag and local folder name. */
async function withoutState(ctx: HookContext, provider: VmProvider): Promise<void> {
  const owner = ownerId(ctx.runner.runnerName)
  let local = 0
  let summary: string
  try {
    summary = await provider.cleanupOrphans(ctx, owner)
  } finally {
    local = await removeLocalLeftovers(ctx, owner)
  }
  ctx.log.progress(`cleaned up this runner's leftovers: ${summary || 'nothing found'}${local ? `; ${local} local job folders` : ''}`)
}

/** Local folders of this runner's lost jobs (per-job keys, agent sockets): agents stopped, folders removed. */
async function removeLocalLeftovers(ctx: HookContext, owner: string): Promise<number> {
  let names: string[] = []
  try {
    names = readdirSync(ctx.localRoot).filter((n) => n.startsWith(`${owner}-`))
  } catch {
    return 0
  }
  for (const n of names) {
    const dir = `${ctx.localRoot}/${n}`
    await stopAgents(dir)
    rmSync(dir, { recursive: true, force: true })
  }
  return names.length
}
