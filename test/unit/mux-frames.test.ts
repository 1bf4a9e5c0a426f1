import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  F,
  FrameReader,
  FrameTooLarge,
  frame,
  isStreamFrame,
  MAX_FRAME,
  MAX_HEADER,
  QUEUE_LIMIT,
  SOCKET_ANSWER,
  whenDrained,
  writeFrame
} from '../../src/remote/mux-frames'
import { MuxRemote } from '../../src/remote/mux-client'
import { requestLine } from '../../src/remote/agent'
import { runViaAgent } from '../../src/agent-client'
import { TransportError } from '../../src/errors'
import { waitUntil } from '../helpers/wait'

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

describe('FrameReader bounds', () => {
  it('delivers a frame at the limit (positive control) and refuses one over it, without waiting for its payload', () => {
    const got: number[] = []
    const errors: string[] = []
    const reader = new FrameReader(
      (_t, p) => got.push(p.length),
      (e) => errors.push(e.message),
      10
    )
    reader.push(frame(F.STDOUT, Buffer.alloc(10)))
    expect(got).toEqual([10])
    reader.push(frame(F.STDOUT, Buffer.alloc(11)).subarray(0, 5))
    expect(errors).toEqual(['a frame of 11 bytes is over the limit of 10'])
    // nothing after the bad frame is decoded
    reader.push(frame(F.STDOUT, Buffer.alloc(1)))
    expect(got).toEqual([10])
  })

  it('a 4 GiB length header fails at once with the default limit', () => {
    const errors: Error[] = []
    const reader = new FrameReader(
      () => undefined,
      (e) => errors.push(e)
    )
    const head = Buffer.from([F.STDOUT, 0xff, 0xff, 0xff, 0xff])
    reader.push(head)
    expect(errors[0]?.message).toBe(`a frame of ${0xffffffff} bytes is over the limit of ${MAX_FRAME}`)
  })

  it('without an error callback, push throws', () => {
    const reader = new FrameReader(() => undefined, undefined, 1)
    expect(() => reader.push(frame(F.STDOUT, 'ab'))).toThrow(FrameTooLarge)
  })
})

describe('MuxRemote refuses an oversized frame from the agent', () => {
  it('the channel fails instead of buffering', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-mux-'))
    const path = join(dir, 'a.sock')
    const server = createServer((sock) => {
      sock.once('data', () => sock.write(Buffer.concat([frame(F.STDOUT, 'ok'), Buffer.from([F.STDOUT, 0x7f, 0xff, 0xff, 0xff])])))
    })
    await new Promise<void>((r) => server.listen(path, r))
    try {
      const ch = await new MuxRemote(path).openExec('true')
      const out: string[] = []
      ch.stdout.on('data', (c: Buffer) => out.push(String(c)))
      await expect(ch.done).rejects.toThrow(/agent answer unusable: a frame of 2147483647 bytes is over the limit/)
      expect(out.join('')).toBe('ok')
    } finally {
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("MuxRemote's socket keeps what came with the agent's answer byte", () => {
  /** What a reader added a moment after openSocket resolved gets, when the agent stand-in sends OPEN and a reply in one write or two. */
  async function readAfterOpen(oneWrite: boolean): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'rch-mux-'))
    const path = join(dir, 'a.sock')
    const reply = 'HTTP/1.1 200 OK\r\n'
    const server = createServer((sock) => {
      sock.once('data', () => {
        if (oneWrite) sock.write(Buffer.concat([Buffer.from([SOCKET_ANSWER.OPEN]), Buffer.from(reply)]))
        else sock.write(Buffer.from([SOCKET_ANSWER.OPEN]), () => setTimeout(() => sock.write(reply), 20))
      })
    })
    await new Promise<void>((r) => server.listen(path, r))
    try {
      const s = await new MuxRemote(path).openSocket('/var/run/docker.sock')
      // As node's http client reads the socket it is given: a 'data' listener, added later.
      await new Promise((r) => setImmediate(r))
      let got = ''
      s.on('data', (c: Buffer) => (got += String(c)))
      await waitUntil(() => got.length >= reply.length, 2000, 5)
      s.destroy()
      return got
    } finally {
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  it('in one write with the answer (a socket whose far end speaks first)', async () => {
    expect(await readAfterOpen(true)).toBe('HTTP/1.1 200 OK\r\n')
  })
  it('control: in a write of its own', async () => {
    expect(await readAfterOpen(false)).toBe('HTTP/1.1 200 OK\r\n')
  })
})

describe("the agent's request line", () => {
  it('is returned with what followed it, also when split across chunks (positive control)', () => {
    const push = requestLine(16)
    expect(push(Buffer.from('{"op":'))).toBeNull()
    const got = push(Buffer.from('"x"}\nrest'))
    expect(got).toEqual({ line: Buffer.from('{"op":"x"}'), rest: Buffer.from('rest') })
  })

  it('over the limit without a newline it is refused before more is buffered', () => {
    const push = requestLine(16)
    expect(push(Buffer.alloc(10, 0x61))).toBeNull()
    expect(push(Buffer.alloc(10, 0x61))).toBe('too long')
  })

  it('a newline after the limit is refused too', () => {
    expect(requestLine(4)(Buffer.from('abcdef\n'))).toBe('too long')
  })

  it('the agent allows 16 MiB', () => {
    expect(MAX_HEADER).toBe(16 * 1024 * 1024)
  })
})

describe('FrameReader with byte-stream frames handed on in pieces', () => {
  const streamed = (): { got: Got[]; reader: FrameReader } => {
    const got: Got[] = []
    return { got, reader: new FrameReader((t, p) => got.push([t, Buffer.from(p)]), undefined, MAX_FRAME, isStreamFrame) }
  }
  /** Joins consecutive pieces of one stream frame type, as a consumer writing them out sees them. */
  const joined = (got: Got[]): Got[] => {
    const out: Got[] = []
    for (const [t, p] of got) {
      const last = out[out.length - 1]
      if (last && last[0] === t && isStreamFrame(t)) last[1] = Buffer.concat([last[1], p])
      else out.push([t, p])
    }
    return out
  }
  // Adjacent frames of one stream type would join, so the wire alternates them.
  const MIXED: Got[] = [
    [F.STDOUT, randomBytes(70_000)],
    [F.STDERR, Buffer.from('warn\n')],
    [F.STDOUT, Buffer.from('héllo')],
    [F.EXIT, Buffer.from(JSON.stringify({ code: 0, signal: null }))],
    [F.STDIN, randomBytes(300)],
    [F.ERROR, Buffer.from('lost')]
  ]
  const wire = Buffer.concat(MIXED.map(([t, p]) => frame(t, p)))

  it('the pieces of each frame join to its payload; other frames arrive whole, across random splits', () => {
    for (let round = 0; round < 100; round++) {
      const { got, reader } = streamed()
      let i = 0
      while (i < wire.length) {
        const n = 1 + Math.floor(Math.random() * 9000)
        reader.push(wire.subarray(i, i + n))
        i += n
      }
      expect(sig(joined(got))).toBe(sig(MIXED))
      // control frames are never split
      expect(got.filter(([t]) => t === F.EXIT)).toEqual([MIXED[3]])
    }
  })

  it('hands a stream payload on as it arrives, without waiting for the rest of the frame', () => {
    const { got, reader } = streamed()
    const f = frame(F.STDOUT, Buffer.alloc(100_000, 0x61))
    reader.push(f.subarray(0, 1005))
    expect(got.map(([t, p]) => [t, p.length])).toEqual([[F.STDOUT, 1000]])
    reader.push(f.subarray(1005))
    expect(got.reduce((n, [, p]) => n + p.length, 0)).toBe(100_000)
  })

  it("the limit on a frame's announced length holds for stream frames too", () => {
    const errors: string[] = []
    const got: number[] = []
    const reader = new FrameReader(
      (_t, p) => got.push(p.length),
      (e) => errors.push(e.message),
      10,
      isStreamFrame
    )
    reader.push(frame(F.STDOUT, Buffer.alloc(10)))
    reader.push(frame(F.STDOUT, Buffer.alloc(11)).subarray(0, 5))
    expect(got).toEqual([10])
    expect(errors).toEqual(['a frame of 11 bytes is over the limit of 10'])
  })
})

describe('writeFrame', () => {
  it('says "go on" until QUEUE_LIMIT bytes wait in the socket, and sends header and payload unchanged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-mux-'))
    const path = join(dir, 'w.sock')
    let peer!: import('node:net').Socket
    const server = createServer((s) => {
      peer = s
      s.pause() // nothing is read yet: what is written stays queued
    })
    await new Promise<void>((r) => server.listen(path, r))
    const sock = connect(path)
    await new Promise((r) => sock.once('connect', r))
    try {
      const chunk = Buffer.alloc(32 * 1024, 7)
      const answers: boolean[] = []
      for (let i = 0; i < 200 && (answers.length === 0 || answers[answers.length - 1]); i++) {
        answers.push(writeFrame(sock, F.STDOUT, chunk))
        await new Promise((r) => setImmediate(r))
      }
      // Node's own mark (16 KiB) would have said "wait" at the first 32 KiB frame.
      expect(answers.filter(Boolean).length).toBeGreaterThan(1)
      expect(answers[answers.length - 1]).toBe(false)
      expect(sock.writableLength).toBeGreaterThanOrEqual(QUEUE_LIMIT)
      expect(sock.writableLength).toBeLessThan(QUEUE_LIMIT + 2 * (chunk.length + 5))
      // what arrives decodes to the frames written
      const got: Got[] = []
      const reader = new FrameReader((t, p) => got.push([t, Buffer.from(p)]))
      const drained = new Promise<void>((r) => whenDrained(sock, r))
      peer.on('data', (c: Buffer) => reader.push(c))
      peer.resume()
      await drained
      sock.end()
      await new Promise((r) => peer.once('end', r))
      expect(got).toHaveLength(answers.length)
      expect(got.every(([t, p]) => t === F.STDOUT && p.equals(chunk))).toBe(true)
    } finally {
      sock.destroy()
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("output over a frame's limit", () => {
  /** What a reader with the default limit makes of `bytes` written to a socket: the stdout bytes, or its error. */
  async function through(write: (sock: import('node:net').Socket) => void): Promise<{ out: number; error: string | null }> {
    const dir = mkdtempSync(join(tmpdir(), 'rch-mux-'))
    const path = join(dir, 'big.sock')
    let out = 0
    let error: string | null = null
    const reader = new FrameReader(
      (t, p) => void (t === F.STDOUT && (out += p.length)),
      (e) => (error = e.message),
      MAX_FRAME,
      isStreamFrame
    )
    const done = new Promise<void>((res) => {
      const server = createServer((s) => {
        s.on('data', (c: Buffer) => reader.push(c))
        s.on('end', () => (server.close(), res()))
      })
      server.listen(path, () => {
        const sock = connect(path, () => {
          write(sock)
          sock.end()
        })
      })
    })
    await done
    rmSync(dir, { recursive: true, force: true })
    return { out, error }
  }

  it('one write of more than MAX_FRAME bytes goes as several frames, all of it read', async () => {
    const big = Buffer.alloc(MAX_FRAME + 1000, 0x61)
    expect(await through((sock) => writeFrame(sock, F.STDOUT, big))).toEqual({ out: big.length, error: null })
  })

  it('control: as one frame the reader refuses it', async () => {
    const big = Buffer.alloc(MAX_FRAME + 1000, 0x61)
    const r = await through((sock) => sock.write(frame(F.STDOUT, big)))
    expect(r.error).toMatch(/over the limit/)
  })
})

describe("runViaAgent facing an agent's unusable answer", () => {
  it('fails the step as a lost agent, naming it, never with a throw in the socket handler; a good answer passes (control)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-mux-'))
    const path = join(dir, 'agent.sock')
    let answer: Buffer = Buffer.from([F.EXIT, 0x7f, 0xff, 0xff, 0xff])
    const server = createServer((sock) => sock.once('data', () => sock.end(answer)))
    await new Promise<void>((r) => server.listen(path, r))
    const sink = () => ({ write: () => true, once: () => undefined })
    const step = () => runViaAgent(path, { raw: '{}', env: {}, cwd: '/' }, { stdout: sink(), stderr: sink() }, new AbortController().signal)
    try {
      const failed = step()
      await expect(failed).rejects.toBeInstanceOf(TransportError)
      await expect(failed).rejects.toThrow(
        /lost the job's agent during the step: its answer was unusable \(a frame of 2147483647 bytes is over the limit/
      )
      answer = frame(F.EXIT, JSON.stringify({ code: 0, signal: null }))
      await expect(step()).resolves.toEqual({ code: 0, lost: false })
    } finally {
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
