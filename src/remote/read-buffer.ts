// The SSH connection's socket reads into one buffer, reused while nothing keeps a view of it.
import { connect, type Socket } from 'node:net'

export const READ_SIZE = 64 * 1024

/** How the reads of one connection were handed to ssh2. */
export interface ReadCounts {
  /** As views of the connection's buffer. */
  shared: number
  /** Copied out, exactly what arrived (the decipher of the moment keeps views of its input). */
  copied: number
  /** The buffer replaced: the decipher changed while it parsed a shared read. */
  replaced: number
}

/**
 * Whether ssh2's decipher `d` copies everything it reads out of the chunk it is given, so the
 * chunk may be overwritten once `parse` returns. Only its JavaScript AES-GCM decipher is known to
 * (lib/protocol/crypto.js of the ssh2 version package.json pins exactly, for this reason: read it
 * again before changing that version): the length goes into an integer, the ciphertext through
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
 * A TCP connection whose reads go into one 64 KiB buffer. A read is handed to ssh2 as a view of it
 * while `decipher()` (the transport's current decipher) copies what it reads; otherwise as a copy of
 * what arrived, so nothing ssh2 keeps ever points into the buffer. Should the decipher change while
 * it parses a shared read, the rest of that read may have gone to one that keeps views: the buffer
 * is then left to them and a new one takes its place.
 *
 * Why: node gives every socket read a new 64 KiB block and shrinks it to what arrived. During a
 * step's bulk output thousands of them are freed between blocks that live longer, and glibc keeps
 * the holes: without this an agent's private memory stayed 7-14 MB higher after large outputs.
 *
 * ssh2 is handed the socket as its `sock` and reads it through 'data' events, which are emitted
 * here: with `onread`, node calls back instead of emitting them.
 */
export function connectReusingReads(
  host: string,
  port: number,
  decipher: () => unknown,
  counts: ReadCounts = { shared: 0, copied: 0, replaced: 0 },
  copies: (d: unknown) => boolean = copiesInput
): Socket {
  let buf = Buffer.allocUnsafeSlow(READ_SIZE)
  const sock: Socket = connect({
    host,
    port,
    onread: {
      buffer: () => buf,
      callback: (n: number) => {
        const before = decipher()
        if (!copies(before)) {
          counts.copied++
          sock.emit('data', Buffer.from(buf.subarray(0, n)))
          return true
        }
        counts.shared++
        sock.emit('data', buf.subarray(0, n))
        if (decipher() !== before) {
          counts.replaced++
          buf = Buffer.allocUnsafeSlow(READ_SIZE)
        }
        return true
      }
    }
  })
  return sock
}
