// The agent hands its early push a guard that checks the pool lease on the clock that counts a
// suspend (bootMs): back from a suspend past the ttl, the guard finds the lease lost before any push,
// though the keeper's timers stood still. The member and the boot clock are stand-ins; the agent,
// its keeper and the guard are the real code.
import { createConnection } from 'node:net'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import type { ExecChannel } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

let boot = 1_000_000
jest.mock('../../src/mono-clock', () => ({ ...jest.requireActual('../../src/mono-clock'), bootMs: () => boot }))

let renewals = 0
// What reached the machine other than renewals: commands run and sockets opened.
const opened: string[] = []
let hangUp: (() => void) | null = null
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
      hangUp = () => onClose(new Error('test over'))
      return {
        // A framed exec is a renewal, answered `renewed` in the lease scripts' framing; any other prints `ran`.
        openExec: async (cmd: string): Promise<ExecChannel> => {
          const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(cmd)?.[1]
          if (nonce) renewals++
          else opened.push(`exec ${cmd}`)
          const stdout = new PassThrough()
          const stderr = new PassThrough()
          setImmediate(() => {
            stdout.end(nonce ? `RCH-BEGIN-${nonce}\0renewed\0RCH-END-${nonce}\0` : 'ran\n')
            stderr.end()
          })
          // Ended once its output is out, as a channel does (ended first, the renewal's answer was lost).
          const done = new Promise<{ code: number; signal: null }>((r) => stdout.once('end', () => r({ code: 0, signal: null })))
          return { stdin: new PassThrough(), stdout, stderr, done }
        },
        openSocket: async (path: string) => {
          opened.push(`socket ${path}`)
          const d = new PassThrough()
          setImmediate(() => d.end('pong'))
          return d
        },
        close: () => undefined
      }
    }
  }
}))
import { runAgent, type IdleWork, type RunHandler } from '../../src/remote/agent'
import { MuxRemote } from '../../src/remote/mux-client'
import { TransportError } from '../../src/errors'

afterAll(cleanupTempDirs)
beforeEach(() => {
  renewals = 0
  opened.length = 0
})

const TTL = 120_000

/** An agent keeping a pool lease (renewed at once), as a job's agent on a member runs. */
async function leasedAgent(onRun?: RunHandler): Promise<{ socketPath: string; log: string[]; end: () => Promise<number> }> {
  const socketPath = join(tempDir(), 'agent.sock')
  const log: string[] = []
  const ended = runAgent(
    {
      socketPath,
      connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
      connectTimeoutMs: 1000,
      idleMs: 60_000,
      keep: { command: 'renew', everyMs: TTL / 3, ttlMs: TTL, worker: null }
    },
    (m) => void log.push(m),
    onRun
  )
  await waitUntil(async () => renewals > 0 && (await MuxRemote.ping(socketPath, 100)), 10_000, 5)
  expect(renewals).toBe(1)
  return {
    socketPath,
    log,
    end: async () => {
      hangUp?.()
      return ended
    }
  }
}

/** The exit of a command through the agent, or the error that ended it. */
async function execThrough(socketPath: string, cmd: string): Promise<{ out: string; error: unknown }> {
  const ch = await new MuxRemote(socketPath).openExec(cmd)
  ch.stdin.end()
  let out = ''
  ch.stdout.on('data', (c: Buffer) => (out += c.toString()))
  ch.stderr.resume()
  return ch.done.then(
    () => ({ out, error: null }),
    (error: unknown) => ({ out, error })
  )
}

test("the early push's guard: true while the lease is renewed; after a suspend past the ttl, false with the lease lost and no renewal sent", async () => {
  let guard: (() => boolean) | null = null
  const idle: IdleWork = { enter: async () => undefined, leave: () => undefined, disarm: () => undefined, guard: (ok) => void (guard = ok) }
  const log: string[] = []
  const ended = runAgent(
    {
      socketPath: join(tempDir(), 'agent.sock'),
      connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
      connectTimeoutMs: 1000,
      idleMs: 60_000,
      keep: { command: 'renew', everyMs: TTL / 3, ttlMs: TTL, worker: null }
    },
    (m) => void log.push(m),
    undefined,
    idle
  )
  try {
    // The keeper's first renewal goes out at once.
    await waitUntil(() => renewals > 0, 5000, 5)
    await new Promise((r) => setTimeout(r, 20))
    expect(renewals).toBe(1)
    expect(guard).not.toBeNull()
    // Control: a minute later by the boot clock, the lease is the job's.
    boot += 60_000
    expect(guard!()).toBe(true)
    // The runner host was suspended: the boot clock moved on past the ttl, the timers did not.
    boot += TTL
    expect(guard!()).toBe(false)
    expect(log.join('\n')).toMatch(/this machine's lease lapsed: not renewed for 120 s/)
    expect(renewals).toBe(1)
  } finally {
    hangUp?.()
    await ended
  }
})

test("once the lease has lapsed (a suspend past the ttl), commands and sockets are refused as a lost lease and nothing reaches the machine; cleanup_job's still go", async () => {
  const agent = await leasedAgent()
  try {
    // Control: while the lease is the job's, both go through to the machine.
    expect(await execThrough(agent.socketPath, 'docker ps')).toEqual({ out: 'ran\n', error: null })
    const s = await new MuxRemote(agent.socketPath).openSocket('/var/run/docker.sock')
    s.destroy()
    expect(opened).toEqual(['exec docker ps', 'socket /var/run/docker.sock'])
    boot += TTL
    const refused = await execThrough(agent.socketPath, 'docker rm -f x')
    expect(refused.out).toBe('')
    expect(refused.error).toBeInstanceOf(TransportError)
    expect(refused.error).toMatchObject({ kind: 'lease' })
    expect((refused.error as Error).message).toMatch(
      /^this machine's lease lapsed: not renewed for 120 s; .*; the agent opens nothing more there but for cleanup$/
    )
    const sockErr = await new MuxRemote(agent.socketPath).openSocket('/var/run/docker.sock').then(
      () => null,
      (e: unknown) => e
    )
    expect(sockErr).toMatchObject({
      kind: 'lease',
      message: expect.stringMatching(/lease lapsed.*opens nothing more there but for cleanup$/)
    })
    expect(opened).toEqual(['exec docker ps', 'socket /var/run/docker.sock'])
    // cleanup_job's requests still go: they only remove what the job left and give the machine back.
    const cleanup = new MuxRemote(agent.socketPath, { cleanup: true })
    const ch = await cleanup.openExec('docker rm -f x')
    ch.stdin.end()
    ch.stderr.resume()
    ch.stdout.resume()
    expect(await ch.done).toEqual({ code: 0, signal: null })
    ;(await cleanup.openSocket('/var/run/docker.sock')).destroy()
    expect(opened).toEqual(['exec docker ps', 'socket /var/run/docker.sock', 'exec docker rm -f x', 'socket /var/run/docker.sock'])
    expect(renewals).toBe(1)
  } finally {
    await agent.end()
  }
})

test('any request back from a suspend past the ttl (a ping) finds the lease lost and stops the step under way, with the lease as the reason', async () => {
  let signal: AbortSignal | null = null
  const agent = await leasedAgent(
    (_req, io) =>
      new Promise((res) => {
        signal = io.signal
        io.signal.addEventListener('abort', () => res({ code: 75 }))
      })
  )
  const sock = createConnection(agent.socketPath)
  try {
    sock.on('error', () => undefined)
    sock.write(JSON.stringify({ op: 'run', raw: '{}', env: {}, cwd: '/' }) + '\n')
    await waitUntil(() => signal !== null, 5000, 5)
    expect(signal).not.toBeNull()
    // Control: a request within the ttl leaves the step running.
    boot += TTL - 1000
    expect(await MuxRemote.ping(agent.socketPath)).toBe(true)
    expect(signal!.aborted).toBe(false)
    boot += 2000
    expect(await MuxRemote.ping(agent.socketPath)).toBe(true)
    expect(signal!.aborted).toBe(true)
    expect(signal!.reason).toMatchObject({
      kind: 'lease',
      message: expect.stringMatching(/^this machine's lease lapsed: not renewed for 120 s; .*; the step was stopped$/)
    })
    expect(renewals).toBe(1)
  } finally {
    sock.destroy()
    await agent.end()
  }
})
