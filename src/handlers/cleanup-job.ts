// cleanup_job: remove everything the job created on the remote and give the machine back. Works
// from labels/tags when state is null (prepare_job failed or was killed), and is safe to run twice.
import { readdirSync, rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { LABEL_JOB, ownerId } from '../labels'
import type { HookState } from '../state'
import { openJobRemote, stopAgents } from '../session'
import { removeLabelled } from '../docker/cli'
import { removeJobFolder } from '../docker/job-folder'
import { providerFor } from '../providers/provider'
import type { Remote } from '../remote/remote'

export async function cleanupJob(state: HookState | null, ctx: HookContext): Promise<HandlerResult> {
  const { log } = ctx
  const provider = await providerFor(ctx.config)
  if (!state) {
    const owner = ownerId(ctx.runner.runnerName)
    const summary = await provider.cleanupOrphans(ctx, owner)
    const local = await removeLocalLeftovers(ctx, owner)
    log.progress(`cleaned up this runner's leftovers: ${summary || 'nothing found'}${local ? `; ${local} local job folders` : ''}`)
    return { exitCode: 0 }
  }
  const lease = { index: state.host.index, slot: state.host.slot, instanceId: state.host.instanceId, connect: state.host }
  let remote: Remote | null = null
  try {
    // A machine that is destroyed on release needs no tidying (and may already be gone).
    if (!provider.releaseDestroys) {
      remote = await openJobRemote(ctx, state.host, state.localDir, { startAgent: false })
      try {
        const removed = await removeLabelled(remote, LABEL_JOB, state.jobId)
        await removeJobFolder(remote, ctx.config.remote.workRoot, state.jobRoot, state.container?.image ?? null)
        log.progress(`cleaned up ${state.host.host}:${state.host.port}: ${removed}`)
      } finally {
        // The host goes back even if removing something failed; the next prepare_job prunes by label.
        await provider.release(ctx, remote, lease, state.jobId)
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
