// The SSH connection's socket reads into one buffer, reused while nothing keeps a view of it.
import { connect, type Socket } from 'node:net'

export const READ_SIZE = 64 * 1024

/** How the reads of one connection were served. */
export interface ReadCounts {
  reused: number
  fresh: number
}

/**
 * Whether ssh2's decipher `d` copies everything it reads out of the chunk it is given, so the
 * chunk may be overwritten once `parse` returns. Only its JavaScript AES-GCM decipher is known to
 * (ssh2 1.x, lib/protocol/crypto.js): the length goes into an integer, the ciphertext through
 * OpenSSL, the tag into its own buffer. The others keep views of the input across reads: the
 * plain-text decipher of the first key exchange (and the key exchange keeps the payloads it
 * parses), the ChaCha20 and CTR ones keep a packet until its MAC arrives, and the native binding
 * decrypts in place and hands out views of the result.
 */
export function copiesInput(d: unknown): boolean {
  const name = (d as { constructor?: { name?: unknown } } | null | undefined)?.constructor?.name
  return typeof name === 'string' && /^AESGCMDecipherNative\d*$/.test(name)
}

/**
 * A TCP connection whose reads go into one 64 KiB buffer for as long as `decipher()` (the
 * transport's current decipher) copies what it reads and did not change during the read; otherwise
 * the next read gets a new buffer and the old one is left to whatever still holds views of it.
 *
 * Why: node gives every socket read a new 64 KiB block and shrinks it to what arrived. During a
 * step's bulk output thousands of them are freed between blocks that live longer, and glibc keeps
 * the holes: without this an agent's private memory stayed ~20 MB higher after large outputs.
 *
 * ssh2 is handed the socket as its `sock` and reads it through 'data' events, which are emitted
 * here: with `onread`, node calls back instead of emitting them.
 */
export function connectReusingReads(
  host: string,
  port: number,
  decipher: () => unknown,
  counts?: ReadCounts,
  copies: (d: unknown) => boolean = copiesInput
): Socket {
  let buf = Buffer.allocUnsafeSlow(READ_SIZE)
  let keep = false
  const sock: Socket = connect({
    host,
    port,
    onread: {
      buffer: () => {
        if (keep) {
          if (counts) counts.reused++
          return buf
        }
        if (counts) counts.fresh++
        return (buf = Buffer.allocUnsafeSlow(READ_SIZE))
      },
      callback: (n: number, chunk: Uint8Array) => {
        const before = decipher()
        sock.emit('data', Buffer.from(chunk.buffer, chunk.byteOffset, n))
        keep = before === decipher() && copies(before)
        return true
      }
    }
  })
  return sock
}
