// The hook side of running a step inside the job's agent: the request goes over the 0600 socket, the
// step's output comes back as frames, SIGINT/SIGTERM are forwarded as cancel frames. A connection
// that closes without an exit status is a failure, never a success.
import { connect } from 'node:net'
import { TransportError } from './errors'
import { F, frame, FrameReader } from './remote/mux-frames'
import type { Sink } from './context'

/** Resolves the step's exit code, or null when no agent listens (the caller runs the step itself). */
export function runViaAgent(socketPath: string, request: object, out: { stdout: Sink; stderr: Sink }, signal: AbortSignal): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath)
    let started = false
    let exit: number | null = null
    sock.once('connect', () => {
      started = true
      sock.write(JSON.stringify({ op: 'run', ...request }) + '\n')
    })
    const forward = (dst: Sink, payload: Buffer): void => {
      if (!dst.write(payload)) {
        sock.pause()
        dst.once('drain', () => sock.resume())
      }
    }
    const reader = new FrameReader((type, payload) => {
      if (type === F.STDOUT) forward(out.stdout, payload)
      else if (type === F.STDERR) forward(out.stderr, payload)
      else if (type === F.EXIT) exit = (JSON.parse(payload.toString('utf8')) as { code: number }).code
    })
    sock.on('data', (c: Buffer) => reader.push(c))
    const onAbort = (): void => void (started && !sock.destroyed && sock.write(frame(F.CANCEL, String(signal.reason ?? 'SIGINT'))))
    signal.addEventListener('abort', onAbort, { once: true })
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!started && (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')) return resolve(null)
      if (exit === null) reject(new TransportError(`lost the job's agent during the step: ${e.message}`))
    })
    sock.on('close', () => {
      signal.removeEventListener('abort', onAbort)
      if (exit !== null) resolve(exit)
      else if (started) reject(new TransportError("lost the job's agent during the step (no exit status)"))
    })
  })
}
