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

/** Incremental decoder: feed chunks, get whole frames. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0)
  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1)
      if (this.buf.length < 5 + len) break
      const type = this.buf.readUInt8(0)
      const payload = this.buf.subarray(5, 5 + len)
      this.buf = this.buf.subarray(5 + len)
      this.onFrame(type, payload)
    }
  }
}
