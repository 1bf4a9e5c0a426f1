// Hand-made ustar archives for the hostile VM's `tar`: member names, types and link targets that no
// honest `tar -c` of the requested paths would produce.

export interface Member {
  name: string
  /** '0' file, '1' hardlink, '2' symlink, '3' char device, '5' dir, '6' FIFO, 'S' sparse… */
  type: string
  data?: string | Buffer
  linkname?: string
  mode?: number
  /** Size written in the header when it should lie about the data that follows. */
  claimedSize?: number
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0'
}

export function header(m: Member): Buffer {
  const h = Buffer.alloc(512)
  const data = Buffer.from(m.data ?? '')
  h.write(m.name, 0, 100, 'utf8')
  h.write(octal(m.mode ?? 0o644, 8), 100, 'ascii')
  h.write(octal(0, 8), 108, 'ascii')
  h.write(octal(0, 8), 116, 'ascii')
  h.write(octal(m.claimedSize ?? data.length, 12), 124, 'ascii')
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136, 'ascii')
  h.write('        ', 148, 'ascii')
  h.write(m.type, 156, 'ascii')
  h.write(m.linkname ?? '', 157, 100, 'utf8')
  h.write('ustar\0', 257, 'ascii')
  h.write('00', 263, 'ascii')
  let sum = 0
  for (const b of h) sum += b
  h.write(octal(sum, 7) + ' ', 148, 'ascii')
  return h
}

export function archive(members: Member[]): Buffer {
  const parts: Buffer[] = []
  for (const m of members) {
    parts.push(header(m))
    const data = Buffer.from(m.data ?? '')
    if (data.length) parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}
