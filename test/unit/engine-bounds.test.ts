// The Engine API client bounds what the remote engine can make it buffer: reply bodies and
// hijacked stream frames over the limit fail the call instead of growing memory.
import { createServer, connect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { Engine, EngineError, MAX_BODY, MAX_ERROR_TEXT, MAX_LISTING, MAX_REPLY, MAX_STREAM_FRAME } from '../../src/docker/engine'
import { outputTo } from '../../src/job'
import type { Sink } from '../../src/context'
import type { Remote } from '../../src/remote/remote'
import { Cancelled, formatError } from '../../src/errors'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

let server: Server
let sockPath: string
let respond: (sock: Socket) => void

beforeAll(async () => {
  sockPath = join(tempDir(), 'docker.sock')
  server = createServer((sock) => {
    let got = ''
    sock.on('data', (c) => {
      got += c.toString('latin1')
      if (got.includes('\r\n\r\n')) {
        got = ''
        respond(sock)
      }
    })
    sock.on('error', () => undefined)
  })
  await new Promise<void>((r) => server.listen(sockPath, r))
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))

const remote: Remote = {
  openExec: () => Promise.reject(new Error('no exec')),
  openSocket: async () => connect(sockPath),
  close: () => undefined
}

/** Streams `total` bytes of JSON-ish body with a Content-Length, in 1 MiB writes. */
function bigBody(total: number) {
  return (sock: Socket): void => {
    sock.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${total}\r\n\r\n`)
    const chunk = Buffer.alloc(1024 * 1024, 0x61)
    let sent = 0
    const pump = (): void => {
      while (sent < total && !sock.destroyed) {
        const n = Math.min(chunk.length, total - sent)
        sent += n
        if (!sock.write(chunk.subarray(0, n))) return void sock.once('drain', pump)
      }
    }
    pump()
  }
}

describe('Engine.call reply bodies', () => {
  test('a body within the limit is read (positive control)', async () => {
    respond = bigBody(1024 * 1024)
    const r = await new Engine(remote, '/x').call<string>('GET', '/info')
    expect(r.data.length).toBe(1024 * 1024)
  })

  test('a body over the limit fails the call naming the limit', async () => {
    respond = bigBody(MAX_REPLY + 1)
    await expect(new Engine(remote, '/x').call('GET', '/info', undefined, 'info')).rejects.toThrow(
      `docker API info: reply body over the limit of ${MAX_REPLY} bytes`
    )
    // A listing may be larger, to its own limit.
    respond = bigBody(MAX_LISTING)
    expect(
      (await new Engine(remote, '/x').call<string>('GET', '/containers/json', undefined, 'list', { maxBytes: MAX_LISTING })).data
    ).toHaveLength(MAX_LISTING)
    respond = bigBody(MAX_LISTING + 1)
    await expect(new Engine(remote, '/x').call('GET', '/containers/json', undefined, 'list', { maxBytes: MAX_LISTING })).rejects.toThrow(
      `docker API list: reply body over the limit of ${MAX_LISTING} bytes`
    )
    // An answer nobody reads is read to its end, up to the limit of any body.
    respond = bigBody(MAX_BODY + 4 * 1024 * 1024)
    await expect(new Engine(remote, '/x').call('DELETE', '/containers/x', undefined, 'remove', { reply: 'ignore' })).rejects.toThrow(
      `docker API remove: reply body over the limit of ${MAX_BODY} bytes`
    )
  })
})

// The VM's docker is the job's (root there): JSON it sends can take twenty times its size once
// parsed (16 MiB of `[{},{},…]` is 357 MiB of heap), and removals run sixteen at a time.
describe('answers the hook does not read, and error texts', () => {
  const json = (status: number, body: string) => (sock: Socket) =>
    sock.end(`HTTP/1.1 ${status} X\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  const objects = `[${Array<string>(300_000).fill('{}').join(',')}]`

  test('a removal answered with 900 KB of JSON objects is not parsed (control: a call that reads it gets them all)', async () => {
    respond = json(200, objects)
    expect(await new Engine(remote, '/x').call('DELETE', '/containers/x', undefined, 'remove', { reply: 'ignore' })).toEqual({
      status: 200,
      data: null
    })
    expect((await new Engine(remote, '/x').call<unknown[]>('GET', '/containers/x/json', undefined, 'inspect')).data).toHaveLength(300_000)
  })

  test('an error of 15 MiB of spaces (to an ignored call) fails at once, with its text cut', async () => {
    respond = json(500, `{"message":"x${' '.repeat(15 * 1024 * 1024)}y"}`)
    const t = Date.now()
    const err = (await new Engine(remote, '/x')
      .call('DELETE', '/containers/x', undefined, 'remove', { reply: 'ignore' })
      .catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(EngineError)
    expect(err.message.startsWith('docker remove: {"message":"x')).toBe(true)
    expect(formatError(err).length).toBeLessThanOrEqual(MAX_ERROR_TEXT + 200)
    expect(Date.now() - t).toBeLessThan(5000)
  })

  test("an error whose message is nested 200,000 deep is the engine's error, its text cut (control: a string message is taken)", async () => {
    respond = json(409, `{"message":${'['.repeat(200_000)}${']'.repeat(200_000)}}`)
    const err = (await new Engine(remote, '/x').call('POST', '/containers/x/start', undefined, 'start').catch((e: unknown) => e)) as Error
    // Without white space to cut at, the cut text goes whole (a value the runner masks shows only whole).
    expect([err instanceof EngineError, err.message]).toEqual([true, 'docker start:  … (400012 characters not shown)'])
    respond = json(409, '{"message":"already started"}')
    await expect(new Engine(remote, '/x').call('POST', '/containers/x/start', undefined, 'start')).rejects.toThrow(
      'docker start: already started'
    )
  })
})

describe('Engine.call with a signal', () => {
  // The VM's docker (the job is root there) can hold an answer back for the call's whole bound
  // (2 min): a cancel must not wait for it.
  test('an abort gives up a call the engine never answers, at once, as Cancelled (control: without one it is still waiting)', async () => {
    let asked = 0
    respond = () => void asked++
    const c = new AbortController()
    const waiting = new Engine(remote, '/x').call('GET', '/exec/1/json', undefined, 'exec inspect', { signal: c.signal })
    const control = new Engine(remote, '/x').call('GET', '/exec/1/json', undefined, 'exec inspect', { timeoutMs: 1500 })
    control.catch(() => undefined)
    // Both requests are at the engine, unanswered.
    expect(await waitUntil(() => asked === 2, 5000, 5)).toBe(true)
    const t0 = Date.now()
    c.abort('SIGINT')
    await expect(waiting).rejects.toThrow(new Cancelled('SIGINT'))
    expect(Date.now() - t0).toBeLessThan(1000)
    await expect(control).rejects.toThrow('docker API exec inspect: no answer within 1.5 s')
  })

  test('a signal aborted before the call fails it without an answer; a call that is answered is not affected (positive control)', async () => {
    respond = (sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
    await expect(
      new Engine(remote, '/x').call('GET', '/info', undefined, 'info', { signal: AbortSignal.abort('SIGTERM') })
    ).rejects.toThrow(new Cancelled('SIGTERM'))
    await expect(
      new Engine(remote, '/x').call('GET', '/info', undefined, 'info', { signal: new AbortController().signal })
    ).resolves.toEqual({
      status: 200,
      data: {}
    })
  })
})

describe('a socket the VM never opens (an SSH channel open left unanswered)', () => {
  // Node's request, destroyed before its socket has come, emits nothing: the bound and the abort
  // must end the call by themselves.
  let opens = 0
  const opening: Remote = { ...remote, openSocket: () => (opens++, new Promise<never>(() => undefined)) }
  /** Cancels once the call has asked for its socket: a cancel during the call, not before it. */
  const abortOnceOpening = async (c: AbortController, why: string): Promise<void> => {
    const before = opens
    await waitUntil(() => opens > before, 5000, 2)
    c.abort(why)
  }

  test('a call ends at its bound', async () => {
    await expect(new Engine(opening, '/x').call('GET', '/info', undefined, 'info', { timeoutMs: 300 })).rejects.toThrow(
      'docker API info: no answer within 0.3 s'
    )
  })

  test('a call ends on its signal', async () => {
    const c = new AbortController()
    const waiting = new Engine(opening, '/x').call('GET', '/exec/1/json', undefined, 'exec inspect', { signal: c.signal })
    await abortOnceOpening(c, 'SIGTERM')
    await expect(waiting).rejects.toThrow(new Cancelled('SIGTERM'))
  })

  test('a hijacked stream ends at the call bound', async () => {
    await expect(new Engine(opening, '/x', 300).hijack('/exec/1/start', {}, outputTo(process.stdout, process.stderr))).rejects.toThrow(
      'docker API /exec/1/start: no answer within 0.3 s'
    )
  })

  test('a hijacked stream ends on its signal', async () => {
    const c = new AbortController()
    const waiting = new Engine(opening, '/x').hijack('/exec/1/start', {}, outputTo(process.stdout, process.stderr), c.signal)
    await abortOnceOpening(c, 'SIGINT')
    await expect(waiting).rejects.toThrow(new Cancelled('SIGINT'))
  })

  test('a signal aborted before the call opens no channel at all', async () => {
    let opened = 0
    const counting: Remote = { ...opening, openSocket: () => (opened++, new Promise<never>(() => undefined)) }
    const e = new Engine(counting, '/x')
    await expect(e.call('GET', '/info', undefined, 'info', { signal: AbortSignal.abort('SIGINT') })).rejects.toThrow(
      new Cancelled('SIGINT')
    )
    await expect(e.hijack('/exec/1/start', {}, outputTo(process.stdout, process.stderr), AbortSignal.abort('SIGINT'))).rejects.toThrow(
      new Cancelled('SIGINT')
    )
    expect(opened).toBe(0)
  })

  test('positive control: the same socket, opened late, still serves a call within its bound', async () => {
    respond = (sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
    const late: Remote = { ...remote, openSocket: () => new Promise((r) => setTimeout(() => r(connect(sockPath)), 100)) }
    await expect(new Engine(late, '/x').call('GET', '/info', undefined, 'info', { timeoutMs: 2000 })).resolves.toEqual({
      status: 200,
      data: {}
    })
  })
})

describe('hijacked stream frames', () => {
  const hijack =
    (frames: Buffer) =>
    (sock: Socket): void => {
      sock.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      sock.end(frames)
    }
  const header = (type: number, size: number): Buffer => {
    const h = Buffer.alloc(8)
    h[0] = type
    h.writeUInt32BE(size, 4)
    return h
  }

  test('normal frames are delivered (positive control)', async () => {
    respond = hijack(Buffer.concat([header(1, 3), Buffer.from('out'), header(2, 3), Buffer.from('err')]))
    const got: string[] = []
    const { ended } = await new Engine(remote, '/x').hijack(
      '/exec/1/start',
      {},
      { onStdout: (c) => void got.push(`1:${c.toString()}`), onStderr: (c) => void got.push(`2:${c.toString()}`) }
    )
    await ended
    expect(got).toEqual(['1:out', '2:err'])
  })

  test('an engine that accepts and never answers the upgrade fails the call at its bound (control: the same bound with an answer streams)', async () => {
    const out = { onStdout: () => undefined, onStderr: () => undefined }
    respond = () => undefined
    const t = Date.now()
    await expect(new Engine(remote, '/x', 200).hijack('/exec/1/start', {}, out)).rejects.toThrow(
      'docker API /exec/1/start: no answer within 0.2 s'
    )
    expect(Date.now() - t).toBeLessThan(5000)
    // The bound is on the answer, not on the stream: a stream that outlives it is not cut.
    respond = (sock) => {
      sock.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      setTimeout(() => sock.end(Buffer.concat([header(1, 3), Buffer.from('out')])), 400)
    }
    const got: string[] = []
    const { ended } = await new Engine(remote, '/x', 200).hijack('/exec/1/start', {}, { ...out, onStdout: (c) => void got.push(String(c)) })
    await expect(ended).resolves.toBeUndefined()
    expect(got).toEqual(['out'])
  })

  test('a frame header announcing more than the limit fails the stream at once', async () => {
    respond = hijack(Buffer.concat([header(1, 3), Buffer.from('out'), header(1, MAX_STREAM_FRAME + 1), Buffer.from('x')]))
    const got: string[] = []
    const { ended } = await new Engine(remote, '/x').hijack(
      '/exec/1/start',
      {},
      { onStdout: (c) => void got.push(String(c)), onStderr: () => undefined }
    )
    await expect(ended).rejects.toThrow(
      `output stream broke: a frame of ${MAX_STREAM_FRAME + 1} bytes is over the limit of ${MAX_STREAM_FRAME}`
    )
    expect(got).toEqual(['out'])
  })

  test('a 4 GiB frame header does not wait for (or buffer) its payload', async () => {
    respond = hijack(header(1, 0xffffffff))
    const { ended } = await new Engine(remote, '/x').hijack('/exec/1/start', {}, { onStdout: () => undefined, onStderr: () => undefined })
    await expect(ended).rejects.toThrow(/over the limit/)
  })
})

describe('hijacked stream output', () => {
  const header = (type: number, size: number): Buffer => {
    const h = Buffer.alloc(8)
    h[0] = type
    h.writeUInt32BE(size, 4)
    return h
  }

  test('is handed on as it arrives, not once its frame is whole', async () => {
    let sendRest!: () => void
    respond = (sock) => {
      sock.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      const payload = Buffer.alloc(100_000, 0x61)
      sock.write(Buffer.concat([header(1, payload.length), payload.subarray(0, 1000)]))
      sendRest = () => sock.end(payload.subarray(1000))
    }
    const got: number[] = []
    let first!: () => void
    const firstArrived = new Promise<void>((r) => (first = r))
    const { ended } = await new Engine(remote, '/x').hijack(
      '/exec/1/start',
      {},
      {
        onStdout: (c) => {
          got.push(c.length)
          first()
        },
        onStderr: () => undefined
      }
    )
    await firstArrived
    expect(got).toEqual([1000])
    sendRest()
    await ended
    expect(got.reduce((a, b) => a + b, 0)).toBe(100_000)
  })

  test('frames split anywhere arrive byte-exact and in order on their streams', async () => {
    const parts: Buffer[] = []
    const want = { out: [] as Buffer[], err: [] as Buffer[] }
    for (let i = 0; i < 40; i++) {
      const type = i % 3 === 0 ? 2 : 1
      const p = Buffer.alloc(1 + ((i * 7919) % 40_000), 0x30 + (i % 10))
      ;(type === 2 ? want.err : want.out).push(p)
      parts.push(header(type, p.length), p)
    }
    const wire = Buffer.concat(parts)
    respond = (sock) => {
      sock.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      let i = 0
      const next = (): void => {
        if (i >= wire.length) return void sock.end()
        const n = 1 + ((i * 31) % 5000)
        sock.write(wire.subarray(i, i + n))
        i += n
        setImmediate(next)
      }
      next()
    }
    const out: Buffer[] = []
    const err: Buffer[] = []
    const { ended } = await new Engine(remote, '/x').hijack(
      '/exec/1/start',
      {},
      { onStdout: (c) => void out.push(Buffer.from(c)), onStderr: (c) => void err.push(Buffer.from(c)) }
    )
    await ended
    expect(Buffer.concat(out).equals(Buffer.concat(want.out))).toBe(true)
    expect(Buffer.concat(err).equals(Buffer.concat(want.err))).toBe(true)
  })

  test('thousands of tiny frames in one go into pipes that stay full: one drain listener per pipe, every byte in order', async () => {
    // What the VM's engine sends is the job's to choose: here 4,000 one-byte frames, stdout and
    // stderr in turn, written at once, while the runner reads nothing.
    const parts: Buffer[] = []
    const want = { out: [] as Buffer[], err: [] as Buffer[] }
    for (let i = 0; i < 4000; i++) {
      const type = i % 2 ? 2 : 1
      const p = Buffer.from([0x41 + (i % 26)])
      ;(type === 2 ? want.err : want.out).push(p)
      parts.push(header(type, 1), p)
    }
    respond = (sock) => {
      sock.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n')
      sock.end(Buffer.concat(parts))
    }
    let stalled!: () => void
    const full = new Promise<void>((r) => (stalled = r))
    let refused = 0
    /** A pipe nobody reads yet (full after 16 bytes), counting its waiters. */
    const pipe = (): { pt: PassThrough; sink: Sink; mostWaiting: () => number } => {
      const pt = new PassThrough({ highWaterMark: 16 })
      let most = 0
      const sink: Sink = {
        write: (c) => {
          const ok = pt.write(c)
          if (!ok && ++refused === 100) stalled()
          return ok
        },
        once: (e, fn) => {
          pt.once(e, fn)
          most = Math.max(most, pt.listenerCount('drain'))
        }
      }
      return { pt, sink, mostWaiting: () => most }
    }
    const out = pipe()
    const err = pipe()
    const { ended } = await new Engine(remote, '/x').hijack('/exec/1/start', {}, outputTo(out.sink, err.sink))
    await full
    // Positive control: the pipes really were full for many writes before anything was read.
    expect(refused).toBeGreaterThanOrEqual(100)
    const got = { out: [] as Buffer[], err: [] as Buffer[] }
    out.pt.on('data', (c: Buffer) => got.out.push(c))
    err.pt.on('data', (c: Buffer) => got.err.push(c))
    await ended
    expect(Buffer.concat(got.out).equals(Buffer.concat(want.out))).toBe(true)
    expect(Buffer.concat(got.err).equals(Buffer.concat(want.err))).toBe(true)
    expect({ out: out.mostWaiting(), err: err.mostWaiting() }).toEqual({ out: 1, err: 1 })
  })
})
