// A hostile engine (the job is root on the VM and can put anything behind the docker socket): a
// reply that never comes, a reply cut off, JSON that is not JSON, ids that are not ids. Each ends
// the call with the hook's own error kind, never a hang or a bare exception.
import { createServer, connect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { Engine, idFrom } from '../../src/docker/engine'
import { HookError, TransportError } from '../../src/errors'
import { UnexpectedAnswer } from '../../src/remote/answer'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

let server: Server
let sockPath: string
let respond: (sock: Socket) => void
/** Requests the fake engine has read in full (the positive control that each attack was sent). */
let requests = 0
const open = new Set<Socket>()

beforeAll(async () => {
  sockPath = join(tempDir(), 'docker.sock')
  server = createServer((sock) => {
    open.add(sock)
    sock.on('close', () => open.delete(sock))
    let got = ''
    sock.on('data', (c) => {
      got += c.toString('latin1')
      if (got.includes('\r\n\r\n')) {
        got = ''
        requests++
        respond(sock)
      }
    })
    sock.on('error', () => undefined)
  })
  await new Promise<void>((r) => server.listen(sockPath, r))
})
afterAll(() => {
  for (const s of open) s.destroy()
  return new Promise<void>((r) => server.close(() => r()))
})
beforeEach(() => (requests = 0))

const remote: Remote = {
  openExec: () => Promise.reject(new Error('no exec')),
  openSocket: async () => connect(sockPath),
  close: () => undefined
}

const json =
  (body: string, status = 200) =>
  (sock: Socket) =>
    sock.end(`HTTP/1.1 ${status} X\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
const later = (ms: number, then: (s: Socket) => void) => (sock: Socket) => void setTimeout(() => then(sock), ms)

describe('a reply that does not come', () => {
  test('a prompt reply is read (positive control)', async () => {
    respond = json('{"Id":"abc"}')
    await expect(new Engine(remote, '/x', 300).call('GET', '/containers/x/json')).resolves.toEqual({ status: 200, data: { Id: 'abc' } })
  })

  test('no answer at all fails the call as a timeout once its limit has passed', async () => {
    respond = () => undefined
    const t = Date.now()
    const err = await new Engine(remote, '/x', 300).call('GET', '/containers/json', undefined, 'list containers').catch((e: unknown) => e)
    expect(requests).toBe(1)
    expect(err).toBeInstanceOf(TransportError)
    expect((err as TransportError).kind).toBe('timeout')
    expect((err as Error).message).toBe('docker API list containers: no answer within 0.3 s')
    expect(Date.now() - t).toBeLessThan(5000)
  })

  test('headers then a body that stops half way fails the same way', async () => {
    respond = (sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{"Id":')
    const err = await new Engine(remote, '/x', 300).call('GET', '/networks', undefined, 'list networks').catch((e: unknown) => e)
    expect(requests).toBe(1)
    expect(err).toBeInstanceOf(TransportError)
    expect((err as TransportError).kind).toBe('timeout')
  })

  test('a call that waits on the job (timeoutMs: null) may take longer than the limit', async () => {
    respond = later(600, json('{"StatusCode":3}'))
    await expect(new Engine(remote, '/x', 200).call('POST', '/containers/x/wait', undefined, 'wait', { timeoutMs: null })).resolves.toEqual(
      {
        status: 200,
        data: { StatusCode: 3 }
      }
    )
  })

  test('the default limit is there without being asked for (the engine of every handler)', async () => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] })
    try {
      respond = () => undefined
      const p = new Engine(remote, '/x').call('GET', '/volumes', undefined, 'list volumes').catch((e: unknown) => e)
      while (requests === 0) await new Promise((r) => setImmediate(r))
      jest.advanceTimersByTime(120_000)
      const err = await p
      expect(err).toBeInstanceOf(TransportError)
      expect((err as Error).message).toMatch(/no answer within 120 s/)
    } finally {
      jest.useRealTimers()
    }
  })
})

describe('a reply that is not what docker sends', () => {
  test('JSON that does not parse is an unexpected answer naming the call, not a SyntaxError', async () => {
    respond = json('{"Id": "abc", ')
    const err = await new Engine(remote, '/x', 5000)
      .call('GET', '/containers/x/json', undefined, 'container inspect')
      .catch((e: unknown) => e)
    expect(requests).toBe(1)
    expect(err).toBeInstanceOf(UnexpectedAnswer)
    expect((err as Error).message).toBe('docker API container inspect: the reply is not valid JSON')
  })

  test('a connection cut in the middle of the body is a TransportError', async () => {
    respond = (sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{"Id":')
      setTimeout(() => sock.destroy(), 50)
    }
    const err = await new Engine(remote, '/x', 5000).call('GET', '/networks', undefined, 'list networks').catch((e: unknown) => e)
    expect(requests).toBe(1)
    expect(err).toBeInstanceOf(TransportError)
    expect((err as Error).message).toMatch(/^docker API list networks: /)
  })
})

describe('ids docker answers with', () => {
  test('a hex id passes (positive control)', () => {
    expect(idFrom({ Id: 'ab'.repeat(32) }, 'exec create')).toBe('ab'.repeat(32))
  })

  test.each([['../../containers/x'], ['abc?force=1'], ['a#b'], ['ab\0cd'.repeat(4)], [42], [null]])(
    'anything else (%p) is refused before it becomes a request path',
    (id) => {
      expect(() => idFrom({ Id: id }, 'exec create')).toThrow(UnexpectedAnswer)
      expect(() => idFrom({ Id: id }, 'exec create')).toThrow('docker exec create returned no valid id')
    }
  )

  test('no object at all is refused too', () => {
    expect(() => idFrom(null, 'container create')).toThrow(HookError)
    expect(() => idFrom('not json', 'container create')).toThrow(HookError)
  })
})
