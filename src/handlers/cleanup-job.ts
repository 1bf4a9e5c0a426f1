// cleanup_job: remove everything the job created on the remote and give the host back. Works from
// labels when state is null (prepare_job failed or was killed), and is safe to run twice.
import { rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { TransportError } from '../errors'
import { LABEL_JOB, LABEL_OWNER, ownerId } from '../labels'
import type { HookState } from '../state'
import { directRemote, openJobRemote, stopAgent } from '../session'
import { removeLabelled } from '../docker/cli'
import { StaticHostProvider } from '../providers/static-host'
import { check } from '../remote/remote'
import { shq } from '../remote/quote'
import { removeJobFolder } from './prepare-job'

export async function cleanupJob(state: HookState | null, ctx: HookContext): Promise<HandlerResult> {
  const { config, log } = ctx
  const provider = new StaticHostProvider(config.provider, config.remote.workRoot)
  if (state) {
    const remote = await openJobRemote(ctx, state.host, state.localDir, { startAgent: false })
    try {
      try {
        const removed = await removeLabelled(remote, LABEL_JOB, state.jobId)
        await removeJobFolder(remote, state.jobRoot, state.container?.image ?? null)
        log.progress(`cleaned up ${state.host.host}:${state.host.port}: ${removed}`)
      } finally {
        // The host goes back even if removing something failed; the next prepare_job prunes by label.
        await provider.release(ctx, remote, { index: state.host.index, slot: state.host.slot, connect: state.host }, state.jobId)
      }
    } finally {
      remote.close()
      await stopAgent(state.localDir, state.host)
      rmSync(state.localDir, { recursive: true, force: true })
    }
    return { exitCode: 0 }
  }
  // No state: find this runner's leftovers on every configured host by label.
  const owner = ownerId(ctx.runner.runnerName)
  const seen = new Set<string>()
  const failures: string[] = []
  for (const c of provider.candidates()) {
    const key = `${c.connect.host}:${c.connect.port}`
    if (seen.has(key)) continue
    seen.add(key)
    try {
      const remote = await directRemote(ctx, c.connect)
      try {
        const removed = await removeLabelled(remote, LABEL_OWNER, owner)
        const dirs = (await check(remote, `ls -d ${shq(config.remote.workRoot)}/jobs/${owner}-* 2>/dev/null || true`, { collect: true })).stdout.toString().split('\n').filter(Boolean)
        for (const d of dirs) await removeJobFolder(remote, d, null)
        await provider.releaseOwned(remote, owner)
        log.progress(`cleaned up ${key}: ${removed}, ${dirs.length} job folders`)
      } finally {
        remote.close()
      }
    } catch (e) {
      failures.push(`${key}: ${(e as Error).message}`)
    }
  }
  if (failures.length) throw new TransportError(`cleanup_job could not reach every host: ${failures.join('; ')}`)
  return { exitCode: 0 }
}
