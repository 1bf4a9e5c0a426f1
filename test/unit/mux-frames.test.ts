import { randomBytes } from 'node:crypto'
import { F, FrameReader, frame } from '../../src/remote/mux-frames'

type Got = [number, Buffer]

function collect(): { got: Got[]; reader: FrameReader } {
  const got: Got[] = []
  // Copy: the reader hands out views of its buffer.
  return { got, reader: new FrameReader((t, p) => got.push([t, Buffer.from(p)])) }
}

const FRAMES: Got[] = [
  [F.STDIN, Buffer.from('echo hi\n')],
  [F.STDOUT, Buffer.from('héllo ☃\n')],
  [F.STDERR, Buffer.alloc(0)],
  [F.STDIN_EOF, Buffer.alloc(0)],
  [F.STDOUT, randomBytes(1000)],
  [F.EXIT, Buffer.from(JSON.stringify({ code: 3, signal: null }))],
  [F.ERROR, Buffer.from('connection lost')],
  [255, Buffer.from([0, 0, 0, 0, 5])]
]
const WIRE = Buffer.concat(FRAMES.map(([t, p]) => frame(t, p)))
/** Frames as one comparable string (jest's deep equality on Buffers is slow). */
const sig = (frames: Got[]): string => frames.map(([t, p]) => `${t}:${p.toString('hex')}`).join(',')
const EXPECTED = sig(FRAMES)

describe('frame', () => {
  it('writes [type u8][length u32 BE][payload]', () => {
    expect(frame(F.STDERR, 'ab')).toEqual(Buffer.from([2, 0, 0, 0, 2, 0x61, 0x62]))
    expect(frame(F.EXIT)).toEqual(Buffer.from([3, 0, 0, 0, 0]))
    expect(frame(1, 'é').readUInt32BE(1)).toBe(2)
  })

  it('encodes a length above 16 bits', () => {
    const f = frame(F.STDOUT, Buffer.alloc(70_000, 7))
    expect(f.length).toBe(70_005)
    expect(f.readUInt32BE(1)).toBe(70_000)
  })
})

describe('FrameReader', () => {
  it('decodes several frames from one chunk, in order', () => {
    const { got, reader } = collect()
    reader.push(WIRE)
    expect(got).toEqual(FRAMES)
  })

  it('decodes the same frames when every byte arrives on its own', () => {
    const { got, reader } = collect()
    for (let i = 0; i < WIRE.length; i++) reader.push(WIRE.subarray(i, i + 1))
    expect(sig(got)).toBe(EXPECTED)
  })

  it('decodes the same frames across every two-way split of the stream', () => {
    for (let cut = 0; cut <= WIRE.length; cut++) {
      const { got, reader } = collect()
      reader.push(WIRE.subarray(0, cut))
      reader.push(WIRE.subarray(cut))
      expect(sig(got)).toBe(EXPECTED)
    }
  })

  it('decodes the same frames across random splits', () => {
    for (let round = 0; round < 200; round++) {
      const { got, reader } = collect()
      let i = 0
      while (i < WIRE.length) {
        const n = 1 + Math.floor(Math.random() * 40)
        reader.push(WIRE.subarray(i, i + n))
        i += n
      }
      expect(sig(got)).toBe(EXPECTED)
    }
  })

  it('emits nothing for an incomplete header or payload, and tolerates empty chunks', () => {
    const { got, reader } = collect()
    const f = frame(F.STDOUT, 'abc')
    reader.push(Buffer.alloc(0))
    reader.push(f.subarray(0, 4))
    expect(got).toEqual([])
    reader.push(f.subarray(4, 7))
    expect(got).toEqual([])
    reader.push(Buffer.alloc(0))
    reader.push(f.subarray(7))
    expect(got).toEqual([[F.STDOUT, Buffer.from('abc')]])
  })

  it('decodes a large payload whole and in chunks', () => {
    const big = randomBytes(8 * 1024 * 1024 + 3)
    const wire = Buffer.concat([frame(F.STDOUT, big), frame(F.EXIT, '{"code":0}')])
    const one = collect()
    one.reader.push(wire)
    expect(one.got).toHaveLength(2)
    expect(one.got[0][1].equals(big)).toBe(true)

    const many = collect()
    for (let i = 0; i < wire.length; i += 64 * 1024) many.reader.push(wire.subarray(i, i + 64 * 1024))
    expect(many.got.map(([t, p]) => [t, p.length])).toEqual([
      [F.STDOUT, big.length],
      [F.EXIT, 10]
    ])
    expect(many.got[0][1].equals(big)).toBe(true)
  })

  it('a re-entrant push from the callback lands after the data already buffered', () => {
    const got: Got[] = []
    const reader: FrameReader = new FrameReader((t, p) => {
      got.push([t, Buffer.from(p)])
      if (t === F.STDIN) reader.push(frame(F.STDIN_EOF))
    })
    reader.push(Buffer.concat([frame(F.STDIN, 'x'), frame(F.STDOUT, 'y')]))
    expect(got.map(([t]) => t)).toEqual([F.STDIN, F.STDOUT, F.STDIN_EOF])
  })
})
