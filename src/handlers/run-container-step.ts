// run_container_step: a container action, from an image (pulled by policy) or built on the remote
// from the action's Dockerfile, with the /github/* mounts laid out as the runner expects. Works
// without prepare_job (state null): then the step leases a host for itself and gives it back.
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { dirname } from 'node:path'
import type { HandlerResult, HookContext } from '../context'
import { Cancelled, InputError, TransportError, formatError } from '../errors'
import type { ContainerArgs } from '../protocol'
import { initialState, onJobMachine, type HookState } from '../state'
import { acquireMachine, jobLocalDir, keepOf, openJobRemote, releaseMachine, stopAgent } from '../session'
import { keptWarning, RemoteDocker, sayLeftovers } from '../docker/remote-docker'
import { runContainer } from '../docker/steps'
import { actionNote, noteStep, stepEnded, stopLeftRunning } from '../docker/left-running'
import { buildImage, registrySecrets, removeImage } from '../docker/cli'
import { pull, recordBase } from '../sync/sync'
import { betweenSteps } from '../sync/early-push'
import { connectionLost, failedStep } from './failed-step'
import { firstCopyRoots, layoutOf, outputTo, PUSH_ROOTS, pushRootsOf, syncTarget } from '../job'
import { rejoinArgs } from '../shlex'
import { remotePath, repoRootOf, type Layout } from '../paths'
import { LABEL_JOB, LABEL_OWNER, labelFlagsOf, labelMap, newJobId, ownerId } from '../labels'
import { machineOf, providerFor, workRootOf, type Lease } from '../providers/factory'
import type { VmProvider } from '../providers/provider'
import type { Remote } from '../remote/remote'
import { keepAlive, type LeaseState } from '../remote/agent'
import { cleanupDeadline } from '../remote/deadline'
import { jobFolder } from '../docker/job-folder'
import { removeJobFolder } from '../docker/job-folder'
import { copyUp, makeJobFolder } from '../prepare/first-copy'
import { baseEnv, mountsOf } from '../prepare/plan'
import type { MountSpec } from '../docker/mounts'
import { closeJobFleet, jobFleet } from '../fleet/job-fleet'

export async function runContainerStep(args: ContainerArgs, state: HookState | null, ctx: HookContext): Promise<HandlerResult> {
  if (!args.image && !args.dockerfile) throw new InputError('args: run_container_step needs image or dockerfile')
  if (state) {
    const plan = planStep(args, layoutOf(state, ctx.config.remote.dockerSocket))
    const remote = await openJobRemote(ctx, state.host, state.localDir, { keep: keepOf(ctx, state.host) })
    try {
      return await runIn(args, plan, state, remote, ctx, pushRootsOf(state))
    } finally {
      remote.close()
    }
  }
  return withOwnHost(args, ctx)
}

interface StepPlan {
  mounts: MountSpec[]
  /** The Dockerfile's path on the remote, when the action is built from one. */
  dockerfile: string | null
}

/** Every mount and the Dockerfile mapped to remote paths, checked as prepare_job's: done before anything is started. */
export function planStep(args: ContainerArgs, layout: Layout): StepPlan {
  const { mounts } = mountsOf(args, 'args', layout, new Set())
  return { mounts, dockerfile: args.image ? null : remotePath(layout, args.dockerfile!, 'args.dockerfile') }
}

/**
 * The step on its machine. A failure the VM caused on a working connection is not a lost machine,
 * and one after the container may have run brings back what it wrote (failedStep).
 */
async function runIn(
  args: ContainerArgs,
  plan: StepPlan,
  state: HookState,
  remote: Remote,
  ctx: HookContext,
  pushRoots: string[]
): Promise<HandlerResult> {
  const target = syncTarget(ctx, state, remote)
  // Set while the container may have run and its end is not known: only then can a failure leave
  // something it wrote to bring back.
  let running = false
  // Noted from just before the container is made until its end is known (left-running.ts).
  let note: string | null = null
  try {
    const docker = new RemoteDocker(remote, ctx.config.remote.dockerSocket)
    for (const line of await stopLeftRunning(docker.engine, state.container?.id ?? null, state.localDir)) ctx.log.warn(line)
    // The image's presence is looked up (Engine API) while the push runs.
    const present = args.image && ctx.config.images.pullPolicy !== 'always' ? docker.imagePresent(args.image) : Promise.resolve(false)
    present.catch(() => undefined)
    await betweenSteps.push(target, pushRoots)
    const labels = labelMap(state.owner, state.jobId, ctx.runner.runnerName, machineOf(state.host))
    const built = args.image ? null : `rch-action-${state.jobId}:${randomBytes(4).toString('hex')}`
    const image = built ?? args.image!
    await ctx.log.group(built ? `Building ${args.dockerfile}` : `Image ${image}`, async () => {
      if (built) {
        const dockerfile = plan.dockerfile!
        ctx.log.progress(`building ${args.dockerfile}`)
        await buildImage(remote, built, dockerfile, dirname(dockerfile), labelFlagsOf(labels), (l) => ctx.log.debug(l), ctx.signal)
        return
      }
      // Registered before the pull, as prepare_job does: its lines and its failure are logged masked.
      for (const s of registrySecrets(args.registry)) ctx.log.addSecret(s)
      const limits = {
        signal: ctx.signal,
        timeoutMs: ctx.config.images.pullTimeoutSeconds * 1000,
        onRetry: (l: string) => ctx.log.progress(l)
      }
      const how = await docker.ensureImage(
        image,
        ctx.config.images.pullPolicy,
        args.registry,
        // A folder of this step's own: two container actions of one job at once (background
        // steps) would each remove and rewrite the other's credentials.
        `${state.jobRoot}/docker-config-step-${randomBytes(6).toString('hex')}`,
        (l) => ctx.log.debug(l),
        limits,
        await present
      )
      if (how === 'pulled') ctx.log.progress(`pulled ${image}`)
    })
    const env = baseEnv(args.environmentVariables)
    const name = `rch-${state.jobId}-step-${randomBytes(3).toString('hex')}`
    note = actionNote(name)
    const unnoted = noteStep(state.localDir, note)
    if (unnoted) ctx.log.warn(unnoted)
    let res: Awaited<ReturnType<typeof runContainer>>
    try {
      res = await runContainer(
        docker.engine,
        {
          image,
          name,
          cmd: rejoinArgs(args.entryPointArgs),
          entrypoint: args.entryPoint || null,
          env,
          workdir: args.workingDirectory ?? '/github/workspace',
          mounts: plan.mounts,
          network: state.network,
          labels
        },
        outputTo(ctx.stdout, ctx.stderr),
        ctx.signal,
        () => (running = true)
      )
      running = false
      if (res.stop !== 'unconfirmed') stepEnded(state.localDir, note)
    } finally {
      // Also when the container could not be created or its stream failed; a hook killed before
      // this leaves the image to cleanup_job, which finds it by its labels.
      if (!args.image) await removeImage(remote, image, ctx.signal).catch(() => undefined)
    }
    if (res.cancelled) throw Cancelled.by(ctx.signal, res.stop)
    await pull(target, state.pullRoots)
    return { exitCode: res.exitCode }
  } catch (e) {
    const err = await failedStep(e, remote, ctx, running ? { target, roots: state.pullRoots, what: 'container action' } : null)
    // Failed over a working connection: runContainer removed its container before it threw. A lost
    // one keeps the note, for the job's next step to remove the container, as does a cancel whose
    // removal the VM did not confirm.
    const maybeLeft = connectionLost(err) || (err instanceof Cancelled && err.step === 'unconfirmed')
    if (note && !maybeLeft) stepEnded(state.localDir, note)
    throw err
  }
}

/** What a step without state leases for itself, planned on the machine it got. */
interface OwnHost {
  lease: Lease
  remote: Remote
  /** The context with the machine's own work root (a pool member's ~/path). */
  onMachine: HookContext
  /** The repository's folder under _work, which the first copy sends. */
  repoRel: string | null
  plan: StepPlan
  state: HookState
}

/** No prepare_job ran: lease a host for this one step, sync what it mounts, and clean up after. */
async function withOwnHost(args: ContainerArgs, hookCtx: HookContext): Promise<HandlerResult> {
  const { runner } = hookCtx
  const jobId = newJobId()
  const owner = ownerId(runner.runnerName, runner.workDir)
  // Checked before anything is leased; planned again on the machine's own work root (a pool's ~/path).
  stepPlanOn(args, hookCtx, owner, jobId, hookCtx.config.remote.workRoot)
  const repoRel = repoRootOf(runner.workDir, runner.workspace)
  const localDir = jobLocalDir(hookCtx, owner, jobId)
  const provider = providerFor(hookCtx.config)
  // Its machine's reservation is in no state, so main.ts's step heartbeats do not cover it: a
  // container action that outlasts fleet.reap.deadAfterMinutes must not look dead to reap.
  const fleet = jobFleet(hookCtx, jobId)
  fleet.keepBeating(hookCtx.beatMs, (m) => hookCtx.log.warn(m))
  const own = await leaseOwnHost(args, hookCtx, provider, { owner, jobId, localDir, repoRel }).catch((e: unknown) => {
    fleet.stopBeating()
    closeJobFleet(jobId)
    rmSync(localDir, { recursive: true, force: true })
    throw e
  })
  const { lease, remote, onMachine, plan, state } = own
  const { config } = onMachine
  // A lease that lapses unless renewed is renewed from here for the step's length (no agent runs).
  // Once it is lost (refused, or a whole ttl without a renewal) another job may hold the machine:
  // the step is stopped, as the agent stops a job's step.
  const keep = provider.keeper?.(lease)
  const leaseState: LeaseState = { lost: null, failing: null }
  const lost = new AbortController()
  const keeping = keep
    ? keepAlive(
        keep,
        remote,
        (m, level) => (level === 'info' ? onMachine.log.progress(m) : onMachine.log.warn(m)),
        () => undefined,
        leaseState,
        () => lost.abort('SIGTERM')
      )
    : null
  const ctx = keep ? { ...onMachine, signal: AbortSignal.any([hookCtx.signal, lost.signal]) } : onMachine
  // With the runner's signal alone: a lost lease must not cut the release short to a cancel's grace.
  let released: Promise<void> | null = null
  const release = (r: Remote | null): Promise<void> =>
    (released ??= releaseMachine(onMachine, provider, lease, r, jobId).catch((e) =>
      ctx.log.warn(`could not release the host: ${formatError(e)}`)
    ))
  // A machine whose release destroys it (EC2) goes at the runner's cancel: the runner kills the hook
  // 10 s after it, and stopping the step on a VM the job was root on may take that long. Destroyed,
  // it runs nothing more; a machine other jobs will use is released only once its step has stopped.
  const releaseAtCancel = (): void => void release(null)
  if (provider.releaseDestroys) {
    // A cancel that came while the machine was being acquired has already fired.
    if (hookCtx.signal.aborted) releaseAtCancel()
    else hookCtx.signal.addEventListener('abort', releaseAtCancel, { once: true })
  }
  // What the runner's earlier jobs left on a machine others use next (a hook killed before its own
  // teardown; no cleanup_job follows a step without state): removed first, as prepare_job does.
  const reused = !provider.releaseDestroys
  try {
    await ctx.log.group("Copying the step's files", async () => {
      const pruned = reused ? new RemoteDocker(remote, config.remote.dockerSocket).removeOwned(LABEL_OWNER, owner, jobId) : null
      pruned?.catch(() => undefined)
      await makeJobFolder(remote, config.remote.workRoot, state.jobRoot, reused ? { pruneOwner: owner } : {})
      const leftovers = await pruned
      if (leftovers) sayLeftovers(leftovers, ctx.log)
      const copied = await copyUp(ctx, remote, lease.connect, localDir, {
        hostWork: state.hostWork,
        jobRoot: state.jobRoot,
        jobId,
        roots: firstCopyRoots(own.repoRel, config.sync.toolCache),
        externals: null
      })
      if (copied.roots.length) await recordBase(syncTarget(ctx, state, remote), copied.roots, copied.local, copied.ms)
    })
    return await runIn(args, plan, state, remote, ctx, PUSH_ROOTS)
  } catch (e) {
    // A runner's cancel is told as its own, even after a lost lease aborted the step first, and
    // whatever the machine destroyed at the cancel made the step fail with.
    if ((e instanceof Cancelled || released) && hookCtx.signal.aborted)
      throw Cancelled.by(hookCtx.signal, e instanceof Cancelled ? e.step : undefined)
    if (leaseState.lost && lost.signal.aborted) throw new TransportError(`${leaseState.lost}; the step was stopped`, 'lease')
    throw e
  } finally {
    hookCtx.signal.removeEventListener('abort', releaseAtCancel)
    await giveBack(own, ctx, reused, async (r) => {
      keeping?.stop()
      fleet.stopBeating()
      await release(r)
    })
    closeJobFleet(jobId)
    await stopAgent(localDir, lease.connect)
    rmSync(localDir, { recursive: true, force: true })
  }
}

/** Where a step without state goes on a machine with `workRoot`: its job folder and its plan there. */
function stepPlanOn(
  args: ContainerArgs,
  ctx: HookContext,
  owner: string,
  jobId: string,
  workRoot: string
): { jobRoot: string; plan: StepPlan } {
  const jobRoot = jobFolder(workRoot, owner, jobId)
  const layout = layoutOf({ hostWork: ctx.runner.workDir, jobRoot, externals: null }, ctx.config.remote.dockerSocket)
  return { jobRoot, plan: planStep(args, layout) }
}

/**
 * The machine for a step without state, and the step planned again on its own work root (a pool
 * member's answer): a plan that fails there gives the machine back at once.
 */
async function leaseOwnHost(
  args: ContainerArgs,
  hookCtx: HookContext,
  provider: VmProvider<Lease>,
  job: { owner: string; jobId: string; localDir: string; repoRel: string | null }
): Promise<OwnHost> {
  const { owner, jobId, localDir, repoRel } = job
  const { runner } = hookCtx
  const { lease, remote } = await hookCtx.log.group('Getting a host', () => acquireMachine(hookCtx, provider, jobId, owner, localDir))
  try {
    const onMachine = onJobMachine(hookCtx, workRootOf(hookCtx.config, lease))
    const { jobRoot, plan } = stepPlanOn(args, hookCtx, owner, jobId, onMachine.config.remote.workRoot)
    const state = initialState({ jobId, owner, lease, jobRoot, hostWork: runner.workDir, repoRel, localDir })
    return { lease, remote, onMachine, repoRel, plan, state }
  } catch (e) {
    // Bounded as giveBack's release is: a member an earlier job was root on may hold the call.
    const bounded = cleanupDeadline(
      remote,
      hookCtx.config.timeouts.cleanupSeconds,
      `giving back ${lease.connect.host}:${lease.connect.port}`
    )
    await releaseMachine(hookCtx, provider, lease, bounded.remote, jobId)
      .catch((r) => hookCtx.log.warn(`could not release the host: ${formatError(r)}`))
      .finally(() => bounded.clear())
    remote.close()
    await stopAgent(localDir, lease.connect)
    throw e
  }
}

/**
 * After a step without state, within timeouts.cleanupSeconds as cleanup_job's (the VM, where the
 * job was root, must not hold the hook after its step nor keep the release from coming): on a
 * machine others use next, what the step could not remove or the job made with its labels, and
 * the job folder; then `release` over the bounded connection.
 */
async function giveBack(own: OwnHost, ctx: HookContext, reused: boolean, release: (r: Remote) => Promise<void>): Promise<void> {
  const { config } = ctx
  const { lease, remote, state } = own
  const where = `${lease.connect.host}:${lease.connect.port}`
  const bounded = cleanupDeadline(remote, config.timeouts.cleanupSeconds, `cleaning up after the container action on ${where}`)
  try {
    if (reused) {
      const counts = await new RemoteDocker(bounded.remote, config.remote.dockerSocket)
        .removeOwned(LABEL_JOB, state.jobId)
        .catch((e: unknown) => void ctx.log.warn(`could not remove the step's containers: ${formatError(e)}`))
      const kept = counts && keptWarning(counts, where)
      if (kept) ctx.log.warn(kept)
      await removeJobFolder(bounded.remote, config.remote.workRoot, state.jobRoot, null).catch((e) =>
        ctx.log.warn(`could not remove ${state.jobRoot}: ${formatError(e)}`)
      )
    }
    await release(bounded.remote)
  } finally {
    bounded.clear()
    remote.close()
  }
}
