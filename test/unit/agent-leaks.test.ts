// What the long-lived agent keeps after a request whose hook went away: nothing. A remote command
// the agent started for a hook already gone (killed while its channel opened) is closed at once:
// nothing else would ever end its stdin or close its channel, which would then stay open, with its
// command waiting on the VM, until the job ends.
import { join } from 'node:path'
import { connect } from 'node:net'
import { PassThrough } from 'node:stream'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

/** Each channel open waits until the test lets it complete. */
const opening: Array<() => void> = []
const channels: Array<{ closed: boolean }> = []
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async () => ({
      openSocket: () => Promise.reject(new Error('no sockets here')),
      openExec: () =>
        new Promise((resolve) => {
          const rec = { closed: false }
          channels.push(rec)
          const stdout = new PassThrough()
          let exited!: (s: { code: number | null; signal: null }) => void
          const done = new Promise((r) => (exited = r))
          // As an SSH channel of a command that reads its stdin: it ends only when closed from this side.
          stdout.on('close', () => ((rec.closed = true), exited({ code: null, signal: null })))
          opening.push(() => resolve({ stdin: new PassThrough(), stdout, stderr: new PassThrough(), done }))
        }),
      close: () => undefined
    })
  }
}))
import { runAgent } from '../../src/remote/agent'

afterAll(cleanupTempDirs)

test('a remote command opened for a hook already gone is closed at once, request after request', async () => {
  const socketPath = join(tempDir(), 'agent.sock')
  let agent!: Promise<number>
  await new Promise<void>((res) => {
    agent = runAgent(
      {
        socketPath,
        connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
        connectTimeoutMs: 1000,
        idleMs: 1000
      },
      (m) => void (m.startsWith('agent ready') && res())
    )
  })
  for (let i = 0; i < 5; i++) {
    const c = connect(socketPath)
    c.on('error', () => undefined)
    c.write(JSON.stringify({ op: 'exec', cmd: 'cat > /tmp/x' }) + '\n')
    expect(await waitUntil(() => opening.length > i, 5000, 5)).toBe(true)
    // The hook is killed before the agent has the channel open.
    await new Promise<void>((res) => c.on('close', () => res()).destroy())
    await new Promise((r) => setTimeout(r, 50))
    opening[i]()
  }
  expect(await waitUntil(() => channels.every((c) => c.closed), 2000, 10)).toBe(true)
  expect(channels).toHaveLength(5)
  await new Promise<void>((res) =>
    connect(socketPath)
      .end('{"op":"shutdown"}\n')
      .on('close', () => res())
  )
  expect(await agent).toBe(0)
})
