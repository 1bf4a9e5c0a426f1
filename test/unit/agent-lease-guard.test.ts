// The agent hands its early push a guard that checks the pool lease on the clock that counts a
// suspend (bootMs): back from a suspend past the ttl, the guard finds the lease lost before any push,
// though the keeper's timers stood still. The member and the boot clock are stand-ins; the agent,
// its keeper and the guard are the real code.
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import type { ExecChannel } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'

let boot = 1_000_000
jest.mock('../../src/mono-clock', () => ({ ...jest.requireActual('../../src/mono-clock'), bootMs: () => boot }))

let renewals = 0
let hangUp: (() => void) | null = null
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
      hangUp = () => onClose(new Error('test over'))
      return {
        // Every exec is a renewal, answered `renewed` in the lease scripts' framing.
        openExec: async (cmd: string): Promise<ExecChannel> => {
          renewals++
          const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(cmd)?.[1]
          const stdout = new PassThrough()
          setImmediate(() => stdout.end(`RCH-BEGIN-${nonce}\0renewed\0RCH-END-${nonce}\0`))
          return { stdin: new PassThrough(), stdout, stderr: new PassThrough(), done: Promise.resolve({ code: 0, signal: null }) }
        },
        openSocket: () => Promise.reject(new Error('no')),
        close: () => undefined
      }
    }
  }
}))
import { runAgent, type IdleWork } from '../../src/remote/agent'

afterAll(cleanupTempDirs)

const TTL = 120_000

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
    for (let i = 0; i < 100 && renewals === 0; i++) await new Promise((r) => setTimeout(r, 5))
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
