// Framing between a hook process and its job's agent over a Unix socket:
// [type u8][length u32 BE][payload]. One socket connection carries one remote channel.
import type { Socket } from 'node:net'

// REFUSED: the agent ran nothing because the machine's lease is no longer the job's (its payload says why).
export const F = { STDIN: 0, STDOUT: 1, STDERR: 2, EXIT: 3, ERROR: 4, STDIN_EOF: 5, CANCEL: 6, REFUSED: 7 } as const

/** A socket request's first answer byte: opened, failed (the message follows), refused as REFUSED. */
export const SOCKET_ANSWER = { OPEN: 0, FAILED: 1, REFUSED: 2 } as const

/**
 * The largest request line: a `run` request carries the runner's whole step input (its env and
 * arguments, at most a few MiB in practice); the agent drops a connection whose line is longer, so
 * the hook runs a step with a larger input itself.
 */
export const MAX_HEADER = 16 * 1024 * 1024

/** The byte-stream frames: a reader may hand their payload on in pieces, as it arrives. */
export const isStreamFrame = (type: number): boolean => type === F.STDIN || type === F.STDOUT || type === F.STDERR

export function frameHead(type: number, length: number): Buffer {
  const head = Buffer.allocUnsafe(5)
  head.writeUInt8(type, 0)
  head.writeUInt32BE(length, 1)
  return head
}

export function frame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  return Buffer.concat([frameHead(type, body.length), body])
}

/**
 * Bytes a writer lets queue in a stream before it waits for 'drain'. Node's own mark (16 KiB) is
 * below one Docker output frame, so honouring it made every frame a pause and a resume of the
 * source; this keeps the queue bounded all the same.
 */
export const QUEUE_LIMIT = 256 * 1024

/**
 * Corks a stream until the event loop's current turn is over, so everything written in it (the
 * frames of every packet one read brought) leaves in one writev: on a loaded two-core machine the
 * system call and the reader's wake-up cost more per write than the bytes.
 */
export function corkTurn(s: { cork(): void; uncork(): void; writableCorked: number }): void {
  if (s.writableCorked) return
  s.cork()
  setImmediate(() => s.uncork())
}

/** Writes the parts, batched with the turn's others; false once the queue is over QUEUE_LIMIT. */
export function writeQueued(sock: Socket, ...parts: (Buffer | string)[]): boolean {
  corkTurn(sock)
  for (const p of parts) sock.write(p)
  return sock.writableLength < QUEUE_LIMIT
}

/** Writes one frame without copying the payload, batched with the turn's others; false once the queue is over QUEUE_LIMIT. */
export function writeFrame(sock: Socket, type: number, payload: Buffer): boolean {
  if (payload.length === 0 && isStreamFrame(type)) return sock.writableLength < QUEUE_LIMIT
  // Output over a frame's limit (one write of a long line) goes as several frames: one frame would
  // be refused by the reader, and the step's end with it.
  if (payload.length > MAX_FRAME && isStreamFrame(type)) {
    for (let at = 0; at < payload.length; at += MAX_FRAME) {
      const piece = payload.subarray(at, at + MAX_FRAME)
      writeQueued(sock, frameHead(type, piece.length), piece)
    }
    return sock.writableLength < QUEUE_LIMIT
  }
  return writeQueued(sock, frameHead(type, payload.length), payload)
}

/**
 * Calls fn once the socket drained, or once it closed: a source waiting on a hook that went away
 * must not wait for ever (one already closed gets no event any more: fn runs on the next turn).
 */
export function whenDrained(sock: Socket, fn: () => void): void {
  if (sock.destroyed) return void setImmediate(fn)
  const done = (): void => {
    sock.off('drain', done)
    sock.off('close', done)
    fn()
  }
  sock.on('drain', done)
  sock.on('close', done)
}

/**
 * Resolves once everything written to s so far has left this process (an empty write's callback
 * runs after the writes before it), or once s closed: an exit or a close would drop the rest.
 */
export function flushed(s: {
  readonly destroyed: boolean
  readonly writableLength: number
  write(c: Buffer, cb: () => void): unknown
  once(e: 'close', fn: () => void): unknown
}): Promise<void> {
  if (s.destroyed || !s.writableLength) return Promise.resolve()
  return new Promise((resolve) => {
    s.once('close', () => resolve())
    s.write(Buffer.alloc(0), () => resolve())
  })
}

/** Where relayed payloads go: a stream, or the hook's stdout Sink (whose queue length may be unknown). */
export interface DrainTarget {
  write(chunk: Buffer): boolean
  once(event: 'drain', fn: () => void): unknown
  readonly writableLength?: number
}

/**
 * A writer that relays into destinations and pauses `source` once QUEUE_LIMIT bytes wait in one
 * of them (at once, when its queue length is unknown), until that one drains.
 */
export function pausingWriter(source: { pause(): void; resume(): void }): (dst: DrainTarget, chunk: Buffer) => void {
  let paused = false
  return (dst, chunk) => {
    if (!dst.write(chunk) && !paused && (dst.writableLength === undefined || dst.writableLength >= QUEUE_LIMIT)) {
      paused = true
      source.pause()
      dst.once('drain', () => {
        paused = false
        source.resume()
      })
    }
  }
}

/**
 * The largest frame accepted. Writers send stream chunks (tens of KiB) and small JSON, so this is
 * generous while keeping what one peer can make the other buffer bounded.
 */
export const MAX_FRAME = 16 * 1024 * 1024

export class FrameTooLarge extends Error {}

/**
 * Incremental decoder: feed chunks, get frames. Frames whose type `streamed` accepts are handed on
 * in pieces as they arrive (views of the pushed chunks, never copied or held); others whole. A
 * frame over the limit stops it for good.
 */
export class FrameReader {
  private readonly head = Buffer.alloc(5)
  private have = 0
  private type = 0
  private left = 0
  private parts: Buffer[] = []
  private failed = false
  private busy = false
  private readonly queue: Buffer[] = []
  constructor(
    private readonly onFrame: (type: number, payload: Buffer) => void,
    /** Called once when a frame is over the limit; without it push() throws. */
    private readonly onError?: (err: Error) => void,
    private readonly max = MAX_FRAME,
    private readonly streamed: (type: number) => boolean = () => false
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return
    // A push from inside onFrame lands after what is being decoded.
    if (this.busy) return void this.queue.push(chunk)
    this.busy = true
    try {
      this.consume(chunk)
      while (this.queue.length && !this.failed) this.consume(this.queue.shift()!)
    } finally {
      this.busy = false
    }
  }

  private consume(c: Buffer): void {
    let at = 0
    while (!this.failed) {
      if (this.have < 5) {
        const n = Math.min(5 - this.have, c.length - at)
        c.copy(this.head, this.have, at, at + n)
        this.have += n
        at += n
        if (this.have < 5) return
        this.type = this.head[0]
        this.left = this.head.readUInt32BE(1)
        if (this.left > this.max) return this.fail(this.left)
        if (this.left === 0) {
          this.have = 0
          if (!this.streamed(this.type)) this.onFrame(this.type, Buffer.alloc(0))
          continue
        }
      }
      if (at >= c.length) return
      const n = Math.min(this.left, c.length - at)
      const piece = c.subarray(at, at + n)
      at += n
      this.left -= n
      if (this.left === 0) this.have = 0
      if (this.streamed(this.type)) this.onFrame(this.type, piece)
      else {
        this.parts.push(piece)
        if (this.left === 0) {
          const payload = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts)
          this.parts = []
          this.onFrame(this.type, payload)
        }
      }
    }
  }

  private fail(len: number): void {
    this.failed = true
    this.parts = []
    this.queue.length = 0
    const err = new FrameTooLarge(`a frame of ${len} bytes is over the limit of ${this.max}`)
    if (!this.onError) throw err
    this.onError(err)
  }
}
