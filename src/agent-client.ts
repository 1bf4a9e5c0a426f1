// The hook side of running a step inside the job's agent: the request goes over the 0600 socket, the
// step's output comes back as frames, SIGINT/SIGTERM are forwarded as cancel frames. A connection
// that closes without an exit status is a failure, never a success.
//
// This is the hook's fast path, so it loads nothing heavy: the runner's raw input goes to the
// agent, whose code is warm, and is validated there exactly as in the hook.
import { connect } from 'node:net'
import { TransportError } from './errors'
import { corkTurn, F, frame, FrameReader, isStreamFrame, MAX_HEADER, pausingWriter } from './remote/mux-frames'
import type { Sink } from './context'
import { HEX16, isHostName, isUserName } from './input-rules'
import { localDirOf } from './paths'
import { BUILD_ID } from './build-id'
import { hookPipes } from './remote/direct-output'
import { setLineOpen, wrote } from './line-start'
import type { RunResult } from './remote/agent'

/** FNV-1a: a short, stable name per host; loading node:crypto would slow every step's start-up. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5
  for (const b of Buffer.from(text, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0
  return h.toString(16).padStart(8, '0')
}

/**
 * One agent per job, host and build: a job that tried a busy host first must not reuse that host's
 * agent, and a hook never talks to an agent of another build (whose requests may differ). After an
 * upgrade the next step of a running job just starts an agent of the new build; the old one is
 * stopped by cleanup_job or idles out.
 */
/** Linux's limit for a Unix socket path (108 bytes with the terminating NUL); a longer one is cut short silently. */
export const MAX_SOCKET_PATH = 107

/** Whether an agent can listen at `path` (a long TMPDIR makes the job's socket path too long). */
export const socketFits = (path: string): boolean => Buffer.byteLength(path) <= MAX_SOCKET_PATH

export const agentSocket = (localDir: string, c: { user: string; host: string; port: number }, build = BUILD_ID): string =>
  `${localDir}/agent-${fnv1a(`${c.user}@${c.host}:${c.port}`)}-${build}.sock`

/**
 * The agent socket a step command should go to, or null (any other command, no usable state, input
 * that is not even JSON: the hook's full path then handles it and reports what is wrong). The path
 * is derived as the hook derives it, from one of this runner's owner ids, the job id and the host, never
 * taken from the state; a state whose facts are not well-formed picks no socket at all.
 */
export function delegation(raw: string, localRoot: string, owners: readonly string[]): string | null {
  const job = stepJob(raw, localRoot, owners)
  return job ? jobSocket(job) : null
}

/** The agent socket of a step's job (stepJob), or null when its path is too long for a Unix socket. */
export function jobSocket(job: StepJob): string | null {
  const socket = agentSocket(job.dir, job.host)
  return socketFits(socket) ? socket : null
}

export interface StepJob {
  dir: string
  host: { user: string; host: string; port: number }
}

/**
 * A step command's job folder and host, derived as the hook derives them (one of `owners`, this
 * runner's owner ids (statedOwners), a well-formed job id, user, host and port), never taken from
 * the state; null for any other input.
 */
export function stepJob(raw: string, localRoot: string, owners: readonly string[]): StepJob | null {
  let input: {
    command?: unknown
    state?: { jobId?: unknown; owner?: unknown; host?: { user?: unknown; host?: unknown; port?: unknown } } | null
  }
  try {
    input = JSON.parse(raw) as typeof input
  } catch {
    return null
  }
  if (input?.command !== 'run_script_step' && input?.command !== 'run_container_step') return null
  const s = input.state
  if (!s || typeof s !== 'object' || typeof s.host !== 'object' || !s.host) return null
  const { jobId, owner } = s
  const { user, host, port } = s.host
  if (typeof jobId !== 'string' || !HEX16.test(jobId) || typeof owner !== 'string' || !owners.includes(owner)) return null
  if (typeof user !== 'string' || !isUserName(user) || typeof host !== 'string' || !isHostName(host)) return null
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return null
  return { dir: localDirOf(localRoot, owner, jobId), host: { user, host, port } }
}

/** Room in the request line for what is added at the connection (the pipes' paths, a cancel). */
const LINE_SLACK = 64 * 1024

/**
 * Resolves the step's exit, or null when no agent listens or the request is too large for it (the
 * caller runs the step itself: an input the job made huge, a GITHUB_ENV grown past MAX_HEADER, is
 * the job's doing, not a lost agent).
 */
export function runViaAgent(
  socketPath: string,
  request: object,
  out: { stdout: Sink; stderr: Sink },
  signal: AbortSignal
): Promise<RunResult | null> {
  if (Buffer.byteLength(JSON.stringify(request)) > MAX_HEADER - LINE_SLACK) return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath)
    let started = false
    let exit: RunResult | null = null
    let pipes: ReturnType<typeof hookPipes>
    // SIGINT, then the runner's SIGTERM: one cancel, sent once the request is (or with it).
    let cancelSent = false
    const onAbort = (): void => {
      if (!started || sock.destroyed || cancelSent) return
      cancelSent = true
      sock.write(frame(F.CANCEL, String(signal.reason ?? 'SIGINT')))
    }
    signal.addEventListener('abort', onAbort)
    sock.once('connect', () => {
      started = true
      // A cancel that came before the connection (or before this call) is part of the request: as a
      // frame after it, the agent could start the step before reading that far.
      const cancel = signal.aborted ? String(signal.reason ?? 'SIGINT') : undefined
      cancelSent = cancel !== undefined
      pipes = hookPipes()
      sock.write(JSON.stringify({ op: 'run', ...request, pipes, cancel }) + '\n')
    })
    // Up to QUEUE_LIMIT bytes may wait in stdout before the socket is paused (see mux-frames.ts).
    const relay = pausingWriter(sock)
    const forward = (dst: Sink, payload: Buffer): void => {
      if (dst.cork) corkTurn(dst as Required<Sink>)
      relay(dst, payload)
      wrote(dst, payload)
    }
    const reader = new FrameReader(
      (type, payload) => {
        if (type === F.STDOUT) forward(out.stdout, payload)
        else if (type === F.STDERR) forward(out.stderr, payload)
        else if (type === F.EXIT) {
          const st = JSON.parse(payload.toString('utf8')) as { code: number; lost?: unknown; openOut?: unknown; openErr?: unknown }
          exit = { code: st.code, lost: st.lost === true }
          // The agent wrote into the pipes itself, or relayed: either way it knows where the step's lines ended.
          setLineOpen(out.stdout, st.openOut === true)
          setLineOpen(out.stderr, st.openErr === true)
        }
      },
      // Never a throw inside the socket's handler (the hook would end with a stack, no error line).
      (e) => {
        if (exit === null) lostAgent(`: its answer was unusable (${e.message})`)
        sock.destroy()
      },
      undefined,
      isStreamFrame
    )
    sock.on('data', (c: Buffer) => reader.push(c))
    // Lost mid-step: what the agent wrote into the pipes itself is unknown here, so the error line
    // starts a line of its own (at worst after an empty one).
    const lostAgent = (why: string): void => {
      if (pipes) setLineOpen(out.stdout, true)
      reject(new TransportError(`lost the job's agent during the step${why}`, 'lost'))
    }
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!started && (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')) return resolve(null)
      if (exit === null) lostAgent(`: ${e.message}`)
    })
    sock.on('close', () => {
      signal.removeEventListener('abort', onAbort)
      if (exit !== null) resolve(exit)
      else if (started) lostAgent(' (no exit status)')
    })
  })
}
