// A step run through the job's agent, end to end over the agent's socket (the SSH side is a stand-in):
// the hook learns whether the step failed for the agent's connection (then, and only then, it asks
// what became of the machine) or exited 75 itself; and a connection that drops mid-step lets the step
// fail in its own words, within the wind-down, where a cancel still reaches it.
import { statSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'

jest.mock('../../src/remote/ssh', () => jest.requireActual('./_ssh-stand-in'))
import { dropConnection } from './_ssh-stand-in'
import { runAgent, type RunHandler } from '../../src/remote/agent'
import { runViaAgent } from '../../src/agent-client'

afterAll(cleanupTempDirs)

let agentEndedAt = 0
const sink = () => ({ write: () => true, once: () => undefined })

async function withAgent(onRun: RunHandler, use: (socket: string) => Promise<void>): Promise<number> {
  const socketPath = join(tempDir(), 'agent.sock')
  let agent!: Promise<number>
  const ready = new Promise<void>((res) => {
    const log = (m: string): void => void (m.startsWith('agent ready') && res())
    agent = runAgent(
      {
        socketPath,
        connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
        connectTimeoutMs: 1000,
        idleMs: 300
      },
      log,
      onRun
    )
  })
  await ready
  const ended = agent.then((code) => ((agentEndedAt = Date.now()), code))
  await use(socketPath)
  return ended
}

const step = (socket: string, signal = new AbortController().signal) =>
  runViaAgent(socket, { raw: '{}', env: {}, cwd: '/' }, { stdout: sink(), stderr: sink() }, signal)

test("a step that exited 75 itself is no lost connection; the agent's own transport failure is", async () => {
  await withAgent(
    async () => ({ code: 75 }),
    async (s) => expect(await step(s)).toEqual({ code: 75, lost: false })
  )
  await withAgent(
    async () => ({ code: 75, lost: true }),
    async (s) => expect(await step(s)).toEqual({ code: 75, lost: true })
  )
})

test('the connection dropping mid-step: the step ends in its own words, not as a lost agent', async () => {
  let runEndedAt = 0
  const code = await withAgent(
    (_req, io) =>
      new Promise((res) => {
        setTimeout(dropConnection, 20)
        // The step notices the dropped connection a moment later.
        setTimeout(() => ((runEndedAt = Date.now()), res({ code: 75, lost: true })), 300)
        io.signal.addEventListener('abort', () => res({ code: 130 }))
      }),
    async (s) => expect(await step(s)).toEqual({ code: 75, lost: true })
  )
  expect(code).toBe(3)
  // The agent (whose process then exits) waited for the step.
  expect(agentEndedAt).toBeGreaterThanOrEqual(runEndedAt)
})

test('a cancel during the wind-down still reaches the step', async () => {
  const c = new AbortController()
  await withAgent(
    (_req, io) =>
      new Promise((res) => {
        setTimeout(dropConnection, 20)
        setTimeout(() => c.abort('SIGINT'), 100)
        io.signal.addEventListener('abort', () => res({ code: 130 }))
      }),
    async (s) => expect(await step(s, c.signal)).toEqual({ code: 130, lost: false })
  )
})

test("the agent's socket is the runner user's alone (0600), even under a umask that leaves sockets open to all", async () => {
  const saved = process.umask(0)
  try {
    // positive control: under this umask a socket is made open to every local user
    const dir = tempDir()
    const plain = createServer()
    await new Promise<void>((res) => plain.listen(join(dir, 'plain.sock'), res))
    const open = statSync(join(dir, 'plain.sock')).mode & 0o777
    await new Promise((res) => plain.close(res))
    expect(open & 0o077).not.toBe(0)
    await withAgent(
      async () => ({ code: 0 }),
      async (s) => {
        expect(statSync(s).isSocket()).toBe(true)
        expect(statSync(s).mode & 0o777).toBe(0o600)
        expect(await step(s)).toEqual({ code: 0, lost: false }) // and it serves the runner user
      }
    )
  } finally {
    process.umask(saved)
  }
})
