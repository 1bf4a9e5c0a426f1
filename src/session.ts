// Getting a Remote for a job: through its agent when one answers (or can be started), else a
// direct SSH connection. Also the job's local folder (agent socket, sync manifests).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, closeSync, linkSync, rmSync, unlinkSync } from 'node:fs'
import { dirname } from 'node:path'
import type { HookContext } from './context'
import { formatError, HookError, TransportError } from './errors'
import { withDockerHost } from './remote/docker-host'
import { agentSocket, MAX_SOCKET_PATH, socketFits } from './agent-client'
import { MuxRemote } from './remote/mux-client'
import type { ConnectInfo, Remote } from './remote/remote'
import { Rejoinable } from './remote/rejoinable'
import { cleanupDeadline } from './remote/deadline'
import type { AgentKeep, AgentOptions } from './remote/agent'
import { waitUntil } from './retry'
import { agentFailure, OTHER_BUILD_EXIT, replacedWhileRunning } from './remote/agent-failure'
import { BUILD_ID } from './build-id'
import type { Acquired, OrphanReport, ProviderEnv, Tidy, VmProvider } from './providers/provider'
import { providerFor, type Lease } from './providers/factory'
import { leaseOf, type StoredHost } from './state'
import { agentTransport, opensshTransport, type RsyncTransport } from './sync/rsync'
import { ensurePrivateDir, checkPrivateDir, createPrivateAppend } from './private-fs'
import { tools, TOOL_ENV } from './tools'
import { localDirOf } from './paths'
import { jobFleet } from './fleet/job-fleet'
import { workerProcess } from './worker-process'
import { thisRunnerHost } from './runner-host'
import { describeScrub, scrubMachine } from './docker/machine-scrub'

/** Creates (0700) or checks the job's local folder. */
export function jobLocalDir(ctx: HookContext, owner: string, jobId: string): string {
  return ensurePrivateDir(localDirOf(ctx.localRoot, owner, jobId))
}

/**
 * glibc's allocator for an agent with `agent.lowMemory`: one arena; every block of 4 KiB or more (the
 * buffers a step's output passes through) mapped on its own, so it goes back to the system when freed
 * instead of staying as a hole in a heap that only shrinks from its top; the heap grown by what is
 * asked and no more (top_pad 0), so those buffers do not fill its spare end either. An agent then
 * ends a large output at about the memory it started with, 20–30 MB below an agent with glibc's
 * defaults, for some more CPU while output streams (docs/benchmarks.md). On by default: memory is
 * held all job long, the CPU is spent only while a step prints. Other C libraries (musl) ignore it.
 */
export const LOW_MEMORY_TUNABLES =
  'glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=4096:glibc.malloc.trim_threshold=16384:glibc.malloc.top_pad=0'

/**
 * The agent's whole environment: the fixed tool PATH, the hook's HOME and temp folder (so it finds
 * the same local root), RUNNER_TRACKING_ID, by which the runner ends leftover processes at job
 * end, and with `agent.lowMemory` the allocator's settings. Nothing else of the hook's environment
 * (cloud credentials, the job's PATH) reaches it.
 */
export function agentEnv(ctx: {
  runner: Pick<HookContext['runner'], 'home' | 'trackingId'>
  localRoot: string
  config: { agent: Pick<HookContext['config']['agent'], 'lowMemory'> }
}): Record<string, string> {
  const env: Record<string, string> = { ...TOOL_ENV, TMPDIR: dirname(ctx.localRoot) }
  if (ctx.runner.home) env.HOME = ctx.runner.home
  if (ctx.runner.trackingId) env.RUNNER_TRACKING_ID = ctx.runner.trackingId
  if (ctx.config.agent.lowMemory) env.GLIBC_TUNABLES = LOW_MEMORY_TUNABLES
  return env
}

/**
 * A small young generation: the buffers a step's output goes through live outside V8's heap, and
 * with the default (16 MiB semi-spaces) dead ones piled up between collections; memory the
 * allocator took for them stays with the process. A slower-growing old generation: what each step
 * promotes (listings, base copies) is collected before the heap grows by more than a fifth, so an
 * agent's memory levels off instead of creeping up step after step.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--heap-growing-percent=20']

/** An agent being started: `ready` settles once it answers (or has failed); `stop` ends it, started or not. */
export interface AgentStart {
  ready: Promise<void>
  stop: () => Promise<void>
}

/**
 * No process could be started (no node at that path, out of processes): a local problem that waiting
 * does not mend, so not a TransportError, which a provider retries as an unreachable host.
 */
const agentNotStarted = (e: unknown): HookError => new HookError(`could not start the job's agent: ${(e as Error)?.message ?? String(e)}`)

function notStarted(e: unknown): AgentStart {
  const ready = Promise.reject(agentNotStarted(e))
  ready.catch(() => undefined)
  return { ready, stop: () => Promise.resolve() }
}

/**
 * The agent's log under the name of its pid: a link, not a rename, so the log of an earlier agent of
 * the job whose pid this one reuses stays that agent's; this one then keeps its first name, which is
 * still its own. Returns the name the log has.
 */
export function claimLogName(starting: string, named: string): string {
  try {
    linkSync(starting, named)
  } catch {
    return starting
  }
  unlinkSync(starting)
  return named
}

function spawnAgent(ctx: HookContext, connect: ConnectInfo, socketPath: string, localDir: string, keep?: AgentKeep): AgentStart {
  // Each agent has a log of its own, named for its pid once it has one: lines of another agent of
  // the job (node's own crash output has no entry prefix to tell them apart) are never read as this
  // one's failure.
  const starting = `${localDir}/agent-starting-${randomBytes(6).toString('hex')}.log`
  const fd = createPrivateAppend(starting)
  const payload = JSON.stringify({
    build: BUILD_ID,
    socketPath,
    connect,
    connectTimeoutMs: ctx.config.timeouts.connectSeconds * 1000,
    keepaliveMs: ctx.config.timeouts.keepaliveSeconds * 1000,
    idleMs: ctx.config.agent.idleSeconds * 1000,
    keep,
    worker: workerProcess(process.ppid)
  } satisfies AgentOptions)
  // Detached with no stdio of ours: the runner waits for the hook's stdout to close.
  let child: ChildProcess
  try {
    child = spawn(ctx.nodePath, [...AGENT_NODE_FLAGS, ctx.hookPath, '__agent', payload], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: agentEnv(ctx)
    })
  } catch (e) {
    // Refused before any process existed (an argument list too long, a bad option): nothing to wait for.
    rmSync(starting, { force: true })
    return notStarted(e)
  } finally {
    closeSync(fd)
  }
  let logFile = starting
  if (child.pid === undefined)
    rmSync(starting, { force: true }) // nothing was started to write in it
  else logFile = claimLogName(starting, `${localDir}/agent-${child.pid}.log`)
  let exited: number | null = null
  let spawnError: Error | null = null
  child.on('exit', (code) => (exited = code ?? 1))
  // Not started at all (no such node, out of processes): node says so here, with no 'exit'.
  child.once('error', (e) => {
    spawnError = e
    exited = 1
  })
  child.unref()
  const limitMs = ctx.config.timeouts.connectSeconds * 1000 + 2000
  // The agent either answers on its socket or exits having written why into its log.
  // A cancelled or failed start ends the agent it began (it would otherwise connect for nobody).
  let settled = false
  const ready = waitUntil(
    async () => {
      if (await MuxRemote.ping(socketPath)) return true
      if (spawnError) throw agentNotStarted(spawnError)
      // The file was replaced by another build after this hook started: its agent serves nothing.
      if (exited === OTHER_BUILD_EXIT)
        throw new HookError(`${replacedWhileRunning(ctx.hookPath)}: the job's agent started from it is of that build`)
      if (exited !== null) throw agentFailure(logFile, child.pid, connect, ctx.config.timeouts.connectSeconds)
      return undefined
    },
    {
      timeoutMs: limitMs,
      minDelayMs: 15,
      maxDelayMs: 15,
      jitter: false,
      signal: ctx.signal,
      onTimeout: () => agentFailure(logFile, child.pid, connect, ctx.config.timeouts.connectSeconds)
    }
  )
    .then(() => undefined)
    .catch((e: unknown) => {
      if (exited === null) child.kill()
      throw e
    })
    .finally(() => (settled = true))
  ready.catch(() => undefined)
  const stop = async (): Promise<void> => {
    // Still starting: it is ended here rather than waited for (a slow handshake could take the whole connect timeout).
    if (!settled && exited === null) child.kill()
    await ready.catch(() => undefined)
    await stopAgent(localDir, connect)
  }
  return { ready, stop }
}

async function startAgent(ctx: HookContext, connect: ConnectInfo, socketPath: string, localDir: string, keep?: AgentKeep): Promise<void> {
  await spawnAgent(ctx, connect, socketPath, localDir, keep).ready
}

/**
 * Starts the job's agent without waiting for it (null when the job runs without one), so that the
 * caller's own work over a direct connection overlaps the agent's start-up and SSH handshake.
 */
export function startAgentInBackground(ctx: HookContext, connect: ConnectInfo, localDir: string, keep?: AgentKeep): AgentStart | null {
  if (ctx.remote || !ctx.config.agent.enabled) return null
  const sock = agentSocket(localDir, connect)
  if (!socketFits(sock)) {
    // A lease that lapses unless renewed cannot go without its keeper: another job would get the machine.
    if (keep)
      throw new HookError(
        `the job's agent, which renews the machine's lease, would listen at a path of ${Buffer.byteLength(sock)} bytes, over the ${MAX_SOCKET_PATH} a Unix socket allows: set a shorter TMPDIR for the runner`
      )
    ctx.log.warn(
      `the job's agent would listen at a path of ${Buffer.byteLength(sock)} bytes, over the ${MAX_SOCKET_PATH} a Unix socket allows: the job runs without it (slower steps); a shorter TMPDIR for the runner fixes this`
    )
    return null
  }
  ensurePrivateDir(localDir)
  return spawnAgent(ctx, connect, sock, localDir, keep)
}

/**
 * Every remote command of a job runs with DOCKER_HOST naming `remote.dockerSocket` when that is not
 * the default, so the docker CLI talks to the same daemon as the Engine API calls (e.g. rootless
 * Docker, whose socket a non-interactive SSH command would not otherwise find).
 */
function forDocker(ctx: HookContext, remote: Remote, close = (): void => remote.close()): Remote {
  return withDockerHost(remote, ctx.config.remote.dockerSocket, close)
}

/** How long cleanup_job waits for the job's agent to answer before it connects on its own. */
const AGENT_ANSWER_MS = 10_000

/** A Remote for the job's host: the agent when enabled, else a direct connection. */
export async function openJobRemote(
  ctx: HookContext,
  connect: ConnectInfo,
  localDir: string,
  /** cleanup: the job's last command, which starts no agent and only removes and gives back. */
  opts: { cleanup?: boolean; keep?: () => AgentKeep | undefined } = {}
): Promise<Remote> {
  if (ctx.remote) {
    // The agent's socket is named by a 32-bit hash of user@host:port: two machines of one job
    // whose names collide would share it. A step is run only on the machine its state names.
    const at = ctx.remoteAt
    if (at && (at.user !== connect.user || at.host !== connect.host || at.port !== connect.port))
      throw new HookError(
        `the job's agent serves ${at.user}@${at.host}:${at.port}, not ${connect.user}@${connect.host}:${connect.port} (the state's host): the step was not run there`
      )
    return forDocker(ctx, ctx.remote, () => undefined)
  }
  if (!ctx.config.agent.enabled) return directRemote(ctx, connect)
  // Checked before its socket is used: a folder someone else made could hold their own "agent".
  const exists = checkPrivateDir(localDir)
  const sock = agentSocket(localDir, connect)
  // A socket path over the limit would be cut short where the agent listens: no agent then (prepare_job warned).
  if (!socketFits(sock)) return directRemote(ctx, connect)
  // A job's last command (cleanup_job) may find an agent that does not answer, or whose connection
  // does not: it goes without one.
  // Others wait: a second agent would listen in place of one that is only slow.
  const last = opts.cleanup === true
  const limit = last ? AGENT_ANSWER_MS : Infinity
  if (!exists || !(await MuxRemote.ping(sock, limit, { link: last }))) {
    // The last command of a job gains nothing from starting an agent.
    if (last) return directRemote(ctx, connect)
    ensurePrivateDir(localDir)
    ctx.log.progress(`connecting to ${connect.user}@${connect.host}:${connect.port}`)
    await startAgent(ctx, connect, sock, localDir, opts.keep?.())
  }
  // Served even once the agent finds the lease lost.
  return forDocker(ctx, new MuxRemote(sock, { cleanup: last }))
}

/** What a restarted agent of the job must keep alive (a pool lease's renewal), read from its stored lease. */
export const keepOf = (ctx: HookContext, host: StoredHost) => (): AgentKeep | undefined =>
  providerFor(ctx.config).keeper?.(leaseOf(host)) ?? undefined

export async function stopAgent(localDir: string, c: ConnectInfo): Promise<void> {
  if (checkPrivateDir(localDir)) await MuxRemote.shutdown(agentSocket(localDir, c))
}

/** Stops every agent of a job folder, whatever host or build started it (cleanup). */
export async function stopAgents(localDir: string): Promise<void> {
  let names: string[]
  if (!checkPrivateDir(localDir)) return
  try {
    names = readdirSync(localDir).filter((x) => x.startsWith('agent-') && x.endsWith('.sock'))
  } catch {
    return
  }
  for (const f of names) await MuxRemote.shutdown(`${localDir}/${f}`)
}

/**
 * Local folders of this runner's earlier jobs (per-job keys, agent sockets, sync bases): agents
 * stopped, folders removed. Their cleanup_job never came (the runner died); a runner runs one job
 * at a time, so no other job of this owner can be using one.
 */
export async function removeLocalJobFolders(ctx: HookContext, owner: string): Promise<number> {
  let names: string[]
  try {
    names = readdirSync(ctx.localRoot).filter((n) => n.startsWith(`${owner}-`))
  } catch {
    return 0
  }
  let removed = 0
  for (const n of names) {
    const dir = `${ctx.localRoot}/${n}`
    // One that cannot go (not a private folder of ours, a file that will not be removed) must not
    // stop the job that sweeps it: said, and left.
    try {
      await stopAgents(dir)
      rmSync(dir, { recursive: true, force: true })
      removed++
    } catch (e) {
      ctx.log.warn(`could not remove ${dir}, a local folder of an earlier job of this runner: ${formatError(e)}`)
    }
  }
  return removed
}

/** A direct SSH connection; ssh2 is loaded only here, so commands served by the agent never pay for it. */
export async function directRemote(ctx: HookContext, connect: ConnectInfo): Promise<Remote> {
  const { SshRemote } = await import('./remote/ssh')
  const t = ctx.config.timeouts
  return forDocker(ctx, await SshRemote.connect(connect, t.connectSeconds * 1000, undefined, t.keepaliveSeconds * 1000))
}

/**
 * rsync's transport for bulk copies: OpenSSH's C data path when the runner host has `ssh` (relaying
 * large copies through the agent is markedly slower), else the job's agent.
 */
export function bulkTransport(ctx: HookContext, connect: ConnectInfo, localDir: string): RsyncTransport {
  const ssh = tools().ssh
  if (ssh) return opensshTransport(ssh, connect, ctx.config.timeouts.connectSeconds)
  if (!ctx.config.agent.enabled)
    throw new HookError(
      `ssh is not installed on the runner host and the agent is disabled: rsync has no transport (install OpenSSH's client or set tools.ssh)`
    )
  const sock = agentSocket(localDir, connect)
  if (!socketFits(sock))
    throw new HookError(
      `ssh is not installed on the runner host and the job's agent cannot run (its socket path would be over ${MAX_SOCKET_PATH} bytes: shorten TMPDIR): rsync has no transport`
    )
  return agentTransport(ctx.nodePath, ctx.hookPath, sock)
}

/** What a provider gets of the hook: log, cancel, the runner's facts, how to connect, and the job's fleet ledger. */
function providerEnv(ctx: HookContext, jobId: string, connect: ProviderEnv['connect'], discard: ProviderEnv['discard']): ProviderEnv {
  return {
    log: ctx.log,
    signal: ctx.signal,
    runner: { runnerName: ctx.runner.runnerName, github: ctx.runner.github, host: thisRunnerHost(), worker: workerProcess(process.ppid) },
    connect,
    discard,
    fleet: jobFleet(ctx, jobId).gate,
    scrub: async (remote, machine, signal) =>
      ctx.log.progress(`scrubbed ${machine}: ${describeScrub(await scrubMachine(remote, ctx.config.remote.workRoot, machine, signal))}`)
  }
}

/** Direct connections, closed by whoever opened them (no job agent to stop). */
const directEnv = (ctx: HookContext, jobId: string): ProviderEnv =>
  providerEnv(
    ctx,
    jobId,
    (c) => directRemote(ctx, c),
    (_c, r) => Promise.resolve(r.close())
  )

/** A direct connection to a job's host (the test-injected remote when there is one), for the caller to close. */
function directJobRemote(ctx: HookContext, c: ConnectInfo): Promise<Remote> {
  return ctx.remote ? Promise.resolve(forDocker(ctx, ctx.remote, () => undefined)) : directRemote(ctx, c)
}

/**
 * How long a failed prepare_job's reconnect may take once the job is cancelled: the runner kills
 * the hook 10 s after its SIGINT, and the undo's other steps (the release last) still need time.
 * A machine that answers at all answers well within it.
 */
export const REJOIN_AFTER_CANCEL_MS = 2000

/** `made`, given up REJOIN_AFTER_CANCEL_MS after `signal` aborts (at once if it has); one that connects later is closed. */
function untilCancelBound(made: Promise<Remote>, signal: AbortSignal, c: ConnectInfo): Promise<Remote> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const start = (): void => {
      timer = setTimeout(() => {
        reject(
          new TransportError(
            `cannot connect to ${c.user}@${c.host}:${c.port} again within ${REJOIN_AFTER_CANCEL_MS / 1000} s of the cancel`,
            'timeout'
          )
        )
        made.then(
          (r) => r.close(),
          () => undefined
        )
      }, REJOIN_AFTER_CANCEL_MS)
    }
    if (signal.aborted) start()
    else signal.addEventListener('abort', start, { once: true })
    made.then(resolve, reject).finally(() => {
      clearTimeout(timer)
      signal.removeEventListener('abort', start)
    })
  })
}

/**
 * `first`, made again over a direct connection if it is lost once `rejoin()` is called (a failed
 * prepare_job's undo); after a cancel that connection gets REJOIN_AFTER_CANCEL_MS, not timeouts.connectSeconds.
 */
export function rejoinableRemote(ctx: HookContext, first: Remote, c: ConnectInfo): Rejoinable {
  return new Rejoinable(first, () => untilCancelBound(directJobRemote(ctx, c), ctx.signal, c))
}

/**
 * Gets a machine for a job from its provider over a direct connection, which the caller keeps
 * (and closes): the job's agent is not waited for here (see startAgentInBackground).
 */
export function acquireMachineDirect(
  ctx: HookContext,
  provider: VmProvider<Lease>,
  jobId: string,
  owner: string,
  localDir: string
): Promise<Acquired<Lease>> {
  return provider.acquire(
    { jobId, owner, localDir },
    providerEnv(
      ctx,
      jobId,
      (c) => {
        ctx.log.progress(`connecting to ${c.user}@${c.host}:${c.port}`)
        return directJobRemote(ctx, c)
      },
      (_c, r) => Promise.resolve(r.close())
    )
  )
}

/** Gets a machine for a job from its provider, its connection going through the job's agent. */
export function acquireMachine(
  ctx: HookContext,
  provider: VmProvider<Lease>,
  jobId: string,
  owner: string,
  localDir: string
): Promise<Acquired<Lease>> {
  return provider.acquire(
    { jobId, owner, localDir },
    // A provider whose lease needs renewing tries several machines and renews from this process: direct connections.
    provider.keeper
      ? directEnv(ctx, jobId)
      : providerEnv(
          ctx,
          jobId,
          (c) => openJobRemote(ctx, c, localDir),
          async (c, r) => {
            r.close()
            await stopAgent(localDir, c)
          }
        )
  )
}

/** Gives a job's machine back (`remote`: an open connection to it, when the provider needs one). */
export async function releaseMachine(
  ctx: HookContext,
  provider: VmProvider<Lease>,
  lease: Lease,
  remote: Remote | null,
  jobId: string,
  env: ProviderEnv = directEnv(ctx, jobId)
): Promise<void> {
  if (lease.kind !== provider.kind) throw new HookError(`a ${lease.kind} lease cannot be released by the ${provider.kind} provider`)
  return provider.release(lease, remote, jobId, env)
}

/**
 * releaseMachine for a machine the caller could not reach: the provider connects on its own, each
 * connection within timeouts.cleanupSeconds as cleanup's own (a VM that lets the second connection
 * in must not hold the runner past that bound).
 */
export function releaseUnreached(ctx: HookContext, provider: VmProvider<Lease>, lease: Lease, jobId: string): Promise<void> {
  const env = directEnv(ctx, jobId)
  return releaseMachine(ctx, provider, lease, null, jobId, { ...env, connect: boundedConnect(ctx, env) })
}

/** `env`'s connect, each connection's commands within timeouts.cleanupSeconds (cleanupDeadline). */
function boundedConnect(ctx: HookContext, env: ProviderEnv): ProviderEnv['connect'] {
  return async (c: ConnectInfo): Promise<Remote> => {
    const b = cleanupDeadline(await env.connect(c), ctx.config.timeouts.cleanupSeconds, `cleaning up ${c.host}:${c.port}`)
    return {
      ...b.remote,
      close: () => {
        b.clear()
        b.remote.close()
      }
    }
  }
}

/** Cleanup without state: `tidy` runs on each machine this runner may hold, then the provider releases it. */
export function releaseOrphans(ctx: HookContext, provider: VmProvider<Lease>, owner: string, tidy: Tidy): Promise<OrphanReport> {
  // No job: the ledger is only asked to settle what is terminated, by the reservation on its tag.
  const env = directEnv(ctx, `cleanup-${owner}`)
  // Each machine's tidying and release within timeouts.cleanupSeconds, as with state: a VM a lost
  // job left hanging (it was root there) must not hold the runner, nor the machines after it.
  return provider.cleanupOrphans(owner, { ...env, connect: boundedConnect(ctx, env) }, tidy)
}
