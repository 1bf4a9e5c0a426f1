// The tar of what a push sends, made in this process instead of by a local `tar`: a step's push
// carries a handful of small files, and starting a program for them costs the agent (a fork of a
// large process) more than the bytes. Only what the local walk lists is written: folders, symlinks
// and regular files, in ustar with a pax header where a name, a link target or a size does not fit.
// What cannot be read (gone since the walk, not readable) is left out, as `tar --ignore-failed-read`
// does; a file that shrinks while it is read is padded with zeros to the size its header announced.
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs'
import { Readable } from 'node:stream'
import { readFailure } from './safe-fs'

const BLOCK = 512
/** Bytes read from a file per chunk. */
const CHUNK = 64 * 1024
/** The largest size ustar's 11 octal digits hold. */
const MAX_USTAR_SIZE = 0o77777777777

const octal = (b: Buffer, value: number, at: number, len: number): void =>
  void b.write(value.toString(8).padStart(len - 1, '0') + '\0', at, len, 'latin1')

/** A pax record: its own length in decimal, a space, key=value and a newline. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`
  const n = Buffer.byteLength(body)
  let len = n + String(n).length
  if (String(len).length !== String(n).length) len = n + String(len).length
  return `${len}${body}`
}

const pad = (n: number): Buffer => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK)

function header(name: string, type: string, st: Stats, size: number, linkname = ''): Buffer {
  const pax: string[] = []
  if (Buffer.byteLength(name) > 100) pax.push(paxRecord('path', name))
  if (Buffer.byteLength(linkname) > 100) pax.push(paxRecord('linkpath', linkname))
  if (size > MAX_USTAR_SIZE) pax.push(paxRecord('size', String(size)))
  const b = Buffer.alloc(BLOCK)
  // A longer name is in the pax header; this one is only for readers that ignore it.
  b.write(name, 0, 100, 'utf8')
  octal(b, st.mode & 0o7777, 100, 8)
  octal(b, st.uid & 0o7777777, 108, 8)
  octal(b, st.gid & 0o7777777, 116, 8)
  octal(b, size > MAX_USTAR_SIZE ? 0 : size, 124, 12)
  octal(b, Math.max(0, Math.floor(st.mtimeMs / 1000)), 136, 12)
  b.write(type, 156, 1, 'latin1')
  b.write(Buffer.byteLength(linkname) > 100 ? '' : linkname, 157, 100, 'utf8')
  b.write('ustar\u000000', 257, 8, 'latin1')
  checksum(b)
  if (!pax.length) return b
  const records = Buffer.from(pax.join(''))
  const x = Buffer.alloc(BLOCK)
  x.write('PaxHeader', 0, 100, 'latin1')
  octal(x, 0o644, 100, 8)
  octal(x, 0, 108, 8)
  octal(x, 0, 116, 8)
  octal(x, records.length, 124, 12)
  octal(x, 0, 136, 12)
  x.write('x', 156, 1, 'latin1')
  x.write('ustar\u000000', 257, 8, 'latin1')
  checksum(x)
  return Buffer.concat([x, records, pad(records.length), b])
}

function checksum(b: Buffer): void {
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const x of b) sum += x
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
}

/** A tar stream of `paths` (relative to `base`, in order), read as it is consumed. */
export function tarOf(base: string, paths: readonly string[]): Readable {
  let next = 0
  let file: { fd: number; left: number; size: number } | null = null
  const closeFile = (): void => {
    if (file) closeSync(file.fd)
    file = null
  }
  /** The next piece of the archive: a header, a chunk of a file, or null at the end. */
  const piece = (): Buffer | null => {
    if (file) {
      const { fd, size } = file
      const want = Math.min(CHUNK, file.left)
      const buf = Buffer.allocUnsafe(want)
      let got = 0
      while (got < want) {
        const n = readSync(fd, buf, got, want - got, null)
        if (n === 0) break
        got += n
      }
      // Shrunk since its header was written: the rest of the announced size is zeros.
      if (got < want) buf.fill(0, got)
      file.left -= want
      if (file.left > 0) return buf
      closeFile()
      return Buffer.concat([buf, pad(size)])
    }
    while (next < paths.length) {
      const p = paths[next++]
      const full = `${base}/${p}`
      let st: Stats
      try {
        st = lstatSync(full)
        if (st.isDirectory()) return header(`${p}/`, '5', st, 0)
        if (st.isSymbolicLink()) return header(p, '2', st, 0, readlinkSync(full))
        if (!st.isFile()) continue
        const fd = openSync(full, constants.O_RDONLY | constants.O_NOFOLLOW)
        try {
          st = fstatSync(fd)
        } catch (e) {
          closeSync(fd)
          throw e
        }
        if (!st.isFile()) {
          closeSync(fd)
          continue
        }
        if (st.size > 0) file = { fd, left: st.size, size: st.size }
        else closeSync(fd)
        return header(p, '0', st, st.size)
      } catch (e) {
        // Gone since the walk (or a link or folder in its place): left out. Anything else fails
        // the stream: the VM would keep its old copy, which the base would record as sent.
        const failed = readFailure(full, e)
        if (failed) throw failed
        continue
      }
    }
    if (next === paths.length) {
      next++
      return Buffer.alloc(2 * BLOCK)
    }
    return null
  }
  return new Readable({
    highWaterMark: 4 * CHUNK,
    read() {
      try {
        for (;;) {
          // Pieces go out gathered up to a chunk: each write becomes its own SSH packet, and a push
          // of 2,000 small files, one write per header and per file, cost ~0.2 ms of CPU a piece.
          const parts: Buffer[] = []
          let size = 0
          let p: Buffer | null = null
          while (size < CHUNK && (p = piece()) !== null) {
            parts.push(p)
            size += p.length
          }
          const more = parts.length === 0 || this.push(parts.length === 1 ? parts[0] : Buffer.concat(parts, size))
          if (p === null) {
            this.push(null)
            return
          }
          if (!more) return
        }
      } catch (e) {
        this.destroy(e as Error)
      }
    },
    destroy(err, cb) {
      closeFile()
      cb(err)
    }
  })
}
