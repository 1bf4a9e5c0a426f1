// A Remote that talks to the job's agent instead of opening its own SSH connection.
import { connect, type Socket } from 'node:net'
import { PassThrough, Writable, type Duplex } from 'node:stream'
import { TransportError } from '../errors'
import { settlesWithin } from '../retry'
import { F, frame, FrameReader, isStreamFrame, pausingWriter, SOCKET_ANSWER, whenDrained, writeFrame } from './mux-frames'
import type { ExecChannel, ExitStatus, Remote } from './remote'

function dial(socketPath: string, header: object): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath)
    sock.once('connect', () => {
      sock.write(JSON.stringify(header) + '\n')
      resolve(sock)
    })
    sock.once('error', (e) => reject(new TransportError(`agent at ${socketPath} unreachable: ${e.message}`, 'agent')))
  })
}

/** How long a shutdown waits for the agent to close its socket (it closes its SSH connection first). */
const SHUTDOWN_WAIT_MS = 10_000

/** Whether the agent closed `sock` (its answer complete) within `limitMs`; one it did not close in time is destroyed. */
async function closedWithin(sock: Socket, limitMs: number): Promise<boolean> {
  const closed = new Promise<void>((r) => sock.once('close', () => r()))
  if (!Number.isFinite(limitMs)) return closed.then(() => true)
  if (await settlesWithin(closed, limitMs)) return true
  sock.destroy()
  return false
}

export class MuxRemote implements Remote {
  /** `cleanup`: cleanup_job's requests, which the agent serves even once the machine's lease is lost. */
  constructor(
    readonly socketPath: string,
    private readonly opts: { cleanup?: boolean } = {}
  ) {}

  private header(req: object): object {
    return this.opts.cleanup ? { ...req, cleanup: true } : req
  }

  /**
   * Resolves true when an agent answers on the socket; false when none does within `limitMs`. The
   * kernel accepts a connection even while the agent's event loop is stuck, so without a limit a
   * stuck agent holds the caller for as long as it is stuck. `link`: the agent answers only once a
   * command has run over its SSH connection (which may be dead while the agent lives).
   */
  static async ping(socketPath: string, limitMs = Infinity, opts: { link?: boolean } = {}): Promise<boolean> {
    try {
      const sock = await dial(socketPath, opts.link ? { op: 'ping', link: true } : { op: 'ping' })
      let got = ''
      let failed = false
      sock.on('data', (c) => (got += c.toString()))
      sock.on('error', () => (failed = true))
      return (await closedWithin(sock, limitMs)) && !failed && got.startsWith('pong')
    } catch {
      return false
    }
  }

  /**
   * Asks the agent to stop; waits for it to close the socket for at most `limitMs`. A stuck agent is
   * left to the runner, which ends the job's processes at the job's end (RUNNER_TRACKING_ID).
   */
  static async shutdown(socketPath: string, limitMs = SHUTDOWN_WAIT_MS): Promise<void> {
    try {
      const sock = await dial(socketPath, { op: 'shutdown' })
      sock.on('error', () => undefined) // 'close' follows
      await closedWithin(sock, limitMs)
    } catch {
      // not running: nothing to stop
    }
  }

  async openExec(command: string): Promise<ExecChannel> {
    const sock = await dial(this.socketPath, this.header({ op: 'exec', cmd: command }))
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    let status: ExitStatus | null = null
    let error: string | null = null
    let refused: string | null = null
    // Up to QUEUE_LIMIT bytes may wait in each stream before the socket is paused (see mux-frames.ts).
    const pushTo = pausingWriter(sock)
    const reader = new FrameReader(
      (type, payload) => {
        if (type === F.STDOUT) pushTo(stdout, payload)
        else if (type === F.STDERR) pushTo(stderr, payload)
        else if (type === F.EXIT) status = JSON.parse(payload.toString('utf8')) as ExitStatus
        else if (type === F.ERROR) error = payload.toString('utf8')
        else if (type === F.REFUSED) refused = payload.toString('utf8')
      },
      (e) => {
        error = `agent answer unusable: ${e.message}`
        sock.destroy()
      },
      undefined,
      isStreamFrame
    )
    sock.on('data', (c: Buffer) => reader.push(c))
    // The caller destroying stdout closes the channel (stdout only ends once the socket closed).
    stdout.once('close', () => sock.destroy())
    const done = new Promise<ExitStatus>((resolve, reject) => {
      sock.on('error', () => undefined)
      sock.on('close', () => {
        stdout.end()
        stderr.end()
        if (refused) reject(new TransportError(refused, 'lease'))
        else if (error) reject(new TransportError(error, 'lost'))
        else resolve(status ?? { code: null, signal: null })
      })
    })
    const stdin = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (sock.destroyed) return cb()
        if (writeFrame(sock, F.STDIN, chunk)) cb()
        else whenDrained(sock, () => cb())
      },
      final(cb) {
        if (!sock.destroyed) sock.write(frame(F.STDIN_EOF))
        cb()
      }
    })
    return { stdin, stdout, stderr, done }
  }

  async openSocket(path: string): Promise<Duplex> {
    const sock = await dial(this.socketPath, this.header({ op: 'socket', path }))
    return new Promise((resolve, reject) => {
      // The answer byte alone is read, in paused mode: bytes the far end sent with it stay in the
      // socket's buffer for whoever reads next (taken from a 'data' chunk and unshifted, they were
      // emitted to no listener). Once no 'readable' listener is left, a 'data' listener resumes it.
      const answer = (): void => {
        const head = sock.read(1) as Buffer | null
        if (head === null) return
        sock.off('readable', answer)
        if (head[0] === SOCKET_ANSWER.OPEN) return resolve(sock)
        const why = String(sock.read() ?? '')
        // Nobody reads a refused socket: closed here, not left open until the process ends.
        sock.destroy()
        if (head[0] === SOCKET_ANSWER.REFUSED) return reject(new TransportError(why, 'lease'))
        reject(new TransportError(`agent could not open ${path}: ${why}`, 'lost'))
      }
      sock.on('readable', answer)
      sock.once('close', () => reject(new TransportError(`agent closed the connection to ${path}`, 'lost')))
    })
  }

  close(): void {
    // each channel is its own socket connection; nothing shared to close
  }
}
