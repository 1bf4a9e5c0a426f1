// prepare_job: lease a host, sync the job's mounts, start network, services and the job container,
// wait for health, and answer the runner (the containers and their ports, isAlpine, the state).
// Anything created is undone on failure.
import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import type { HandlerResult, HookContext } from '../context'
import { HookError, InputError } from '../errors'
import { labelArgs, newJobId, ownerId, LABEL_OWNER } from '../labels'
import type { ContainerArgs, Mount, PrepareJobArgs, PrepareJobResponse, ServiceContext } from '../protocol'
import { check, run, type Remote } from '../remote/remote'
import { ask, expectEach, record } from '../remote/answer'
import { shq } from '../remote/quote'
import { rejoinArgs, shlexSplit } from '../shlex'
import { providerFor } from '../providers/factory'
import { createJobFolderScript, HEX16_GLOB, jobFolder, removeJobFolder } from '../docker/job-folder'
import { acquireMachine, bulkTransport, jobLocalDir, releaseMachine, stopAgent } from '../session'
import { remotePath, repoRootOf, type Layout } from '../paths'
import { walkLocal } from '../sync/tree'
import { recordBase } from '../sync/sync'
import { rsyncUp } from '../sync/rsync'
import { createContainer, ensureImage, removeLabelled, startContainer, containerLogs, type CreateSpec, type MountSpec } from '../docker/cli'
import { validateEnvNames } from '../docker/env-script'
import { serviceAliases } from '../docker/image'
import { Engine } from '../docker/engine'
import { inspect, isAlpine, portMap } from '../docker/steps'
import { sleep } from '../retry'
import { InFlight } from '../cancel'
import { initialState, storedState, type HookState } from '../state'
import { isNormalAbsolute } from '../input-rules'
import { existingRoots, mb, RSYNC_EXCLUDES, syncTarget } from '../job'

interface Planned {
  args: ContainerArgs
  field: string
  options: string[]
}

function planContainer(args: ContainerArgs, field: string): Planned {
  if (!args.image) throw new InputError(`${field}.image: missing (a Dockerfile is not supported for job or service containers)`)
  validateEnvNames(args.environmentVariables, `${field}.environmentVariables`)
  const options = args.createOptions ? shlexSplit(args.createOptions) : []
  if (options === null) throw new InputError(`${field}.createOptions: unterminated quote in ${JSON.stringify(args.createOptions)}`)
  return { args, field, options }
}

function mountsOf(p: Planned, layout: Layout, named: Set<string>): MountSpec[] {
  const toSpec = (m: Mount, kind: 'user' | 'system', i: number): MountSpec => {
    const field = `${p.field}.${kind}MountVolumes.${i}.sourceVolumePath`
    const src = m.sourceVolumePath
    if (!src) return { source: null, target: m.targetVolumePath, readOnly: m.readOnly }
    if (!src.startsWith('/')) {
      named.add(src)
      return { source: src, target: m.targetVolumePath, readOnly: m.readOnly }
    }
    return { source: remotePath(layout, src, field), target: m.targetVolumePath, readOnly: m.readOnly }
  }
  return [...p.args.userMountVolumes.map((m, i) => toSpec(m, 'user', i)), ...p.args.systemMountVolumes.map((m, i) => toSpec(m, 'system', i))]
}

function baseEnv(env: Record<string, string>): Record<string, string> {
  return { ...env, GITHUB_ACTIONS: 'true', ...('CI' in env ? {} : { CI: 'true' }) }
}

/** Content version of the runner's externals: same files → same remote copy, shared by jobs. */
function externalsVersion(dir: string): string {
  const h = createHash('sha256')
  for (const [p, n] of [...walkLocal(dir, ['.'], []).entries()].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`${p}\0${n.fp}\0`)
  return h.digest('hex').slice(0, 16)
}

export async function prepareJob(args: PrepareJobArgs, ctx: HookContext): Promise<HandlerResult> {
  const { config, runner, log } = ctx
  if (!args.container && args.services.length === 0) return { exitCode: 0, response: {} }

  // Everything that can be checked before starting anything is checked here.
  const job = args.container ? planContainer(args.container, 'args.container') : null
  const services = args.services.map((s, i) => planContainer(s, `args.services.${i}`))
  const sys = args.container?.systemMountVolumes ?? []
  const hostWork = runner.workDir
  const workIndex = sys.findIndex((m) => m.targetVolumePath === '/__w')
  // Only the runner's own `_work` is ever copied up and written back into.
  if (workIndex >= 0 && sys[workIndex].sourceVolumePath !== hostWork) {
    throw new InputError(`args.container.systemMountVolumes.${workIndex}.sourceVolumePath: the /__w mount must be the runner's work folder ${hostWork}`)
  }
  const extIndex = sys.findIndex((m) => m.targetVolumePath === '/__e')
  const hostExternals = extIndex >= 0 ? sys[extIndex].sourceVolumePath : null
  if (hostExternals !== null && (!isNormalAbsolute(hostExternals) || hostExternals === '/')) {
    throw new InputError(`args.container.systemMountVolumes.${extIndex}.sourceVolumePath: the /__e mount must be a normalised absolute folder other than /`)
  }
  const repoRel = repoRootOf(hostWork, runner.workspace)
  const workRoot = config.remote.workRoot
  const owner = ownerId(runner.runnerName)
  const jobId = newJobId()
  const jobRoot = jobFolder(workRoot, owner, jobId)
  const extVersion = hostExternals ? externalsVersion(hostExternals) : null
  const layout: Layout = {
    hostWork,
    remoteWork: `${jobRoot}/w`,
    hostExternals,
    remoteExternals: extVersion ? `${workRoot}/externals/${extVersion}` : null,
    dockerSocket: config.remote.dockerSocket
  }
  const named = new Set<string>()
  const mounts = new Map<Planned, MountSpec[]>()
  for (const p of [...(job ? [job] : []), ...services]) mounts.set(p, mountsOf(p, layout, named))

  const localDir = jobLocalDir(ctx, owner, jobId)
  const provider = providerFor(config)
  const undo: { what: string; fn: () => Promise<unknown> }[] = []
  let remote = null as Remote | null
  let baseRecorded: Promise<void> | null = null
  // Every remote step is awaited through this: a cancel stops the wait at once (see cancel.ts).
  const inflight = new InFlight(ctx.signal)
  const step = <T>(work: Promise<T>): Promise<T> => inflight.track(work)
  try {
    const t0 = Date.now()
    // The step log folds each phase; what failed stays readable after its fold (the error line comes last).
    const acquired = await log.group('Getting a host', async () => {
      const a = await acquireMachine(ctx, provider, jobId, owner, localDir)
      remote = a.remote
      undo.push({ what: 'stop the agent', fn: () => stopAgent(localDir, a.lease.connect) })
      undo.push({ what: 'release the host', fn: () => releaseMachine(ctx, provider, a.lease, a.remote, jobId) })
      log.progress(`using ${provider.describe(a.lease)} (${Date.now() - t0} ms)`)
      return a
    })
    const lease = acquired.lease
    const r = acquired.remote
    await log.group('Copying the job\'s files', async () => {
      // Leftovers of an earlier job of this runner on this host (a runner runs one job at a time).
      const pruned = await step(removeLabelled(r, LABEL_OWNER, owner))
      // The same round trip checks that rsync is there for the sync below.
      const folderLabel = 'create the job folder'
      const folder = await step(ask(
        r,
        // Only names of the exact job folder pattern; rm of a symlink removes the link, never its target.
        `for d in ${shq(workRoot)}/jobs/${owner}-${HEX16_GLOB}; do [ -L "$d" ] || [ -e "$d" ] || continue; rm -rf "$d" 2>/dev/null || true; done; ` +
          `${createJobFolderScript(workRoot, jobRoot)} || exit 1; if command -v rsync >/dev/null; then ${record('rsync')}; else ${record('no-rsync')}; fi`,
        { label: folderLabel, silentShell: true }
      ).then((a) => expectEach(a, /^(no-)?rsync$/, folderLabel)))
      if (!pruned.startsWith('0 containers, 0 networks, 0 volumes')) log.progress(`removed leftovers of an earlier job: ${pruned}`)
      undo.push({ what: 'remove the job folder', fn: () => removeJobFolder(r, workRoot, jobRoot, null) })
      undo.push({ what: 'remove the job\'s containers', fn: () => removeLabelled(r, LABEL_OWNER, owner) })

      // Sync the mounts: the job's part of _work, and the runner's externals once per content version.
      const t1 = Date.now()
      const roots = existingRoots(hostWork, ['_temp', '_actions', ...(config.sync.toolCache ? ['_tool'] : []), ...(repoRel ? [repoRel] : [])])
      const transport = bulkTransport(ctx, lease.connect, localDir)
      if (folder.join() !== 'rsync') throw new HookError('rsync is not installed on the remote host (it is needed to sync the job\'s files)')
      const syncWork = roots.length ? rsyncUp(transport, hostWork, roots, `${jobRoot}/w`, RSYNC_EXCLUDES, ctx.signal) : Promise.resolve({ files: 0, bytes: 0 })
      const syncExt = (async () => {
        if (!hostExternals || !layout.remoteExternals) return 'none'
        const dest = layout.remoteExternals
        const have = await ask(r, `if [ -f ${shq(dest)}/.rch-complete ]; then ${record('yes')}; fi`, { label: 'look for the externals' })
        if (have.join() === 'yes') return 'reused'
        const tmp = `${dest}.tmp-${jobId}`
        // Unlike job folders, the content-versioned externals stay readable: they hold no secrets,
        // are shared by jobs, and containers running as other users must run the node in them.
        await check(r, `umask 022 && mkdir -p ${shq(tmp)}`)
        try {
          await rsyncUp(transport, hostExternals, ['.'], tmp, [], ctx.signal, 'shared')
          await check(r, `touch ${shq(tmp)}/.rch-complete && { mv -T ${shq(tmp)} ${shq(dest)} 2>/dev/null || rm -rf ${shq(tmp)}; }`, { label: 'install externals' })
        } catch (e) {
          await run(r, `rm -rf ${shq(tmp)}`).catch(() => undefined)
          throw e
        }
        return 'copied'
      })()
      const state0 = { hostWork, jobRoot, localDir }
      const target0 = syncTarget(ctx, state0, r)
      const [w, ext] = await step(Promise.all([syncWork, syncExt]))
      const tCopy = Date.now()
      log.progress(`copied ${w.files} files / ${mb(w.bytes)} MB in ${((tCopy - t1) / 1000).toFixed(2)} s (externals ${ext})`)
      // The files are in place. The sync base (both sides' listings) only has to be recorded before
      // the first step, so it is made alongside the network, image and container work. The local
      // side is read after the copy, not during it (that cost the copy CPU): nothing writes the
      // runner's files while prepare_job runs, the runner waits for it.
      baseRecorded = recordBase(target0, roots).then(() => log.debug(`sync timing: copy ${tCopy - t1} ms, base listings ${Date.now() - tCopy} ms (overlapped)`))
      baseRecorded.catch(() => undefined)
    })

    // Network, volumes, images.
    const labels = labelArgs(owner, jobId, runner.runnerName)
    const network = `rch-${jobId}`
    await step(check(r, ['docker network create', ...labels.map(shq), network].join(' ') + ' >/dev/null', { label: 'docker network create' }))
    for (const v of named) {
      await step(check(r, `docker volume inspect ${shq(v)} >/dev/null 2>&1 || docker volume create ${labels.map(shq).join(' ')} ${shq(v)} >/dev/null`, { label: `docker volume ${v}` }))
    }
    const all = [...(job ? [job] : []), ...services]
    for (const p of all) if (p.args.registry?.password) log.addSecret(p.args.registry.password)
    await log.group('Images', async () => {
      const t2 = Date.now()
      const pulls = await step(Promise.all(
        all.map((p, i) =>
          ensureImage(r, p.args.image!, config.images.pullPolicy, p.args.registry, `${jobRoot}/docker-config-${i}`, (l) => log.debug(l), {
            signal: ctx.signal,
            timeoutMs: config.images.pullTimeoutSeconds * 1000
          }).then((how) => {
            if (how === 'pulled') log.progress(`pulled ${p.args.image} in ${((Date.now() - t2) / 1000).toFixed(1)} s`)
            return how
          })
        )
      ))
      log.progress(`images: ${all.map((p, i) => `${p.args.image} (${pulls[i]})`).join(', ')}`)
    })

    // Services first (the job container may expect them), then the job container.
    const aliases = serviceAliases(services.map((s) => s.args.image!))
    const created: { id: string; image: string; what: string }[] = []
    const specOf = (p: Planned, name: string, extra: Partial<CreateSpec>): CreateSpec => ({
      name,
      image: p.args.image!,
      labels,
      network,
      aliases: [],
      ports: p.args.portMappings,
      mounts: mounts.get(p)!,
      env: baseEnv(p.args.environmentVariables),
      createOptions: p.options,
      entrypoint: p.args.entryPoint || null,
      args: rejoinArgs(p.args.entryPointArgs),
      workdir: null,
      ...extra
    })
    const svcIds: string[] = []
    let jobId_: string | null = null
    const engine = new Engine(r, config.remote.dockerSocket)
    const starting = services.length ? (job ? 'Starting the services and the job container' : 'Starting the services') : 'Starting the job container'
    await log.group(starting, async () => {
      for (const [i, s] of services.entries()) {
        const contextName = s.args.contextName
        const al = [...aliases[i], ...(contextName ? [contextName] : [])]
        const id = await step(createContainer(r, specOf(s, `rch-${jobId}-${al[0]}`, { aliases: al }), jobRoot))
        await step(startContainer(r, id, s.args.image!))
        created.push({ id, image: s.args.image!, what: al[0] })
        svcIds.push(id)
      }
      if (job) {
        const id = await step(createContainer(
          r,
          specOf(job, `rch-${jobId}-job`, {
            aliases: ['job'],
            entrypoint: job.args.entryPoint || 'tail',
            args: job.args.entryPoint ? rejoinArgs(job.args.entryPointArgs) : ['-f', '/dev/null']
          }),
          jobRoot
        ))
        await step(startContainer(r, id, job.args.image!))
        created.push({ id, image: job.args.image!, what: 'job container' })
        jobId_ = id
      }

      await waitHealthy(ctx, r, engine, created)
    })

    const svcContexts: ServiceContext[] = []
    for (const [i, id] of svcIds.entries()) {
      svcContexts.push({ id, image: services[i].args.image!, network, ports: portMap(await step(inspect(engine, id))) })
    }
    const state: HookState = {
      ...initialState({ jobId, owner, lease, jobRoot, hostWork, repoRel, localDir }),
      externals: hostExternals && layout.remoteExternals ? { host: hostExternals, remote: layout.remoteExternals } : null,
      network,
      services: svcIds.map((id, i) => ({ id, image: services[i].args.image! })),
      volumes: [...named]
    }
    const response: PrepareJobResponse = { context: { services: svcContexts } }
    if (job && jobId_) {
      const info = await step(inspect(engine, jobId_))
      const path = (info.Config.Env ?? []).find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
      state.container = { id: jobId_, image: job.args.image!, path }
      response.context!.container = { id: jobId_, image: job.args.image!, network, ports: portMap(info) }
      response.isAlpine = await step(isAlpine(engine, jobId_))
    }
    await step(baseRecorded!)
    response.state = storedState(state)
    log.progress(`job ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    return { exitCode: 0, response }
  } catch (err) {
    // What was still running (a container being created, the base being written into the local
    // folder) lands first, so the undo finds it.
    await inflight.settle(config.timeouts.cancelGraceSeconds * 1000 + 5000)
    for (const u of undo.reverse()) {
      try {
        await u.fn()
      } catch (e) {
        log.warn(`while undoing prepare_job, could not ${u.what}: ${(e as Error).message}`)
      }
    }
    rmSync(localDir, { recursive: true, force: true })
    throw err
  } finally {
    remote?.close()
  }
}

async function waitHealthy(ctx: HookContext, remote: Remote, engine: Engine, containers: { id: string; image: string; what: string }[]): Promise<void> {
  const deadline = Date.now() + ctx.config.timeouts.healthSeconds * 1000
  const started = Date.now()
  let lastNote = 0
  const pending = new Set(containers)
  for (let round = 0; pending.size; round++) {
    for (const c of [...pending]) {
      const info = await inspect(engine, c.id)
      const health = info.State.Health?.Status
      if (!info.State.Running) {
        ctx.log.foreign(`${c.what} (${c.image}) logs`, await containerLogs(remote, c.id))
        throw new HookError(`${c.what} (${c.image}) stopped during start-up with exit code ${info.State.ExitCode}`)
      }
      if (!health || health === 'healthy') pending.delete(c)
      else if (health === 'unhealthy') {
        ctx.log.foreign(`${c.what} (${c.image}) logs`, await containerLogs(remote, c.id))
        throw new HookError(`${c.what} (${c.image}) is unhealthy`)
      }
    }
    if (!pending.size) break
    if (Date.now() > deadline) {
      const c = [...pending][0]
      ctx.log.foreign(`${c.what} (${c.image}) logs`, await containerLogs(remote, c.id))
      throw new HookError(`${[...pending].map((p) => p.what).join(', ')} not healthy after ${ctx.config.timeouts.healthSeconds} s (timeouts.healthSeconds)`)
    }
    if (Date.now() - lastNote > 5000) {
      ctx.log.progress(`waiting for health: ${[...pending].map((p) => p.what).join(', ')} (${Math.round((Date.now() - started) / 1000)} s)`)
      lastNote = Date.now()
    }
    await sleep(Math.min(2000, 100 * 2 ** round), ctx.signal)
  }
}
