// The per-job agent: a detached helper process that holds one SSH connection for the whole job, so
// each hook command (a new process every time) skips the SSH handshake. It listens on a
// 0600 Unix socket in a 0700 directory, exits when told, after being idle, or when SSH drops; it
// carries the job's RUNNER_TRACKING_ID, so the runner kills it at job end in any case.
import { createServer, type Socket } from 'node:net'
import { chmodSync, rmSync } from 'node:fs'
import { SshRemote } from './ssh'
import { connectFailureLine } from './agent-failure'
import { ask } from './answer'
import { isRunning, type WorkerProcess } from '../worker-process'
import { endedOrClosed, type ConnectInfo, type Remote } from './remote'
import { F, frame, FrameReader, isStreamFrame, MAX_HEADER, SOCKET_ANSWER, whenDrained, writeFrame } from './mux-frames'
import { openDirect } from './direct-output'
import { lineOpen, ownLines } from '../line-start'
import { pauseMarkingWhileStreaming } from '../gc-policy'
import { retry, settlesWithin } from '../retry'
import { bootMs } from '../mono-clock'
import { workflowCommand } from '../workflow-commands'
import { outcomeOf } from '../outcome'
import { clipMessage, TransportError } from '../errors'

/** Reads the request line of a connection: null until it is complete; never holds more than `max` bytes of it. */
export function requestLine(max: number): (chunk: Buffer) => { line: Buffer; rest: Buffer } | 'too long' | null {
  const parts: Buffer[] = []
  let size = 0
  return (chunk) => {
    const at = chunk.indexOf(10)
    if (size + (at < 0 ? chunk.length : at) > max) return 'too long'
    parts.push(chunk)
    size += chunk.length
    if (at < 0) return null
    const all = Buffer.concat(parts)
    const nl = size - chunk.length + at
    return { line: all.subarray(0, nl), rest: all.subarray(nl + 1) }
  }
}

/** A lease the agent keeps alive: `command` every `everyMs` while the runner's `worker` lives. */
export interface AgentKeep {
  /** A remote command printing one framed record: `renewed`, or `lost` (renewing stops). */
  command: string
  everyMs: number
  /** lease.ttlSeconds in ms: not renewed for this long, the lease has lapsed on the member. */
  ttlMs?: number
  /**
   * When the last renewal (or the grant) known to the starting hook was sent, in bootMs: the lease
   * runs from then, not from the keeper's start (AWS calls and the agent's connect come between).
   * Absent for an agent a step restarts: it serves nothing of the job's until a renewal answers.
   */
  renewedAt?: number
  worker: WorkerProcess | null
}

/** A lease the agent renews, as the job's next step is told of it. */
export interface LeaseState {
  /** Set once a renewal was refused: the lease is another job's now, and no step runs. */
  lost: string | null
  /** The last renewal failed (the lease lapses if that goes on for lease.ttlSeconds); cleared by a success. */
  failing: string | null
  /**
   * Sets `lost` if a whole ttl went by without a renewal, suspended time included (set by the
   * keeper): called before a step starts, since the keeper's timers stop while the runner host is
   * suspended and the member's lease does not.
   */
  check?: () => void
}

export interface AgentOptions {
  /**
   * The build of the hook that starts the agent (src/build-id.ts). The agent is started from the
   * hook's file by name: replaced since that hook started, it is another build, which refuses.
   */
  build?: string
  socketPath: string
  connect: ConnectInfo
  connectTimeoutMs: number
  /** timeouts.keepaliveSeconds in ms (absent: ssh.ts's default). */
  keepaliveMs?: number
  idleMs: number
  /** Set for leases that lapse unless renewed; the agent then lives as long as the runner's worker, not until idle. */
  keep?: AgentKeep
  /**
   * The runner's worker (the starting hook's parent), which lives exactly as long as the job: once it
   * is gone (a crashed runner) the agent pushes nothing on its own, so an agent left behind never
   * sends the next job's files to this job's machine (see sync/early-push.ts).
   */
  worker?: WorkerProcess | null
}

export interface RunIo {
  stdout: { write(c: Buffer | string): boolean; once(e: 'drain', fn: () => void): unknown }
  stderr: { write(c: Buffer | string): boolean; once(e: 'drain', fn: () => void): unknown }
  signal: AbortSignal
  remote: Remote
}
/** A run's exit code, and whether it failed for its connection to the job's machine (see Executed.lost). */
export interface RunResult {
  code: number
  lost?: boolean
}
/** Runs one hook command inside the agent (warm code, the job's open connection). */
export type RunHandler = (request: Record<string, unknown>, io: RunIo) => Promise<RunResult>

/**
 * Work the agent does between requests (an early push, see sync/early-push.ts): every request but a
 * ping enters first and leaves when its connection closes; the agent enters before it ends.
 */
export interface IdleWork {
  enter(): Promise<void>
  leave(): void
  /** Stops what is armed to run between steps (the early push): the machine is no longer the job's. */
  disarm?(): void
  /** What must hold each time before it touches the machine (the lease still the job's after a suspend). */
  guard?(ok: () => boolean): void
}

/** How soon a failed renewal is tried again (at most a quarter of the period). */
const RENEW_RETRY_MS = 5_000
/**
 * Failed renewals reach the agent's log (on the runner host, outside _work) at most this often, each
 * entry cut to RENEW_LOG_CHARS: a member that fails every other try, with stderr of its choosing,
 * would otherwise write megabytes an hour for as long as the job runs.
 */
export const RENEW_LOG_EVERY_MS = 60_000
const RENEW_LOG_CHARS = 1024

/** The agent's exit code when its SSH connection dropped. */
const CONNECTION_LOST = 3
/** How long steps under way may take to fail once the connection dropped, before the agent exits. */
export const RUNS_WIND_DOWN_MS = 10_000

/** `log` writes one entry of the agent's log (agentEntry, which keeps it one line). */
export async function runAgent(opts: AgentOptions, log: (msg: string) => void, onRun?: RunHandler, idle?: IdleWork): Promise<number> {
  pauseMarkingWhileStreaming()
  let finish!: (code: number) => void
  const finished = new Promise<number>((r) => (finish = r))
  let remote: SshRemote
  try {
    remote = await SshRemote.connect(
      opts.connect,
      opts.connectTimeoutMs,
      (err) => {
        log(`ssh connection closed${err ? `: ${err.message}` : ''}`)
        finish(CONNECTION_LOST)
      },
      opts.keepaliveMs
    )
  } catch (e) {
    // The hook that started this agent reads the failure's kind from this line (connectFailure).
    log(connectFailureLine(e))
    return 1
  }

  let active = 0
  /** Steps under way in this agent, counted apart from connections: one outlives its hook's. */
  const runs = new Set<Promise<void>>()
  let idleTimer: NodeJS.Timeout | undefined
  let ending = false
  const armIdle = (): void => {
    clearTimeout(idleTimer)
    // Not once the agent is ending: a connection closing then would start a timer nothing clears.
    // Nor while a step runs whose hook is gone: its stop (a grace, then KILL) is still under way.
    if (active === 0 && runs.size === 0 && !opts.keep && !ending) idleTimer = setTimeout(() => finish(0), opts.idleMs)
  }
  const lease: LeaseState = { lost: null, failing: null }
  // Steps under way: stopped when the lease is lost (another job may be using the machine).
  const running = new Set<AbortController>()
  const keeper = opts.keep
    ? keepAlive(opts.keep, remote, log, finish, lease, () => {
        idle?.disarm?.()
        // The reason is the step's failure: its command reports it (execute.ts report()) as any other.
        const why = new TransportError(`${lease.lost ?? "this machine's lease was lost"}; the step was stopped`, 'lease')
        for (const c of running) if (!c.signal.aborted) c.abort(why)
      })
    : null
  // The keeper's timers stand still while the runner host is suspended: the early push (started by
  // a file's change, not by a step) asks the lease itself first.
  if (keeper)
    idle?.guard?.(() => {
      lease.check?.()
      return lease.lost === null && keeper.tried()
    })
  // Nothing of the job's goes to the machine before the first renewal was answered: a restarted
  // agent's lease may have lapsed, and the machine be another job's, while the agent was gone. A
  // keeper that stopped first (the worker gone, a shutdown) never renewed: nothing goes either.
  const renewedFirst = async (): Promise<string | null> => {
    if (!keeper || keeper.tried()) return null
    await keeper.first
    return keeper.tried() ? null : "this machine's lease was never renewed by the job's agent (it is ending)"
  }

  const serve = (sock: Socket): void => {
    // Back from a suspend, the first request finds a lapsed lease lost (and its steps stopped).
    lease.check?.()
    active++
    clearTimeout(idleTimer)
    sock.once('close', () => {
      active--
      armIdle()
    })
    sock.on('error', () => sock.destroy())
    const lines = requestLine(MAX_HEADER)
    const onHeader = (chunk: Buffer): void => {
      const got = lines(chunk)
      if (got === null) return
      sock.off('data', onHeader)
      if (got === 'too long') {
        log(`a request line over ${MAX_HEADER} bytes: connection dropped`)
        return void sock.destroy()
      }
      sock.pause()
      const { line, rest } = got
      let req: { op: string; cmd?: unknown; path?: unknown; cleanup?: unknown; link?: unknown }
      try {
        req = JSON.parse(line.toString('utf8')) as typeof req
      } catch {
        return void sock.destroy()
      }
      // Not a request a hook sends (`null`, a list): dropped, never a throw that ends the agent and its steps.
      if (typeof req !== 'object' || req === null || Array.isArray(req) || typeof req.op !== 'string') return void sock.destroy()
      if (req.op === 'shutdown') {
        sock.end()
        return finish(0)
      }
      if (req.op === 'ping') return void (req.link === true ? pingThrough(sock) : sock.end('pong\n'))
      const bridge =
        req.op === 'socket' && typeof req.path === 'string' && req.path
          ? () => bridgeSocket(sock, req.path as string, rest, req.cleanup === true)
          : req.op === 'exec' && typeof req.cmd === 'string'
            ? () => bridgeExec(sock, req.cmd as string, rest, req.cleanup === true)
            : req.op === 'run' && onRun
              ? () => inFlight(bridgeRun(sock, req, rest))
              : null
      if (!bridge) return void sock.destroy()
      if (!idle) return void bridge()
      // Left once the client is gone and the work is done (a step cancelled by its hook going away
      // may still be pulling): whichever comes last.
      let open = 2
      const done = (): void => void (--open === 0 && idle.leave())
      sock.once('close', done)
      // A client gone while the agent waited is not served (its close already came and went).
      void idle
        .enter()
        .then(() => (sock.destroyed ? undefined : bridge()))
        .catch((e: unknown) => log(`request failed: ${(e as Error).message}`))
        .finally(done)
    }
    sock.on('data', onHeader)
  }

  // The agent answers on its socket while its own connection may be dead without having been told
  // (a NAT that forgot it), which only the keepalives find, after timeouts.keepaliveSeconds. The
  // job's last command asks for a round trip over it first, and goes without the agent when none comes.
  const pingThrough = (sock: Socket): void => {
    remote
      .openExec('exit 0')
      .then((ch) => {
        ch.stdout.resume()
        ch.stderr.resume()
        ch.stdin.end()
        return ch.done
      })
      .then(
        (status) => void sock.end(status.code === 0 ? 'pong\n' : ''),
        () => void sock.end()
      )
  }

  // A lease another job may hold now: none of the job's work and none of its data goes there any
  // more (a step's rsync, a step its hook runs without the agent). Only cleanup_job's removal of
  // what the job left and its release, which ask nothing of the machine but to end things, still go.
  const refusal = async (cleanup: boolean): Promise<string | null> => {
    const never = cleanup ? null : await renewedFirst()
    if (never && !lease.lost) return never
    lease.check?.()
    return !cleanup && lease.lost ? `${lease.lost}; the agent opens nothing more there but for cleanup` : null
  }

  const bridgeSocket = async (sock: Socket, path: string, rest: Buffer, cleanup: boolean): Promise<void> => {
    const no = await refusal(cleanup)
    if (no) return void sock.end(Buffer.concat([Buffer.from([SOCKET_ANSWER.REFUSED]), Buffer.from(no)]))
    try {
      const stream = await remote.openSocket(path)
      sock.write(Buffer.from([SOCKET_ANSWER.OPEN]))
      if (rest.length) stream.write(rest)
      sock.pipe(stream).pipe(sock)
      stream.on('close', () => sock.destroy())
      sock.on('close', () => stream.destroy())
      sock.resume()
    } catch (e) {
      sock.end(Buffer.concat([Buffer.from([SOCKET_ANSWER.FAILED]), Buffer.from((e as Error).message)]))
    }
  }

  const bridgeExec = async (sock: Socket, cmd: string, rest: Buffer, cleanup: boolean): Promise<void> => {
    const no = await refusal(cleanup)
    if (no) return void sock.end(frame(F.REFUSED, no))
    let ch
    try {
      ch = await remote.openExec(cmd)
    } catch (e) {
      return void sock.end(frame(F.ERROR, (e as Error).message))
    }
    // The hook went away while the channel opened (its close came and went): nothing would ever end
    // the command's stdin or close the channel, which would stay open until the job ends.
    if (sock.destroyed) return void ch.stdout.destroy()
    const send = (type: number, src: NodeJS.ReadableStream & { pause(): void; resume(): void }) => (c: Buffer) => {
      if (!sock.destroyed && !writeFrame(sock, type, c)) {
        src.pause()
        whenDrained(sock, () => src.resume())
      }
    }
    ch.stdout.on('data', send(F.STDOUT, ch.stdout))
    ch.stderr.on('data', send(F.STDERR, ch.stderr))
    const reader = new FrameReader(
      (type, payload) => {
        if (type === F.STDIN) {
          if (!ch.stdin.write(payload)) {
            sock.pause()
            ch.stdin.once('drain', () => sock.resume())
          }
        } else if (type === F.STDIN_EOF) ch.stdin.end()
      },
      () => sock.destroy(),
      undefined,
      isStreamFrame
    )
    ch.stdin.on('error', () => undefined)
    sock.on('data', (c: Buffer) => reader.push(c))
    // The client going away (hook killed) closes the remote channel; the hook stops the remote
    // process itself before that, this only frees the channel.
    sock.on('close', () => ch.stdout.destroy())
    if (rest.length) reader.push(rest)
    sock.resume()
    const status = await ch.done
    // ssh2 closes the channel once stdout ended: stderr may still be paused behind a full socket,
    // and its tail (what an error says last) would be written after the end and lost.
    await Promise.race([Promise.all([endedOrClosed(ch.stdout), endedOrClosed(ch.stderr)]), endedOrClosed(sock)])
    sock.end(frame(F.EXIT, JSON.stringify(status)))
  }

  const inFlight = (run: Promise<void>): Promise<void> => {
    runs.add(run)
    clearTimeout(idleTimer)
    return run.finally(() => {
      runs.delete(run)
      armIdle()
    })
  }

  const bridgeRun = async (sock: Socket, req: Record<string, unknown>, rest: Buffer): Promise<void> => {
    const controller = new AbortController()
    const reader = new FrameReader(
      (type, payload) => {
        if (type === F.CANCEL && !controller.signal.aborted) controller.abort(payload.toString('utf8') || 'SIGINT')
      },
      () => sock.destroy()
    )
    sock.on('data', (c: Buffer) => reader.push(c))
    // The output goes straight into the hook's pipes when it named them (see direct-output.ts).
    const { pipes, cancel, ...request } = req
    // Cancelled before the hook connected: the step must not start.
    if (typeof cancel === 'string' && !controller.signal.aborted) controller.abort(cancel)
    // The runner stopped reading (EPIPE): stop the step, as the hook's own failed write did before.
    const direct = openDirect(pipes, () => controller.signal.aborted || controller.abort('SIGKILL'))
    // The hook process vanished (killed by the runner): stop the remote process as for a cancel.
    let hookGone = false
    sock.on('close', () => {
      hookGone = true
      direct?.drop()
      if (!controller.signal.aborted) controller.abort('SIGKILL')
    })
    if (rest.length) reader.push(rest)
    sock.resume()
    const sink = (type: number) => ({
      write: (c: Buffer | string): boolean => sock.destroyed || writeFrame(sock, type, typeof c === 'string' ? Buffer.from(c) : c),
      once: (_e: 'drain', fn: () => void) => whenDrained(sock, fn)
    })
    const shared: Remote = { openExec: (c) => remote.openExec(c), openSocket: (p) => remote.openSocket(p), close: () => undefined }
    let code = 70
    let lost = false
    const out = direct ? { stdout: direct.stdout, stderr: direct.stderr } : { stdout: sink(F.STDOUT), stderr: sink(F.STDERR) }
    try {
      if ((request.env as Record<string, unknown> | undefined)?.RUNNER_DEBUG === '1')
        out.stdout.write(
          `${workflowCommand('debug', `step output: ${direct ? "written by the job's agent into the hook's pipes" : 'relayed by the hook (its stdout or stderr is not a pipe)'}`)}\n`
        )
      // A lease another job may hold now: nothing of this job runs on the machine any more.
      const never = await renewedFirst()
      lease.check?.()
      if (lease.lost || never) {
        const o = outcomeOf(new TransportError(`${lease.lost ?? never}; the step was not run`, 'lease'))
        if (o.errorLine) ownLines(out.stdout, o.errorLine)
        code = o.code
      } else {
        if (lease.failing) ownLines(out.stdout, `${workflowCommand('warning', `${lease.failing}; the lease lapses if this goes on`)}\n`)
        running.add(controller)
        try {
          const r = await onRun!(request, { ...out, signal: controller.signal, remote: shared })
          code = r.code
          lost = r.lost === true
        } finally {
          running.delete(controller)
        }
        // Stopped because the lease was lost while it ran: the command said so (its error line, exit 75).
      }
    } catch (e) {
      log(`run failed: ${(e as Error).message}`)
    }
    if (hookGone) log(`a step whose hook went away ended (exit ${code})`)
    if (direct) await direct.close()
    // Lines the step left open, for the hook's own lines after it (line-start.ts).
    const open = { ...(lineOpen(out.stdout) ? { openOut: true } : {}), ...(lineOpen(out.stderr) ? { openErr: true } : {}) }
    sock.end(frame(F.EXIT, JSON.stringify({ code, signal: null, ...(lost ? { lost: true } : {}), ...open })))
  }

  rmSync(opts.socketPath, { force: true })
  const server = createServer(serve)
  await new Promise<void>((res, rej) => {
    server.once('error', rej)
    server.listen(opts.socketPath, () => res())
  })
  chmodSync(opts.socketPath, 0o600)
  armIdle()
  log(
    `agent ready on ${opts.socketPath} for ${opts.connect.user}@${opts.connect.host}:${opts.connect.port}; V8's incremental marking is paused while a step's output streams`
  )
  const code = await finished
  ending = true
  // An agent that ended for another reason (its SSH connection dropped) leaves no idle timer behind.
  clearTimeout(idleTimer)
  keeper?.stop()
  // No new request from here on (a hook then runs its step itself), and work between requests
  // lands, or is given up on, before the connection closes under it.
  server.close()
  rmSync(opts.socketPath, { force: true })
  // A step under way when the connection dropped fails in its own words (its error line, exit 75)
  // instead of the hook finding its agent gone without an exit status. (Idle never ends an agent
  // with a step under way; a shutdown comes from cleanup_job after the machine was released, so
  // nothing more is done on it.)
  if (code === CONNECTION_LOST) await settlesWithin(Promise.allSettled([...runs]), RUNS_WIND_DOWN_MS)
  await idle?.enter()
  remote.close()
  return code
}

/**
 * Renews a lease while the runner's worker lives, at once and then every period. A dead worker (runner crashed or killed) ends the
 * agent, so the lease lapses. Each try gets half a period, and a failed one is tried again within
 * seconds, not a period later: a renewal that waited out a whole period left the lease one try
 * from lapsing. Once `ttlMs` has passed since the last renewal the member counts the lease as
 * lapsed, another job may take the machine, and the lease is lost (`onLost`), as when a renewal is
 * refused.
 */
export function keepAlive(
  keep: AgentKeep,
  remote: Remote,
  /** Said of the lease: a warning, or (`info`) news that is none (a recovery). */
  log: (m: string, level?: 'info') => void,
  finish: (code: number) => void,
  /** What the job's steps are told of the lease (the agent's): set here, read before each step. */
  state: LeaseState = { lost: null, failing: null },
  onLost: () => void = () => undefined,
  /** For how long the lease has gone unrenewed: suspended time counts (see bootMs). */
  clock: () => number = bootMs
): {
  stop(): void
  /**
   * Settles once the first try was answered (renewed or refused), the lease lapsed or the keeper
   * stopped; also once it failed, when the keeper was told of a recent renewal (or the lease has no
   * ttl). Without either, a failing try may be the new holder's doing (root on the member): its
   * steps must not go there before an answer or the lapse.
   */
  first: Promise<void>
  tried(): boolean
  /** When the last renewal that answered was sent (the baseline before one did). */
  renewedAt(): number
} {
  let busy = false
  let lost = false
  let triedOnce = false
  let settleFirst = (): void => undefined
  const first = new Promise<void>((resolve) => (settleFirst = resolve))
  const firstOver = (): void => {
    triedOnce = true
    settleFirst()
  }
  // Failed tries said in the agent's log, and those since that were not (see RENEW_LOG_EVERY_MS).
  let saidAt = -Infinity
  let unsaid = 0
  let failedTries = 0
  // A try still under way when stopped arms no retry or lapse (a failing one went on retrying for
  // ever after the agent meant to end) and reports nothing: the step it guarded is over.
  let stopped = false
  const stop = new AbortController()
  const lose = (why: string): void => {
    if (lost) return
    lost = true
    // The member's answer is in it, and the job may have been root there: a line, not megabytes.
    state.lost = clipMessage(why)
    log(why)
    onLost()
    firstOver()
  }
  // A ttl after a renewal was sent (before it reached the member, so no later than the member's
  // own expiry), the lease has lapsed unless renewed since, even with a try still under way.
  const lapsed = (): void =>
    lose(`this machine's lease lapsed: not renewed for ${Math.round((keep.ttlMs ?? 0) / 1000)} s; another job may hold the machine now`)
  let lapse: NodeJS.Timeout | undefined
  const lapsesIn = (ms: number): void => {
    clearTimeout(lapse)
    if (keep.ttlMs !== undefined) lapse = setTimeout(lapsed, ms)
  }
  // The timer below stops while the runner host is suspended; this clock does not. Before a step,
  // at each tick and before each try: a renewal after a lapse is never sent.
  let renewedAt = Math.min(keep.renewedAt ?? clock(), clock())
  lapsesIn((keep.ttlMs ?? 0) - (clock() - renewedAt))
  state.check = () => {
    if (!lost && !stopped && keep.ttlMs !== undefined && clock() - renewedAt >= keep.ttlMs) lapsed()
  }
  const tick = async (): Promise<void> => {
    state.check?.()
    if (keep.worker && !isRunning(keep.worker)) {
      log(`the runner's worker (pid ${keep.worker.pid}) is gone: the lease is no longer renewed`)
      return finish(0)
    }
    if (busy || lost || stopped) return
    busy = true
    // A failed try is tried again within seconds, until a renewal answers, the lease lapses or the keeper stops.
    const pause = Math.min(RENEW_RETRY_MS, Math.floor(keep.everyMs / 4))
    try {
      const { word, started } = await retry(
        async () => {
          // Lapsed while pausing: no more renewals (another job may hold the machine now).
          state.check?.()
          if (lost || stopped) throw new Error('the lease is lost')
          const started = clock()
          const [word] = await ask(remote, keep.command, {
            label: 'renew the lease',
            timeoutMs: Math.max(1000, Math.floor(keep.everyMs / 2))
          })
          return { word, started }
        },
        {
          attempts: Infinity,
          minDelayMs: pause,
          maxDelayMs: pause,
          jitter: false,
          signal: stop.signal,
          retryable: () => !lost && !stopped,
          onRetry: (e: unknown) => {
            state.failing = clipMessage(`renewing this machine's lease failed at ${new Date().toISOString()}: ${(e as Error).message}`)
            failedTries++
            if (keep.renewedAt !== undefined || keep.ttlMs === undefined) firstOver()
            if (clock() - saidAt < RENEW_LOG_EVERY_MS) return void unsaid++
            const more = unsaid ? ` (and ${unsaid} more failed tries since the last said)` : ''
            log(clipMessage(state.failing, RENEW_LOG_CHARS) + more)
            saidAt = clock()
            unsaid = 0
          }
        }
      )
      // Stopped meanwhile: the job is over (its release renews once more itself), nothing to say.
      // Lapsed meanwhile: the job was told; a late answer changes nothing.
      if (stopped || lost) return
      if (word !== 'renewed') lose(`this machine's lease was not renewed (${JSON.stringify(word)}): another job may hold the machine now`)
      else {
        if (state.failing !== null) log(`renewed the lease again after ${failedTries} failed tries`, 'info')
        state.failing = null
        failedTries = 0
        renewedAt = started
        if (keep.ttlMs !== undefined) lapsesIn(keep.ttlMs - (clock() - started))
        firstOver()
      }
    } catch {
      // Stopped, or lapsed (lose() said so): nothing more to say.
    } finally {
      busy = false
    }
  }
  const every = setInterval(() => void tick(), keep.everyMs)
  // Renewed at once, not a period on: the lease was granted before this keeper began (a pool's
  // tag calls to AWS come in between, and may each be retried for a minute).
  void tick()
  return {
    stop() {
      stopped = true
      stop.abort(new Error('the lease keeper stopped'))
      clearInterval(every)
      clearTimeout(lapse)
      settleFirst()
    },
    first,
    tried: () => triedOnce,
    renewedAt: () => renewedAt
  }
}
