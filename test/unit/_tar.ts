// Hand-made tar blocks for the tests of the tar reader and the pull-back.

export interface H {
  name?: string
  type?: string
  size?: number
  mode?: number
  mtime?: number
  linkname?: string
  magic?: string
  prefix?: string
  sizeField?: Buffer
  badChecksum?: boolean
}

/** One hand-made header block (GNU magic unless told), with a correct checksum unless told. */
export function header(h: H): Buffer {
  const b = Buffer.alloc(512)
  const oct = (v: number, off: number, len: number): void => void b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1')
  b.write(h.name ?? 'a/f', 0, 100, 'utf8')
  oct(h.mode ?? 0o644, 100, 8)
  oct(0, 108, 8)
  oct(0, 116, 8)
  if (h.sizeField) h.sizeField.copy(b, 124)
  else oct(h.size ?? 0, 124, 12)
  oct(h.mtime ?? 1_700_000_000, 136, 12)
  b.write(h.type ?? '0', 156, 1, 'latin1')
  b.write(h.linkname ?? '', 157, 100, 'utf8')
  b.write(h.magic ?? 'ustar  \0', 257, 8, 'latin1')
  if (h.prefix) b.write(h.prefix, 345, 155, 'utf8')
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const x of b) sum += x
  if (h.badChecksum) sum += 1
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  return b
}

export function body(content: Buffer | string): Buffer {
  const c = Buffer.from(content)
  return Buffer.concat([c, Buffer.alloc((512 - (c.length % 512)) % 512)])
}

export const END = Buffer.alloc(1024)

export function member(h: H, content: Buffer | string = ''): Buffer {
  const c = Buffer.from(content)
  return Buffer.concat([header({ ...h, size: h.size ?? c.length }), body(c)])
}

export function pax(records: Record<string, string>): Buffer {
  let text = ''
  for (const [k, v] of Object.entries(records)) {
    // A record's length counts bytes, not UTF-16 units.
    const rest = Buffer.byteLength(` ${k}=${v}\n`)
    let n = rest + 1
    while (String(n).length + rest !== n) n++
    text += `${n} ${k}=${v}\n`
  }
  return member({ name: 'PaxHeaders/x', type: 'x' }, text)
}

export const tarOf = (...parts: Buffer[]): Buffer => Buffer.concat([...parts, END])
