// prepare_job as a sequence of named parts: plan (every input check, nothing started), lease a host,
// the job folder and first copy, network and volumes, images, containers, health, and the response.
// Each part that creates something puts its undo on a list; a failure anywhere runs the list in
// reverse, so a failed or cancelled prepare_job leaves nothing behind.
import { createHash } from 'node:crypto'
import { lstatSync, rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { LABEL_OWNER, newJobId, ownerId } from '../labels'
import type { PrepareJobArgs } from '../protocol'
import type { Remote } from '../remote/remote'
import { providerFor, type Acquired } from '../providers/provider'
import { acquireMachine, jobLocalDir, stopAgent } from '../session'
import { walkLocal } from '../sync/tree'
import { recordBase } from '../sync/sync'
import { removeJobFolder } from '../docker/job-folder'
import { countsTotal, describeCounts, RemoteDocker } from '../docker/remote-docker'
import { isAlpine } from '../docker/steps'
import { InFlight } from '../cancel'
import { mb, syncTarget } from '../job'
import { containersOf, planJob, type ContainerPlan, type JobPlan } from '../prepare/plan'
import { Undo } from '../prepare/undo'
import { makeJobFolder, startCopy } from '../prepare/first-copy'
import { waitHealthy, type Started } from '../prepare/health'
import { buildResponse } from '../prepare/response'

/** Content version of the runner's externals: same files → same remote copy, shared by jobs. */
function externalsVersion(dir: string): string {
  const h = createHash('sha256')
  for (const [p, n] of [...walkLocal(dir, ['.'], []).entries()].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`${p}\0${n.fp}\0`)
  return h.digest('hex').slice(0, 16)
}

/** Milliseconds per part, for one debug line at the end (where prepare_job's time goes). */
class Timings {
  private readonly parts: string[] = []
  private last = Date.now()
  constructor(readonly started = Date.now()) {}
  mark(part: string): void {
    const now = Date.now()
    this.parts.push(`${part} ${now - this.last}`)
    this.last = now
  }
  toString(): string {
    return `${this.parts.join(', ')} (ms; total ${Date.now() - this.started})`
  }
}

export async function prepareJob(args: PrepareJobArgs, ctx: HookContext): Promise<HandlerResult> {
  const { config, runner, log } = ctx
  const owner = ownerId(runner.runnerName)
  const plan = planJob(args, {
    hostWork: runner.workDir,
    workspace: runner.workspace,
    runnerName: runner.runnerName,
    workRoot: config.remote.workRoot,
    dockerSocket: config.remote.dockerSocket,
    toolCache: config.sync.toolCache,
    owner,
    jobId: newJobId(),
    externalsVersion
  })
  if (!plan) return { exitCode: 0, response: {} }

  const localDir = jobLocalDir(ctx, owner, plan.jobId)
  const undo = new Undo()
  // Every remote part is awaited through this: a cancel stops the wait at once (see cancel.ts).
  const inflight = new InFlight(ctx.signal)
  const step = <T>(work: Promise<T>): Promise<T> => inflight.track(work)
  const time = new Timings()
  let remote: Remote | null = null
  try {
    // The step log folds each part; what failed stays readable after its fold (the error line comes last).
    const host = await log.group('Getting a host', async () => {
      const a = await getHost(ctx, plan, localDir, undo)
      remote = a.remote
      log.progress(`using ${a.lease.connect.host}:${a.lease.connect.port} slot ${a.lease.slot} (${Date.now() - time.started} ms)`)
      return a
    })
    time.mark('lease')
    const r = host.remote
    const docker = new RemoteDocker(r, config.remote.dockerSocket)
    const containers = containersOf(plan)

    // The job folder and first copy; alongside the copy, the network, volumes and the check for
    // images, and, when no image needs a pull, the containers' creation. Nothing starts before the
    // copy is done: a container may read its mounts at once.
    const early = await log.group('Copying the job\'s files', async () => {
      const pruned = step(docker.removeOwned(LABEL_OWNER, owner))
      pruned.catch(() => undefined)
      const jobEarly = startsEarly(plan)
      await step(makeJobFolder(r, config.remote.workRoot, plan.jobRoot, { pruneOwner: owner, dirs: jobEarly ? jobEarly.dirs : [] }))
      undo.push('remove the job folder', () => removeJobFolder(r, config.remote.workRoot, plan.jobRoot, null))
      time.mark('folder')
      const copy = startCopy(ctx, r, host.lease.connect, localDir, { hostWork: plan.layout.hostWork, jobRoot: plan.jobRoot, jobId: plan.jobId, roots: plan.copyRoots, externals: plan.externals })
      const copying = step(copy.copied)
      copying.catch(() => undefined)
      const leftovers = await pruned
      if (countsTotal(leftovers)) log.progress(`removed leftovers of an earlier job: ${describeCounts(leftovers)}`)
      const jobGate = jobEarly ? (plan.job!.bindsExternals ? copy.externals : Promise.resolve()) : null
      const docking = step(dockerParts(ctx, docker, plan, containers, undo, step, jobGate))
      docking.catch(() => undefined)
      const copied = await copying
      time.mark('copy')
      log.progress(`copied ${copied.files} files / ${mb(copied.bytes)} MB in ${(copied.ms / 1000).toFixed(2)} s (externals ${copied.externals})`)
      // The sync base (both sides' listings) only has to be recorded before the first step, so it is
      // made alongside the rest. The local side is read after the copy, not during it (that cost the
      // copy CPU): nothing writes the runner's files while prepare_job runs, the runner waits for it.
      const base = recordBase(syncTarget(ctx, { hostWork: plan.layout.hostWork, jobRoot: plan.jobRoot, localDir }, r), copied.roots)
      base.catch(() => undefined)
      return { base, docking }
    })

    const images = await log.group('Images', async () => {
      const d = await early.docking
      const t = Date.now()
      for (const c of containers) if (c.registry?.password) log.addSecret(c.registry.password)
      const how = await step(Promise.all(
        containers.map((c, i) =>
          docker
            .ensureImage(c.image, config.images.pullPolicy, c.registry, `${plan.jobRoot}/docker-config-${i}`, (l) => log.debug(l), { signal: ctx.signal, timeoutMs: config.images.pullTimeoutSeconds * 1000 }, d.present[i])
            .then((h) => {
              if (h === 'pulled') log.progress(`pulled ${c.image} in ${((Date.now() - t) / 1000).toFixed(1)} s`)
              return h
            })
        )
      ))
      log.progress(`images: ${containers.map((c, i) => `${c.image} (${how[i]})`).join(', ')}`)
      return d
    })
    time.mark('network, volumes, images')

    const starting = plan.services.length ? (plan.job ? 'Starting the services and the job container' : 'Starting the services') : 'Starting the job container'
    const ready = await log.group(starting, async () => {
      const created = await step(images.created ?? createAll(docker, plan, containers, null))
      const ids = created.map((c) => c.id)
      time.mark('creates')
      // Services first (the job container may expect them), then the job container.
      const started: Started[] = []
      for (const [i, c] of containers.entries()) {
        if (!created[i].started) await step(docker.start(ids[i], c.what))
        started.push({ id: ids[i], image: c.image, what: c.what })
      }
      time.mark('starts')
      const alpine = plan.job ? step(isAlpine(docker.engine, ids[ids.length - 1])) : Promise.resolve(undefined)
      alpine.catch(() => undefined)
      const infos = await step(waitHealthy(ctx, docker, started))
      time.mark('health')
      return { ids, infos, isAlpine: await alpine }
    })

    await step(early.base)
    time.mark('base listing')
    const response = buildResponse(plan, host.lease, localDir, ready.ids, ready.infos, ready.isAlpine)
    log.debug(`prepare_job timings: ${time}`)
    log.progress(`job ready in ${((Date.now() - time.started) / 1000).toFixed(1)} s`)
    return { exitCode: 0, response }
  } catch (err) {
    // What was still running (a container being created, the base being written into the local
    // folder) lands first, so the undo finds it.
    await inflight.settle(config.timeouts.cancelGraceSeconds * 1000 + 5000)
    await undo.run((m) => log.warn(m))
    rmSync(localDir, { recursive: true, force: true })
    throw err
  } finally {
    ;(remote as Remote | null)?.close()
  }
}

/** The provider's part: a host for the job; stopping its agent and releasing it go on the undo list. */
async function getHost(ctx: HookContext, plan: JobPlan, localDir: string, undo: Undo): Promise<Acquired> {
  const provider = await providerFor(ctx.config)
  const a = await acquireMachine(ctx, provider, plan.jobId, plan.owner, localDir)
  undo.push('stop the agent', () => stopAgent(localDir, a.lease.connect))
  undo.push('release the host', () => provider.release(ctx, a.remote, a.lease, plan.jobId))
  return a
}

/**
 * The network and named volumes, and which images are present; then, if none needs pulling, the
 * containers' creation too (in start order).
 */
async function dockerParts(
  ctx: HookContext,
  docker: RemoteDocker,
  plan: JobPlan,
  containers: ContainerPlan[],
  undo: Undo,
  /** Tracks the creation started here, so a failure elsewhere waits for it before undoing. */
  track: <T>(work: Promise<T>) => Promise<T>,
  jobGate: Promise<unknown> | null
): Promise<{ present: boolean[]; created: ReturnType<typeof createAll> | null }> {
  // One entry for all of it: everything the job creates carries the owner label.
  undo.push('remove the job\'s containers, network and volumes', async () => {
    const removed = await docker.removeOwned(LABEL_OWNER, plan.owner)
    ctx.log.debug(`undo removed ${describeCounts(removed)}`)
  })
  const [present] = await Promise.all([
    Promise.all(containers.map((c) => docker.imagePresent(c.image))),
    docker.createNetwork(plan.network, plan.labels),
    Promise.all(plan.volumes.map((v) => docker.ensureVolume(v, plan.labels)))
  ])
  const created = ctx.config.images.pullPolicy !== 'always' && present.every(Boolean) ? track(createAll(docker, plan, containers, jobGate)) : null
  created?.catch(() => undefined)
  return { present, created }
}

/**
 * Creates the containers. A service that binds nothing the first copy fills is started right away;
 * so is the job container once `jobGate` settles (see startsEarly). The others are started by the
 * caller, in order, after the copy.
 */
function createAll(docker: RemoteDocker, plan: JobPlan, containers: ContainerPlan[], jobGate: Promise<unknown> | null): Promise<{ id: string; started: boolean }[]> {
  return Promise.all(
    containers.map(async (c) => {
      const id = await docker.create(c.spec, plan.jobRoot)
      const gate = c.role === 'service' ? (c.needsCopy ? null : undefined) : jobGate
      if (gate === null) return { id, started: false }
      await gate
      await docker.start(id, c.what)
      return { id, started: true }
    })
  )
}

/**
 * Whether the job container can start while the copy runs, and the bind sources to make for it
 * first. Only an idle job container (nothing runs in it before a step), and only when each folder
 * of `_work` it binds is a real folder on the runner host: those are made on the remote beforehand,
 * owned by the SSH user, so docker does not make them (as root) and the copy fills them in place.
 */
function startsEarly(plan: JobPlan): { dirs: string[] } | null {
  const job = plan.job
  if (!job || !job.idle) return null
  for (const b of job.workBinds) {
    try {
      if (!lstatSync(b.host).isDirectory()) return null
    } catch {
      return null
    }
  }
  return { dirs: [...new Set(job.workBinds.map((b) => b.remote).filter((d) => d !== plan.layout.remoteWork))] }
}
