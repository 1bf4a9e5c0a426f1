// prepare_job as a sequence of named parts: plan (every input check, nothing started), lease a host,
// the job folder and first copy, network and volumes, images, containers, health, and the response.
// Each part that creates something puts its undo on a list; a failure anywhere runs the list in
// reverse, so a failed or cancelled prepare_job leaves nothing behind.
import { rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { Cancelled, HookError, markIfBeforeCancel } from '../errors'
import { LABEL_OWNER, newJobId, ownerId } from '../labels'
import type { PrepareJobArgs } from '../protocol'
import type { Acquired } from '../providers/provider'
import { machineOf, providerFor, workRootOf, type Lease } from '../providers/factory'
import {
  acquireMachineDirect,
  jobLocalDir,
  rejoinableRemote,
  releaseMachine,
  removeLocalJobFolders,
  startAgentInBackground,
  type AgentStart
} from '../session'
import type { Rejoinable } from '../remote/rejoinable'
import { tools } from '../tools'
import { recordBase } from '../sync/sync'
import { checkNamesDistinct } from '../sync/safe-fs'
import { removeJobFolder } from '../docker/job-folder'
import { registrySecrets } from '../docker/cli'
import { describeCounts, RemoteDocker, sayLeftovers, type Counts } from '../docker/remote-docker'
import { isAlpine, type Inspect } from '../docker/steps'
import { InFlight } from '../cancel'
import { mb, syncTarget } from '../job'
import { initialState, onJobMachine, ownStateIssues, stateFacts, storedState, type StoredState } from '../state'
import { containersOf, onMachine, planJob, type ContainerPlan, type JobPlan, type PlanFacts } from '../prepare/plan'
import { allOf, Undo } from '../prepare/undo'
import { startsEarly } from '../prepare/early-start'
import { externalsVersion, makeJobFolder, startCopy } from '../prepare/first-copy'
import { waitHealthy, type Started } from '../prepare/health'
import { buildResponse } from '../prepare/response'
import { closeJobFleet, jobFleet } from '../fleet/job-fleet'
import { stampBeat } from '../fleet/beat-period'
import { recordPrepared } from '../fleet/job-ledger-writes'
import { timingsLine } from '../fleet/timings-line'
import { monoMs } from '../mono-clock'

/** Milliseconds per part, for one debug line at the end (where prepare_job's time goes). */
class Timings {
  private readonly parts: string[] = []
  private readonly marks = new Map<string, number>()
  private last = monoMs()
  constructor(readonly started = monoMs()) {}
  mark(part: string): void {
    const now = monoMs()
    this.parts.push(`${part} ${now - this.last}`)
    this.marks.set(part, now)
    this.last = now
  }
  /** When a part ended. */
  at(part: string): number {
    return this.marks.get(part) ?? this.last
  }
  toString(): string {
    return `${this.parts.join(', ')} (ms; total ${monoMs() - this.started})`
  }
}

const VIA = { tar: 'tar over the connection; ', rsync: 'rsync; ', none: '' }

/** The containers' ids in start order, and whether each was started already. */
type Created = Promise<{ id: string; started: boolean }[]>

/** What the parts of one prepare_job share. */
interface Run {
  ctx: HookContext
  plan: JobPlan
  containers: ContainerPlan[]
  localDir: string
  undo: Undo
  /** Awaits remote work so that a cancel stops the wait at once, and the undo waits for it to land. */
  step: <T>(work: Promise<T>) => Promise<T>
  time: Timings
  /** The host's direct connection, once leased: rejoined for the undo, closed at the end. */
  remote: Rejoinable | null
}

/** `remote` is a direct connection; `agent` (when the job has one) starts alongside the other parts. */
type Host = Acquired<Lease> & { docker: RemoteDocker; agent: AgentStart | null }

export async function prepareJob(args: PrepareJobArgs, ctx: HookContext): Promise<HandlerResult> {
  const { config, runner, log } = ctx
  const owner = ownerId(runner.runnerName, runner.workDir)
  const facts = {
    hostWork: runner.workDir,
    workspace: runner.workspace,
    runnerName: runner.runnerName,
    workRoot: config.remote.workRoot,
    dockerSocket: config.remote.dockerSocket,
    toolCache: config.sync.toolCache,
    owner,
    jobId: newJobId(),
    externalsVersion
  }
  const plan = planJob(args, facts)
  if (!plan) {
    await ctx.respond({})
    return { exitCode: 0, response: {} }
  }
  // Parts of the state are the machine's answers (a pool member's work root, the job container's
  // PATH): one the next command would refuse fails here, undone, not in every step as the runner's fault.
  const keepable = (state: StoredState): void => {
    const issues = ownStateIssues(state, stateFacts(ctx))
    if (issues.length) throw new HookError(`the job's state would be refused by its next command: ${issues.join('; ')}`)
  }
  // Every step's pull would refuse it: refused before any machine is got.
  checkNamesDistinct(runner.workDir)

  // An earlier job's local folder (its EC2 key among others) whose cleanup_job never came.
  const stale = await removeLocalJobFolders(ctx, owner)
  if (stale) log.debug(`removed ${stale} local folder(s) of this runner's earlier jobs (no cleanup_job came for them)`)

  // Every remote part is awaited through this: a cancel stops the wait at once (see cancel.ts).
  const inflight = new InFlight(ctx.signal)
  const run: Run = {
    ctx,
    plan,
    containers: containersOf(plan),
    localDir: jobLocalDir(ctx, owner, plan.jobId),
    undo: new Undo(),
    step: (w) => inflight.track(w),
    time: new Timings(),
    remote: null
  }
  // A long prepare_job (a large pull) must not look dead to reap; closeJobFleet stops the beats.
  jobFleet(ctx, plan.jobId).keepBeating(ctx.beatMs, (m) => log.warn(m))
  try {
    // The step log folds each part; what failed stays readable after its fold (the error line comes last).
    const host = await log.group('Getting a host', () => leaseHost(run, args, facts, keepable))
    // A lease that came in after the cancel (a connect or a lease call that heeds none): nothing more
    // is started on it, the undo gives it back.
    if (ctx.signal.aborted) throw Cancelled.by(ctx.signal)
    run.time.mark('lease')
    const copied = await log.group("Copying the job's files", () => folderAndCopy(run, host))
    const docked = await log.group('Images', () => images(run, host, copied.docking))
    const starting = run.plan.services.length
      ? run.plan.job
        ? 'Starting the services and the job container'
        : 'Starting the services'
      : 'Starting the job container'
    const ready = await log.group(starting, () => startAll(run, host, docked.created))
    await run.step(copied.base)
    run.time.mark('base listing')
    // The first step finds the agent ready; one that failed to start fails the job here, as before.
    if (host.agent) await run.step(host.agent.ready)
    run.time.mark('agent')
    return await answer(run, host, ready, keepable)
  } catch (err) {
    return await undoAll(run, inflight, err)
  } finally {
    run.remote?.close()
    closeJobFleet(plan.jobId)
  }
}

/**
 * The provider's part and the plan on the machine got: a pool member's work root is known once it
 * is leased (remote.workRoot may be ~/path), and the plan follows it; the lease is checked as the
 * job's state would keep it before anything is made on the machine (its work root is the member's word).
 */
async function leaseHost(run: Run, args: PrepareJobArgs, facts: PlanFacts, keepable: (s: StoredState) => void): Promise<Host> {
  const { ctx, plan } = run
  const { config, runner } = ctx
  const a = await getHost(ctx, plan, run.localDir, run.undo, run.time.started)
  run.remote = a.remote
  const workRoot = workRootOf(config, a.lease)
  if (workRoot !== config.remote.workRoot) {
    run.ctx = onJobMachine(ctx, workRoot)
    run.plan = planJob(args, { ...facts, workRoot, jobId: plan.jobId }) as JobPlan
  }
  run.plan = onMachine(run.plan, machineOf(a.lease), runner.runnerName)
  run.containers = containersOf(run.plan)
  const { jobId, jobRoot, repoRel, owner } = run.plan
  keepable(storedState(initialState({ jobId, owner, lease: a.lease, jobRoot, hostWork: runner.workDir, repoRel, localDir: run.localDir })))
  return { ...a, docker: new RemoteDocker(a.remote, config.remote.dockerSocket) }
}

/** The response, checked as the next command will read it, the timings and the fleet's record; written last. */
async function answer(
  run: Run,
  host: Host,
  ready: Awaited<ReturnType<typeof startAll>>,
  keepable: (s: StoredState) => void
): Promise<HandlerResult> {
  const { ctx } = run
  const { log } = ctx
  const response = buildResponse(run.plan, host.lease, run.localDir, ready.ids, ready.infos, ready.isAlpine)
  keepable(response.state as StoredState)
  log.debug(`prepare_job timings: ${run.time.toString()}`)
  const phases = jobPhases(run.time, host.timings)
  log.progress(`job ready in ${(phases.total / 1000).toFixed(1)} s`)
  log.progress(timingsLine(phases, phases.total))
  const fleet = jobFleet(ctx, run.plan.jobId)
  await recordPrepared(fleet, (m) => log.warn(m), {
    provider: host.lease.kind,
    pool: host.pool,
    machine: machineOf(host.lease) ?? `${host.lease.connect.host}:${host.lease.connect.port}`,
    reservation: host.lease.reservation,
    startedAt: fleet.clock.now() - phases.total,
    timings: phases
  })
  // A cancel during the ledger's write is a cancel, not a success with a response.
  if (ctx.signal.aborted) throw Cancelled.by(ctx.signal)
  // The job's steps beat at once only when this is a period old (main.ts).
  if (host.lease.reservation)
    try {
      stampBeat(run.localDir)
    } catch {
      // the first step beats at once instead
    }
  // Last: the runner reads it only after exit 0, so one that cannot be written is undone below.
  await ctx.respond(response)
  return { exitCode: 0, response }
}

/** A failed or cancelled prepare_job: what it made is undone, last first, and its failure thrown on. */
async function undoAll(run: Run, inflight: InFlight, err: unknown): Promise<never> {
  const { config, log, signal } = run.ctx
  // A cancel during the undo below must not hide why the job failed.
  markIfBeforeCancel(err, signal)
  // What was still running (a container being created, the base being written into the local
  // folder) lands first, so the undo finds it. Where the release destroys the machine, nothing on
  // it needs finding: only the local writes get a moment, so the terminate goes out well before
  // the runner's SIGKILL.
  const destroys = providerFor(config).releaseDestroys
  await inflight.settle(destroys ? 1000 : config.timeouts.cancelGraceSeconds * 1000 + 5000)
  // A connection that dropped is made again for the undo (once), so a network blip leaves nothing.
  run.remote?.rejoin()
  await run.undo.run((m) => log.warn(m), config.timeouts.cleanupSeconds * 1000, {
    left: () => inflight.leftBeforeRelease(),
    due: inflight.releaseDue()
  })
  rmSync(run.localDir, { recursive: true, force: true })
  throw err
}

/** The job's phases in ms: the provider's own (else the whole lease as acquire), then the copy, the containers and health. */
function jobPhases(time: Timings, provider: Record<string, number> | undefined): Record<string, number> {
  const lease = time.at('lease')
  return {
    ...(provider ?? { acquire: lease - time.started }),
    sync: time.at('copy') - lease,
    containers: time.at('starts') - time.at('copy'),
    health: time.at('health') - time.at('starts'),
    total: monoMs() - time.started
  }
}

/**
 * The job folder and the first copy. Alongside the copy: the network, volumes and the check for
 * images, and, when no image needs a pull, the containers' creation and the early starts.
 */
async function folderAndCopy(run: Run, host: Host): Promise<{ base: Promise<void>; docking: ReturnType<typeof dockerParts> }> {
  const { ctx, plan, step, time } = run
  const r = host.remote
  const workRoot = ctx.config.remote.workRoot
  // Without OpenSSH's client the copy goes through the agent (see bulkTransport).
  if (host.agent && !tools().ssh) await step(host.agent.ready)
  // Leftovers of an earlier job of this runner on this host (a runner runs one job at a time); this
  // job's own network and containers, made alongside, are spared.
  const pruned = step(host.docker.removeOwned(LABEL_OWNER, plan.owner, plan.jobId))
  pruned.catch(() => undefined)
  const jobEarly = startsEarly(plan)
  // On the list before the folder is made: a cancel stops the wait at once, and the folder may land after it.
  run.undo.push('remove the job folder', () => removeJobFolder(r, workRoot, plan.jobRoot, null), { onHost: true })
  const folderMade = step(
    makeJobFolder(r, workRoot, plan.jobRoot, {
      pruneOwner: plan.owner,
      dirs: jobEarly?.dirs ?? [],
      externals: plan.externals?.remote,
      externalsKeepDays: ctx.config.remote.externalsKeepDays
    })
  )
  // The copy starts once the folder is made; one that cannot start fails the job here.
  const copyStarted = folderMade.then((folder) => {
    time.mark('folder')
    return startCopy(ctx, r, host.lease.connect, run.localDir, {
      hostWork: plan.layout.hostWork,
      jobRoot: plan.jobRoot,
      jobId: plan.jobId,
      roots: plan.copyRoots,
      externals: plan.externals,
      externalsPresent: folder.externalsPresent
    })
  })
  copyStarted.catch(() => undefined)
  // The network and the check for images go alongside the folder and the leftovers' removal. Volumes,
  // pulls and containers wait for both: a leftover's volume of the same name or its published ports
  // must be gone, and the folder holds the containers' bind sources and the pulls' docker config.
  // And for the copy to have started: one that cannot start fails the job before anything is made.
  const ready = Promise.all([pruned, copyStarted]).then(([counts]) => counts)
  ready.catch(() => undefined)
  const externals = copyStarted.then((c) => c.externals)
  externals.catch(() => undefined)
  const docking = step(dockerParts(run, host.docker, jobEarly !== null, ready, externals))
  docking.catch(() => undefined)
  const copy = await copyStarted
  const copying = step(copy.copied)
  copying.catch(() => undefined)
  const leftovers = await pruned
  sayLeftovers(leftovers, ctx.log)
  const copied = await copying
  time.mark('copy')
  ctx.log.progress(
    `copied ${copied.files} files / ${mb(copied.bytes)} MB in ${(copied.ms / 1000).toFixed(2)} s (${VIA[copied.via]}externals ${copied.externals})`
  )
  // The sync base (both sides' listings) only has to be recorded before the first step, so it is
  // made alongside the rest. After rsync the local side is read after the copy, not during it (that
  // cost the copy CPU); a tar copy hands over the walk it sent. Nothing writes the runner's files
  // while prepare_job runs: the runner waits for it.
  const base = recordBase(
    syncTarget(ctx, { hostWork: plan.layout.hostWork, jobRoot: plan.jobRoot, localDir: run.localDir }, r),
    copied.roots,
    copied.local,
    copied.ms
  )
  base.catch(() => undefined)
  return { base, docking }
}

/** Every image present by images.pullPolicy (pulls in parallel), once the network and volumes are made. */
async function images(run: Run, host: Host, docking: ReturnType<typeof dockerParts>): Promise<Awaited<ReturnType<typeof dockerParts>>> {
  const { ctx, plan, containers, step } = run
  const d = await docking
  const t = Date.now()
  for (const c of containers) for (const s of registrySecrets(c.registry)) ctx.log.addSecret(s)
  // A failed pull stops the others: the job fails anyway, and a large pull would hold the undo, and
  // the machine, until it ended or timed out. allOf: the undo still starts only once they have ended.
  const failed = new AbortController()
  const limits = {
    signal: AbortSignal.any([ctx.signal, failed.signal]),
    timeoutMs: ctx.config.images.pullTimeoutSeconds * 1000,
    onRetry: (l: string) => ctx.log.progress(l)
  }
  let first: { error: unknown } | null = null
  const how = await step(
    allOf(
      containers.map(async (c, i) => {
        try {
          const h = await host.docker.ensureImage(
            c.image,
            ctx.config.images.pullPolicy,
            c.registry,
            `${plan.jobRoot}/docker-config-${i}`,
            (l) => ctx.log.debug(l),
            limits,
            d.present[i]
          )
          if (h === 'pulled') ctx.log.progress(`pulled ${c.image} in ${((Date.now() - t) / 1000).toFixed(1)} s`)
          return h
        } catch (e) {
          first ??= { error: e }
          failed.abort()
          throw e
        }
      })
    )
  ).catch((e: unknown) => {
    // The failure that stopped the others, not their stop (unless the runner cancelled).
    throw first && !ctx.signal.aborted ? first.error : e
  })
  ctx.log.progress(`images: ${containers.map((c, i) => `${c.image} (${how[i]})`).join(', ')}`)
  run.time.mark('network, volumes, images')
  return d
}

/** Creates what is not created yet, starts what is not started (services first), and waits for health. */
async function startAll(
  run: Run,
  host: Host,
  early: Created | null
): Promise<{ ids: string[]; infos: Map<string, Inspect>; isAlpine: boolean | undefined }> {
  const { ctx, plan, containers, step, time } = run
  const created = await step(early ?? createAll(host.docker, plan, containers, false, null))
  const ids = created.map((c) => c.id)
  time.mark('creates')
  // Services first (the job container may expect them), then the job container.
  const started: Started[] = []
  for (const [i, c] of containers.entries()) {
    if (!created[i].started) await step(host.docker.start(ids[i], c.what))
    started.push({ id: ids[i], image: c.image, what: c.what })
  }
  time.mark('starts')
  const alpine = plan.job ? step(isAlpine(host.docker.engine, ids[ids.length - 1])) : Promise.resolve(undefined)
  alpine.catch(() => undefined)
  const infos = await step(waitHealthy(ctx, host.docker, started))
  time.mark('health')
  return { ids, infos, isAlpine: await alpine }
}

/**
 * The provider's part: a host for the job over a direct connection, and its agent started alongside
 * the parts that follow; stopping the agent and releasing the host go on the undo list.
 */
async function getHost(
  ctx: HookContext,
  plan: JobPlan,
  localDir: string,
  undo: Undo,
  started: number
): Promise<Acquired<Lease> & { remote: Rejoinable; agent: AgentStart | null }> {
  const provider = providerFor(ctx.config)
  const got = await acquireMachineDirect(ctx, provider, plan.jobId, plan.owner, localDir)
  const a = { ...got, remote: rejoinableRemote(ctx, got.remote, got.lease.connect) }
  undo.push('release the host', () => releaseMachine(ctx, provider, a.lease, a.remote, plan.jobId))
  if (provider.releaseDestroys) undo.releaseDestroysHost()
  const agent = startAgentInBackground(ctx, a.lease.connect, localDir, provider.keeper?.(a.lease) ?? undefined)
  // Pushed after the release so that it runs first: an agent still starting is ended, not leaked.
  if (agent) undo.push('stop the agent', () => agent.stop())
  ctx.log.progress(`using ${provider.describe(a.lease)} (${monoMs() - started} ms)`)
  return { ...a, agent }
}

/**
 * The network and which images are present; once `ready` (the job folder made, the leftovers gone,
 * the copy started) the named volumes; then, if no image needs pulling, the containers' creation
 * too (in start order).
 */
async function dockerParts(
  run: Run,
  docker: RemoteDocker,
  jobEarly: boolean,
  ready: Promise<Counts>,
  externals: Promise<unknown>
): Promise<{ present: boolean[]; created: Created | null }> {
  const { ctx, plan, containers } = run
  // Started right after the job folder's command went out: a cancel that came before it starts
  // nothing here; one that comes later stops the folder's wait, and so `ready`, so no volume, pull
  // or container follows.
  if (ctx.signal.aborted) throw Cancelled.by(ctx.signal)
  // One entry for all of it: everything the job creates carries the owner label.
  run.undo.push(
    "remove the job's containers, network and volumes",
    async () => {
      const removed = await docker.removeOwned(LABEL_OWNER, plan.owner)
      ctx.log.debug(`undo removed ${describeCounts(removed)}`)
    },
    { onHost: true }
  )
  const always = ctx.config.images.pullPolicy === 'always'
  // Under "always" every image is pulled, so whether it is there is not asked.
  const look = (): Promise<boolean[]> =>
    always ? Promise.resolve(containers.map(() => false)) : allOf(containers.map((c) => docker.imagePresent(c.image)))
  const [seen, , leftovers] = await allOf<[boolean[], string, Counts]>([
    look(),
    docker.createNetwork(plan.network, plan.labels),
    ready.then(async (counts) => {
      await allOf(plan.volumes.map((v) => docker.ensureVolume(v, plan.labels)))
      return counts
    })
  ])
  // The leftovers' removal takes the images an earlier job built, with every tag it gave them (it
  // may have tagged one `node:20`): one found before it may be gone now, and is looked for again.
  const present = leftovers.images ? await look() : seen
  // Nothing new is created once the job is cancelled (the undo may already be looking).
  if (ctx.signal.aborted) throw Cancelled.by(ctx.signal)
  // Tracked, so that a failure elsewhere waits for the creation before undoing.
  const created = !always && present.every(Boolean) ? run.step(createAll(docker, plan, containers, jobEarly, externals, ctx.signal)) : null
  created?.catch(() => undefined)
  return { present, created }
}

/**
 * Creates the containers. A service that binds nothing the first copy fills is started right away,
 * and so is the job container when `jobEarly` (see startsEarly). The others are started by the
 * caller, in order, after the copy. One that binds the externals is created (and so started) once
 * they are in place (`externals`, when the copy is still running): docker refuses a missing source
 * (see mounts.ts).
 */
function createAll(
  docker: RemoteDocker,
  plan: JobPlan,
  containers: ContainerPlan[],
  jobEarly: boolean,
  externals: Promise<unknown> | null,
  signal?: AbortSignal
): Created {
  return allOf(
    containers.map(async (c) => {
      if (c.bindsExternals && externals) {
        await externals
        // Nothing new is created once the job is cancelled (as in dockerParts).
        if (signal?.aborted) throw Cancelled.by(signal)
      }
      const id = await docker.create(c.spec, plan.jobRoot)
      const startNow = c.role === 'service' ? !c.needsCopy : jobEarly
      if (!startNow) return { id, started: false }
      await docker.start(id, c.what)
      return { id, started: true }
    })
  )
}
