// cleanup_job: remove everything the job created on the remote and give the machine back. Works
// from labels/tags when state is null (prepare_job failed or was killed), and is safe to run twice.
import { rmSync } from 'node:fs'
import type { Config } from '../config'
import type { HandlerResult, HookContext } from '../context'
import { formatError, InputError, TransportError } from '../errors'
import { LABEL_JOB, LABEL_OWNER, ownerId } from '../labels'
import { decodeState, leaseOf, onJobMachine, stateFacts, type HookState } from '../state'
import {
  openJobRemote,
  rejoinableRemote,
  releaseMachine,
  releaseOrphans,
  releaseUnreached,
  removeLocalJobFolders,
  stopAgents
} from '../session'
import { describeCounts, keptWarning, RemoteDocker } from '../docker/remote-docker'
import { HEX16_GLOB, jobFolder, removeJobFolder, thenFolders } from '../docker/job-folder'
import { configElsewhere, providerFor, workRootOf, type Lease } from '../providers/factory'
import type { OrphanReport, VmProvider } from '../providers/provider'
import { ask, expectEach, record } from '../remote/answer'
import { shq } from '../remote/quote'
import type { Remote } from '../remote/remote'
import { cleanupDeadline } from '../remote/deadline'
import { closeJobFleet, jobFleet } from '../fleet/job-fleet'
import { beatQuietly, recordCleanedUp } from '../fleet/job-ledger-writes'
import { timingsLine } from '../fleet/timings-line'
import { monoMs } from '../mono-clock'

export async function cleanupJob(raw: Record<string, unknown> | null, ctx: HookContext): Promise<HandlerResult> {
  const { log } = ctx
  let state: HookState | null
  try {
    state = decodeState(raw, stateFacts(ctx))
  } catch (e) {
    if (!(e instanceof InputError)) throw e
    // Nothing the state names is touched; this runner's own leftovers are still removed, and the
    // command fails so the bad state is seen. A machine today's config cannot reach (provider.region
    // changed while the job ran) is looked for where the state says it is, first: it is the job's.
    const there = configElsewhere(ctx.config, raw?.host)
    if (there) {
      log.progress(`the refused state's machine is in ${describeWhere(there)}: cleaning up this runner's leftovers there too`)
      try {
        await withoutState({ ...ctx, config: there }, providerFor(there))
      } catch (f) {
        log.warn(
          `cleanup without state in ${describeWhere(there)} failed: ${formatError(f)}; this runner's instances there end at provider.maxLifetimeMinutes unless terminated by hand`
        )
      }
    }
    try {
      await withoutState(ctx, providerFor(ctx.config))
    } catch (f) {
      log.warn(`cleanup without state, after the state was refused, failed too: ${formatError(f)}`)
    }
    throw e
  }
  if (state) ctx = onJobMachine(ctx, workRootOf(ctx.config, state.host))
  const provider = providerFor(ctx.config)
  if (!state) {
    await withoutState(ctx, provider)
    return { exitCode: 0 }
  }
  const lease = leaseOf(state.host)
  const started = monoMs()
  const fleet = jobFleet(ctx, state.jobId)
  const warn = (m: string): void => log.warn(m)
  await beatQuietly(fleet, warn, lease.reservation)
  // How long giving the machine back took: a terminate when that destroys it, else the release.
  const releasePhase = provider.releaseDestroys ? 'terminate' : 'release'
  let releaseMs: number | undefined
  const release = async (r: Remote | null): Promise<void> => {
    const t = monoMs()
    await releaseMachine(ctx, provider, lease, r, state.jobId)
    releaseMs = monoMs() - t
  }
  let remote: Remote | null = null
  try {
    // A machine that is destroyed on release needs no tidying (and may already be gone).
    if (!provider.releaseDestroys) {
      const where = `${state.host.host}:${state.host.port}`
      let first: Remote
      try {
        first = await openJobRemote(ctx, state.host, state.localDir, { cleanup: true })
      } catch (e) {
        // Unreachable: the machine still goes back. The provider connects on its own, and one it
        // cannot reach either it marks for replacement (a pool member: its protection lifted).
        await releaseUnreached(ctx, provider, lease, state.jobId).catch((r: unknown) =>
          log.warn(`giving ${where} back failed too: ${formatError(r)}`)
        )
        throw e
      }
      // The job's agent may answer while its own connection is dead (a NAT dropped it): once that
      // or the agent is found lost, the rest goes over a new connection.
      const rejoinable = rejoinableRemote(ctx, first, state.host)
      rejoinable.rejoin()
      remote = rejoinable
      const bounded = cleanupDeadline(
        remote,
        ctx.config.timeouts.cleanupSeconds,
        `cleaning up ${state.host.host}:${state.host.port}`,
        ' (the next prepare_job of this runner there removes what is left)'
      )
      try {
        const docker = new RemoteDocker(bounded.remote, ctx.config.remote.dockerSocket)
        const counts = await thenFolders(
          docker.removeOwned(LABEL_JOB, state.jobId),
          () => removeJobFolder(bounded.remote, ctx.config.remote.workRoot, state.jobRoot, state.container?.image ?? null),
          (f) => log.warn(`removing the job folder failed too: ${formatError(f)}`)
        )
        log.progress(`cleaned up ${where}: ${describeCounts(counts)}`)
        const kept = keptWarning(counts, where)
        if (kept) log.warn(kept)
      } finally {
        // The host goes back even if removing something failed; the next prepare_job prunes by label.
        try {
          await release(bounded.remote)
        } finally {
          bounded.clear()
        }
      }
    } else {
      await release(null)
    }
  } finally {
    remote?.close()
    await stopAgents(state.localDir)
    rmSync(state.localDir, { recursive: true, force: true })
  }
  const total = monoMs() - started
  const timings = { cleanup: total, ...(releaseMs !== undefined ? { [releasePhase]: releaseMs } : {}) }
  log.progress(timingsLine(timings, total))
  await recordCleanedUp(fleet, warn, { reservation: lease.reservation, timings })
  closeJobFleet(state.jobId)
  return { exitCode: 0 }
}

/** Where a config's provider looks, for the step log. */
function describeWhere(c: Config): string {
  return 'region' in c.provider ? `region ${c.provider.region}` : `provider ${c.provider.kind}`
}

/** Everything this runner left, found by owner label/tag and local folder name. */
async function withoutState(ctx: HookContext, provider: VmProvider<Lease>): Promise<void> {
  const owner = ownerId(ctx.runner.runnerName, ctx.runner.workDir)
  const workRoot = ctx.config.remote.workRoot
  const tidied: string[] = []
  let report: OrphanReport
  let local: number
  try {
    report = await releaseOrphans(ctx, provider, owner, async (remote, machine) => {
      const r = await removeOwnedLeftovers(remote, workRoot, ctx.config.remote.dockerSocket, owner)
      tidied.push(`${machine}: ${r.removed}, ${r.jobFolders} job folders`)
    })
  } finally {
    local = await removeLocalJobFolders(ctx, owner)
  }
  const done = [...tidied, ...(report.released.length ? [`released ${report.released.join(', ')}`] : [])]
  ctx.log.progress(
    `cleaned up this runner's leftovers: ${done.join('; ') || 'nothing found'}${local ? `; ${local} local job folders` : ''}`
  )
  if (report.unreachable.length)
    throw new TransportError(
      `cleanup_job could not clean up every host: ${report.unreachable.map((u) => `${u.machine}: ${u.reason}`).join('; ')}`,
      'network'
    )
}

/**
 * A lost job's containers, networks, volumes and job folders of this runner on one machine. Folder
 * names are listed from inside the jobs folder and must match the pattern: a listing is never taken
 * as a path to remove.
 */
export async function removeOwnedLeftovers(
  remote: Remote,
  workRoot: string,
  dockerSocket: string,
  owner: string
): Promise<{ removed: string; jobFolders: number }> {
  let jobFolders = 0
  const removed = describeCounts(
    await thenFolders(
      new RemoteDocker(remote, dockerSocket).removeOwned(LABEL_OWNER, owner),
      async () => {
        jobFolders = await removeOwnerFolders(remote, workRoot, owner)
      },
      () => undefined // the first failure is the one reported
    )
  )
  return { removed, jobFolders }
}

/** The job folders of `owner` on a machine, removed; how many there were. */
async function removeOwnerFolders(remote: Remote, workRoot: string, owner: string): Promise<number> {
  const label = "list this runner's job folders"
  const names = expectEach(
    await ask(
      remote,
      `cd ${shq(workRoot)}/jobs 2>/dev/null || exit 0; for d in ${owner}-${HEX16_GLOB}; do [ -e "$d" ] || [ -L "$d" ] || continue; ${record('"$d"')}; done`,
      { label }
    ),
    new RegExp(`^${owner}-[0-9a-f]{16}$`),
    label
  )
  for (const n of names) await removeJobFolder(remote, workRoot, jobFolder(workRoot, owner, n.slice(owner.length + 1)), null)
  return names.length
}
