// A small Docker Engine API client spoken over an SSH-forwarded Unix socket. Used where the CLI
// would need secrets on its environment or command line (step env, container actions) and where
// per-call CLI start-up would cost latency (exec, inspect).
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import type { Duplex, Readable, Writable } from 'node:stream'
import { Cancelled, HookError, TransportError, clipMessage, formatError } from '../errors'
import type { Remote } from '../remote/remote'
import { UnexpectedAnswer } from '../remote/answer'
import { CONTAINER_ID } from '../input-rules'

export class EngineError extends HookError {
  constructor(
    readonly status: number,
    what: string,
    message: string
  ) {
    // The engine's words: bounded here, before anything formats or masks them, and copied out of
    // the reply's text (a cut of a string keeps the whole string alive; failures are kept).
    super(`docker ${what}: ${Buffer.from(clipMessage(message, MAX_ERROR_TEXT), 'utf8').toString('utf8') || `HTTP ${status}`}`)
  }
}

/** What a call's answer is for: `read` (the default) keeps and parses it up to `maxBytes`; `ignore` only reads an error's. */
export interface CallReply {
  reply?: 'read' | 'ignore'
  /** For `read`: the most of a body kept (default MAX_REPLY). */
  maxBytes?: number
}

export interface Output {
  onStdout(chunk: Buffer): boolean | void
  onStderr(chunk: Buffer): boolean | void
  /** Resolves when every sink that was full can take more (bounded memory for large outputs). */
  waitDrain?(): Promise<void>
}

const API = '/v1.41'

/**
 * Limits on what the engine (root on the remote, so steerable by a job) can make the hook buffer.
 * Real replies are far smaller: an inspect or a create's answer is KiBs, a listing of a runner's
 * own containers (by its label) KiBs too. A reply is kept, and parsed, up to `MAX_REPLY`
 * (`MAX_LISTING` for a listing), since parsed JSON can take twenty times its size (16 MiB of
 * `[{},{},…]` is 357 MiB of heap, and calls run side by side); an answer the caller does not read
 * (a removal's, a start's) is read to its end up to `MAX_BODY` and never parsed; an error's body is
 * read to its end up to `MAX_BODY` too, its first `MAX_REPLY` kept for its message. Stream frames are passed on as they arrive, never gathered; docker
 * writes them of at most 32 KiB, so a header announcing more than the limit is not docker's and
 * ends the stream.
 */
export const MAX_BODY = 16 * 1024 * 1024
export const MAX_REPLY = 1024 * 1024
export const MAX_LISTING = 4 * 1024 * 1024
export const MAX_STREAM_FRAME = 16 * 1024 * 1024
export const MAX_ERROR_TEXT = 64 * 1024

/**
 * How long one request/reply may take. The engine is steerable by a job (a docker socket replaced
 * by something that accepts and never answers): without a bound, prepare_job, its undo and a
 * cleanup without state would wait forever and never give the host back. Real calls of these kinds
 * answer in seconds; a wait for a container's exit opts out.
 */
export const CALL_TIMEOUT_MS = 120_000

export class Engine {
  constructor(
    private readonly remote: Remote,
    private readonly socketPath: string,
    private readonly callTimeoutMs = CALL_TIMEOUT_MS
  ) {}

  private open(method: string, path: string, headers: Record<string, string>, body?: Buffer) {
    const req = request({
      method,
      path: API + path,
      host: 'docker',
      headers: { ...headers, ...(body ? { 'Content-Length': String(body.length) } : {}) },
      createConnection: ((_o: unknown, cb: (err: Error | null, s?: Duplex) => void) => {
        this.remote.openSocket(this.socketPath).then(
          // A socket that arrives after the request was given up is closed, not left open.
          (s) => (req.destroyed ? s.destroy() : cb(null, s)),
          (e: Error) => cb(e)
        )
        return undefined
      }) as never
    })
    return req
  }

  /**
   * One request and its whole reply; `timeoutMs: null` for a call that waits on the job (a
   * container's exit). With `signal`, an abort gives the request up at once (Cancelled).
   * `answered`: called when the reply's head arrives, before its body.
   */
  async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    what = path,
    opts: { timeoutMs?: number | null; signal?: AbortSignal; answered?: () => void } & CallReply = {}
  ): Promise<{ status: number; data: T }> {
    if (opts.signal?.aborted) throw Cancelled.by(opts.signal)
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const req = this.open(method, path, payload ? { 'Content-Type': 'application/json' } : {}, payload)
    const bound = givingUp(req, what, opts.timeoutMs === undefined ? this.callTimeoutMs : opts.timeoutMs, opts.signal)
    try {
      if (opts.answered) req.once('response', opts.answered)
      return await Promise.race([this.exchange<T>(req, payload, what, opts), bound.givenUp])
    } catch (e) {
      throw e instanceof HookError ? e : new TransportError(`docker API ${what}: ${formatError(e)}`, 'lost')
    } finally {
      bound.clear()
    }
  }

  private async exchange<T>(
    req: ReturnType<typeof request>,
    payload: Buffer | undefined,
    what: string,
    how: CallReply
  ): Promise<{ status: number; data: T }> {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.on('response', resolve)
      req.on('error', (e) => reject(e instanceof HookError ? e : new TransportError(`docker API ${what}: ${e.message}`, 'lost')))
      req.end(payload)
    })
    const status = res.statusCode ?? 0
    // An error's body is for its message: read to its end (up to MAX_BODY), its start kept, as is an
    // answer nobody reads; any other body is kept whole up to the call's limit.
    const failed = status >= 400
    const ignore = how.reply === 'ignore' && !failed
    const keep = ignore ? 0 : failed ? MAX_REPLY : (how.maxBytes ?? MAX_REPLY)
    const limit = ignore || failed ? MAX_BODY : keep
    const chunks: Buffer[] = []
    let size = 0
    let kept = 0
    try {
      for await (const c of res) {
        size += (c as Buffer).length
        if (size > limit) throw new TransportError(`docker API ${what}: reply body over the limit of ${limit} bytes`, 'lost')
        if (kept < keep) {
          const part = (c as Buffer).subarray(0, keep - kept)
          chunks.push(part)
          kept += part.length
        }
      }
    } finally {
      // One channel per request: close it, or each call leaves an SSH channel (and a docker.sock
      // connection on the host) open until sshd's MaxSessions is reached and the job hangs.
      res.socket?.destroy()
    }
    if (ignore) return { status, data: null as T }
    const text = Buffer.concat(chunks).toString('utf8')
    let data: unknown = text
    if ((res.headers['content-type'] ?? '').includes('json') && text) {
      try {
        data = JSON.parse(text)
      } catch {
        // An error's body may be cut short: its text is the message then.
        if (!failed || size === kept) throw new UnexpectedAnswer(`docker API ${what}: the reply is not valid JSON`)
      }
    }
    if (status >= 400) {
      // Only a string is taken as the message: String() of a deeply nested value throws (RangeError).
      const message = typeof data === 'object' && data !== null ? (data as { message?: unknown }).message : undefined
      throw new EngineError(status, what, typeof message === 'string' ? message : text.trim())
    }
    return { status, data: data as T }
  }

  /**
   * Opens a hijacked stream (exec start / container attach) and demultiplexes it into out. `input`
   * writes to the process's stdin (an exec created with AttachStdin), null when docker did not
   * upgrade the connection; `close` ends the stream from this side.
   */
  async hijack(
    path: string,
    body: unknown,
    out: Output,
    signal?: AbortSignal
  ): Promise<{ ended: Promise<void>; input: Writable | null; close: () => void }> {
    if (signal?.aborted) throw Cancelled.by(signal)
    const payload = Buffer.from(JSON.stringify(body))
    const req = this.open('POST', path, { 'Content-Type': 'application/json', Connection: 'Upgrade', Upgrade: 'tcp' }, payload)
    let input: Duplex | null = null
    // The answer that opens the stream is bounded like a call (the stream itself is the job's to
    // end): an engine that accepts and never answers would hold the step, or a step shell's start, for ever.
    const bound = givingUp(req, path, this.callTimeoutMs, signal)
    const opened = new Promise<Readable>((resolve, reject) => {
      req.on('upgrade', (_res, socket, head) => {
        if (head.length) socket.unshift(head)
        input = socket
        resolve(socket)
      })
      req.on('response', (res) => {
        if ((res.statusCode ?? 0) >= 400) {
          let t = ''
          res.on('data', (c) => {
            if (t.length < MAX_ERROR_TEXT) t += String(c).slice(0, MAX_ERROR_TEXT - t.length)
          })
          res.on('end', () => reject(new EngineError(res.statusCode ?? 0, path, t.trim())))
        } else resolve(res)
      })
      req.on('error', (e) => reject(e instanceof HookError ? e : new TransportError(`docker API ${path}: ${e.message}`, 'lost')))
      req.end(payload)
    })
    const stream = await Promise.race([opened, bound.givenUp]).finally(bound.clear)
    return { ended: demux(stream, out), input, close: () => void stream.destroy() }
  }
}

/**
 * Gives a request up after `limitMs` (null: never) or when `signal` aborts: `givenUp` rejects with
 * why, and the request is destroyed. Callers race it, since a request destroyed while its socket is
 * still being opened (an SSH channel the VM has not answered) emits nothing.
 */
function givingUp(
  req: ClientRequest,
  what: string,
  limitMs: number | null,
  signal?: AbortSignal
): { givenUp: Promise<never>; clear: () => void } {
  let reject!: (e: HookError) => void
  const givenUp = new Promise<never>((_, r) => (reject = r))
  givenUp.catch(() => undefined)
  const end = (e: HookError): void => {
    reject(e)
    req.destroy(e)
  }
  const timer =
    limitMs === null
      ? null
      : setTimeout(() => end(new TransportError(`docker API ${what}: no answer within ${limitMs / 1000} s`, 'timeout')), limitMs)
  const onAbort = (): void => end(Cancelled.by(signal!))
  signal?.addEventListener('abort', onAbort, { once: true })
  if (signal?.aborted) onAbort()
  return {
    givenUp,
    clear: () => {
      if (timer) clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

/**
 * Docker's multiplexed stream: 8-byte header (stream id, 3 zero bytes, u32 size) then payload. The
 * payload is handed on in pieces as it arrives, as views of the received chunks: nothing is copied
 * or held back waiting for the rest of a frame.
 */
function demux(stream: Readable, out: Output): Promise<void> {
  return new Promise((resolve, reject) => {
    const head = Buffer.alloc(8)
    let have = 0
    let type = 1
    let left = 0
    let settled = false
    let paused = false
    const emit = (payload: Buffer): void => {
      const more = type === 2 ? out.onStderr(payload) : out.onStdout(payload)
      if (more === false && out.waitDrain && !paused) {
        paused = true
        stream.pause()
        // A reader that went away for good ends the stream rather than leaving it paused.
        out.waitDrain().then(
          () => {
            paused = false
            stream.resume()
          },
          (e: unknown) => stream.destroy(e instanceof Error ? e : new Error(String(e)))
        )
      }
    }
    stream.on('data', (c: Buffer) => {
      let at = 0
      while (!settled && at < c.length) {
        if (have < 8) {
          const n = Math.min(8 - have, c.length - at)
          c.copy(head, have, at, at + n)
          have += n
          at += n
          if (have < 8) return
          type = head[0]
          left = head.readUInt32BE(4)
          if (left > MAX_STREAM_FRAME) return finish(new Error(`a frame of ${left} bytes is over the limit of ${MAX_STREAM_FRAME}`))
          if (left === 0) have = 0
          continue
        }
        const n = Math.min(left, c.length - at)
        const piece = c.subarray(at, at + n)
        at += n
        left -= n
        if (left === 0) have = 0
        emit(piece)
      }
    })
    const finish = (err?: Error): void => {
      if (settled) return
      settled = true
      stream.destroy()
      if (err) reject(new TransportError(`output stream broke: ${err.message}`, 'lost'))
      else resolve()
    }
    stream.on('end', () => finish())
    stream.on('close', () => finish())
    stream.on('error', (e) => finish(e))
  })
}

/** The id docker answered with, checked before it becomes part of a request path. */
export function idFrom(data: unknown, what: string): string {
  const id = (data as { Id?: unknown } | null)?.Id
  if (typeof id !== 'string' || !CONTAINER_ID.test(id)) throw new UnexpectedAnswer(`docker ${what} returned no valid id`)
  return id
}
