// Framing between a hook process and its job's agent over a Unix socket:
// [type u8][length u32 BE][payload]. One socket connection carries one remote channel.
export const F = { STDIN: 0, STDOUT: 1, STDERR: 2, EXIT: 3, ERROR: 4, STDIN_EOF: 5, CANCEL: 6 } as const

export function frame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  const head = Buffer.alloc(5)
  head.writeUInt8(type, 0)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

/**
 * The largest frame accepted. Writers send stream chunks (tens of KiB) and small JSON, so this is
 * generous while keeping what one peer can make the other buffer bounded.
 */
export const MAX_FRAME = 16 * 1024 * 1024

export class FrameTooLarge extends Error {}

/** Incremental decoder: feed chunks, get whole frames. A frame over the limit stops it for good. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0)
  private failed = false
  constructor(
    private readonly onFrame: (type: number, payload: Buffer) => void,
    /** Called once when a frame is over the limit; without it push() throws. */
    private readonly onError?: (err: Error) => void,
    private readonly max = MAX_FRAME
  ) {}
  push(chunk: Buffer): void {
    if (this.failed) return
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1)
      if (len > this.max) {
        this.failed = true
        this.buf = Buffer.alloc(0)
        const err = new FrameTooLarge(`a frame of ${len} bytes is over the limit of ${this.max}`)
        if (!this.onError) throw err
        return this.onError(err)
      }
      if (this.buf.length < 5 + len) break
      const type = this.buf.readUInt8(0)
      const payload = this.buf.subarray(5, 5 + len)
      this.buf = this.buf.subarray(5 + len)
      this.onFrame(type, payload)
    }
  }
}
