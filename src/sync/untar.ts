// A streaming reader for the tar the VM sends back. The VM is hostile, so this is not a general
// extractor: it verifies every header and hands on only regular files, folders and symlinks with
// clean relative names; anything else (hardlinks, devices, fifos, sparse or multi-volume members,
// unknown types) is an error. The caller decides what to do with each member.
import { HookError } from '../errors'
import { badRelPath } from './safe-fs'

export class TarError extends HookError {
  constructor(message: string) {
    super(`tar stream from the remote: ${message}`)
  }
}

export type TarType = 'file' | 'dir' | 'symlink'

export interface TarEntry {
  /** Relative, validated; a folder's trailing '/' removed. */
  name: string
  type: TarType
  size: number
  mode: number
  mtime: number
  linkname: string
}

export interface TarHandler {
  entry(e: TarEntry): void
  /** The member's content, in order; the total is exactly entry.size. */
  data(chunk: Buffer): void
  endEntry(e: TarEntry): void
}

const BLOCK = 512
const MAX_LONG_NAME = 8192
const MAX_PAX = 64 * 1024
// tar fills its last record with zeros after the end-of-archive marker: 18 blocks with the default
// blocking factor of 20. More than this is a VM streaming for ever, not padding.
const MAX_TRAILER = 1024 * 1024
// ignoreBOM: a leading U+FEFF is part of a name (as the listing reads it), not a marker to drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

const REFUSED: Record<string, string> = {
  '1': 'a hardlink',
  '3': 'a character device',
  '4': 'a block device',
  '6': 'a fifo',
  '7': 'a contiguous file',
  S: 'a sparse file',
  M: 'a multi-volume continuation',
  V: 'a volume label',
  D: 'a GNU dump folder',
  N: 'an old GNU long name'
}

function text(b: Buffer, what: string): string {
  const end = b.indexOf(0)
  try {
    return utf8.decode(end < 0 ? b : b.subarray(0, end))
  } catch {
    throw new TarError(`${what} is not valid UTF-8`)
  }
}

/** An octal (or GNU base-256) numeric header field, strictly. */
function num(h: Buffer, off: number, len: number, field: string): number {
  if (h[off] & 0x80) {
    if (h[off] !== 0x80) throw new TarError(`negative or oversized ${field}`)
    let v = 0
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i]
    if (!Number.isSafeInteger(v)) throw new TarError(`oversized ${field}`)
    return v
  }
  const m = /^ *([0-7]*)[ \0]*$/.exec(h.toString('latin1', off, off + len))
  if (!m) throw new TarError(`malformed ${field} field`)
  return m[1] === '' ? 0 : parseInt(m[1], 8)
}

function checksumOk(h: Buffer): boolean {
  const stored = num(h, 148, 8, 'checksum')
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]
  return stored === sum
}

function parsePax(b: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let off = 0
  while (off < b.length) {
    const sp = b.indexOf(0x20, off)
    const lenText = sp < 0 ? '' : b.toString('latin1', off, sp)
    if (!/^[1-9]\d{0,6}$/.test(lenText)) throw new TarError('malformed pax record length')
    const end = off + Number(lenText)
    if (end > b.length || end <= sp + 1 || b[end - 1] !== 0x0a) throw new TarError('malformed pax record')
    let rec: string
    try {
      rec = utf8.decode(b.subarray(sp + 1, end - 1))
    } catch {
      throw new TarError('pax record is not valid UTF-8')
    }
    const eq = rec.indexOf('=')
    if (eq <= 0) throw new TarError('malformed pax record')
    out.set(rec.slice(0, eq), rec.slice(eq + 1))
    off = end
  }
  return out
}

function cleanName(raw: string, type: TarType): string {
  const name = type === 'dir' && raw.endsWith('/') ? raw.slice(0, -1) : raw
  const bad = badRelPath(name)
  if (bad) throw new TarError(`refused member name ${JSON.stringify(raw.slice(0, 200))}: ${bad}`)
  return name
}

type Meta = 'L' | 'K' | 'x' | 'g'

/** Feed it the stream with write(), then call finish(); both throw TarError on anything refused. */
export class TarReader {
  private readonly header = Buffer.alloc(BLOCK)
  private headerLen = 0
  /** Bytes of the current member's content still to come, then its padding. */
  private left = 0
  private pad = 0
  private current: TarEntry | null = null
  private meta: { kind: Meta; chunks: Buffer[]; len: number } | null = null
  private longName: string | null = null
  private longLink: string | null = null
  private pax: Map<string, string> | null = null
  private zeros = 0
  private ended = false
  private trailer = 0
  private globalSeen = false

  constructor(private readonly handler: TarHandler) {}

  write(chunk: Buffer): void {
    let off = 0
    while (off < chunk.length) {
      if (this.ended) {
        this.padding(chunk.subarray(off))
        return
      }
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - off)
        const part = chunk.subarray(off, off + n)
        if (this.meta) {
          this.meta.chunks.push(part)
          this.meta.len += n
        } else this.handler.data(part)
        this.left -= n
        off += n
        if (this.left === 0) this.endMember()
        continue
      }
      if (this.pad > 0) {
        const n = Math.min(this.pad, chunk.length - off)
        this.pad -= n
        off += n
        continue
      }
      const n = Math.min(BLOCK - this.headerLen, chunk.length - off)
      chunk.copy(this.header, this.headerLen, off, off + n)
      this.headerLen += n
      off += n
      if (this.headerLen === BLOCK) {
        this.headerLen = 0
        this.onHeader(this.header)
      }
    }
  }

  /** The stream ended: it must have ended with the end-of-archive marker, not mid-member. */
  finish(): void {
    if (!this.ended) throw new TarError('the archive is cut off (no end-of-archive marker)')
  }

  /**
   * What follows the end-of-archive marker: only tar's zero padding, and a bounded amount of it, so
   * the stream (and with it every byte the VM sends) is bounded by the members asked for.
   */
  private padding(rest: Buffer): void {
    this.trailer += rest.length
    if (this.trailer > MAX_TRAILER) throw new TarError(`over ${MAX_TRAILER} bytes after the end-of-archive marker`)
    if (rest.some((b) => b !== 0)) throw new TarError('data after the end-of-archive marker')
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      if (this.longName !== null || this.longLink !== null || this.pax) throw new TarError('an extended header without its member')
      if (++this.zeros === 2) this.ended = true
      return
    }
    if (this.zeros) throw new TarError('a zero block inside the archive')
    if (!checksumOk(h)) throw new TarError('header checksum mismatch')
    const magic = h.toString('latin1', 257, 265)
    const posix = magic === 'ustar\x0000'
    if (!posix && magic !== 'ustar  \0') throw new TarError('not a ustar or GNU tar header')
    const flag = String.fromCharCode(h[156])
    let size = num(h, 124, 12, 'size')
    if (flag === 'L' || flag === 'K' || flag === 'x' || flag === 'g') {
      const max = flag === 'L' || flag === 'K' ? MAX_LONG_NAME : MAX_PAX
      if (size > max) throw new TarError(`extended header of ${size} bytes (at most ${max})`)
      // One of each per member and one global header per archive: a repeated one would let the VM
      // send headers for ever without a member, none of it counted as content.
      const again =
        (flag === 'L' && this.longName !== null) ||
        (flag === 'K' && this.longLink !== null) ||
        (flag === 'x' && this.pax) ||
        (flag === 'g' && this.globalSeen)
      if (again) throw new TarError(`a repeated extended header (type ${flag})`)
      if (flag === 'g') this.globalSeen = true
      this.meta = { kind: flag, chunks: [], len: 0 }
      this.startBody(size)
      return
    }
    let type: TarType
    if (flag === '0' || flag === '\0') type = 'file'
    else if (flag === '5') type = 'dir'
    else if (flag === '2') type = 'symlink'
    else throw new TarError(`refused member type: ${REFUSED[flag] ?? `unknown type ${JSON.stringify(flag)}`}`)

    let name = text(h.subarray(0, 100), 'name')
    const prefix = posix ? text(h.subarray(345, 500), 'name prefix') : ''
    if (prefix) name = `${prefix}/${name}`
    let linkname = text(h.subarray(157, 257), 'link name')
    if (this.longName !== null) name = this.longName
    if (this.longLink !== null) linkname = this.longLink
    const pax = this.pax
    if (pax) {
      for (const k of pax.keys()) if (k.startsWith('GNU.sparse.')) throw new TarError('refused member type: a sparse file (pax)')
      if (pax.get('path')) name = pax.get('path')!
      if (pax.get('linkpath')) linkname = pax.get('linkpath')!
      const s = pax.get('size')
      if (s) {
        if (!/^\d{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) throw new TarError('malformed pax size')
        size = Number(s)
      }
    }
    this.longName = this.longLink = this.pax = null
    if (type !== 'file' && size !== 0) throw new TarError(`a ${type} with content (${size} bytes)`)
    if (type === 'symlink' && linkname === '') throw new TarError('a symlink without a target')
    if (type !== 'symlink' && linkname !== '') throw new TarError('a link name on a member that is not a symlink')
    const e: TarEntry = { name: cleanName(name, type), type, size, mode: num(h, 100, 8, 'mode'), mtime: num(h, 136, 12, 'mtime'), linkname }
    this.current = e
    this.handler.entry(e)
    this.startBody(size)
  }

  private startBody(size: number): void {
    this.left = size
    this.pad = (BLOCK - (size % BLOCK)) % BLOCK
    if (size === 0) this.endMember()
  }

  private endMember(): void {
    const meta = this.meta
    if (meta) {
      this.meta = null
      const body = Buffer.concat(meta.chunks, meta.len)
      if (meta.kind === 'L') this.longName = text(body, 'long name')
      else if (meta.kind === 'K') this.longLink = text(body, 'long link name')
      else if (meta.kind === 'x') this.pax = parsePax(body)
      // 'g' (global pax header): nothing in it matters here
      return
    }
    const e = this.current!
    this.current = null
    this.handler.endEntry(e)
  }
}
