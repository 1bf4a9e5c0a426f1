// A step run through the job's agent, end to end over the agent's socket (the SSH side is a stand-in):
// the hook learns whether the step failed for the agent's connection (then, and only then, it asks
// what became of the machine) or exited 75 itself; and a connection that drops mid-step lets the step
// fail in its own words, within the wind-down, where a cancel still reaches it.
import { bootMs } from '../../src/mono-clock'
import { existsSync, statSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

jest.mock('../../src/remote/ssh', () => jest.requireActual('./_ssh-stand-in'))
import { dropConnection, runCommandsWith } from './_ssh-stand-in'
import { LocalRemote } from './local-remote'
import { record } from '../../src/remote/answer'
import { F, FrameReader, MAX_HEADER } from '../../src/remote/mux-frames'
import type { RunHandler, RunIo } from '../../src/remote/agent'
import { report } from '../../src/execute'
import { Cancelled } from '../../src/errors'
import { standInAgent } from './_stand-in-agent'
import { runViaAgent } from '../../src/agent-client'
import { outputTo } from '../../src/job'

afterAll(cleanupTempDirs)

let agentEndedAt = 0
const sink = () => ({ write: () => true, once: () => undefined })

async function withAgent(onRun: RunHandler, use: (socket: string) => Promise<void>): Promise<number> {
  const { socketPath, agent } = await standInAgent(onRun)
  const ended = agent.then((code) => ((agentEndedAt = Date.now()), code))
  await use(socketPath)
  return ended
}

const step = (socket: string, signal = new AbortController().signal) =>
  runViaAgent(socket, { raw: '{}', env: {}, cwd: '/' }, { stdout: sink(), stderr: sink() }, signal)

test('a step input over the request line limit (a GITHUB_ENV the job grew) is left to the hook, never a lost agent; control: one just within goes to the agent', async () => {
  const taken: number[] = []
  const sized = (s: string, n: number) =>
    runViaAgent(s, { raw: `{"v":"${'x'.repeat(n)}"}`, env: {}, cwd: '/' }, { stdout: sink(), stderr: sink() }, new AbortController().signal)
  await withAgent(
    async (req) => (taken.push(String(req.raw).length), { code: 0 }),
    async (s) => {
      // null: the caller (main.ts) runs the step in its own process, as with no agent.
      expect(await sized(s, MAX_HEADER + 1024)).toBeNull()
      expect(await sized(s, MAX_HEADER - 128 * 1024)).toEqual({ code: 0, lost: false })
    }
  )
  expect(taken).toEqual([MAX_HEADER - 128 * 1024 + 8])
})

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

test('a step whose hook went away is still stopping when the agent falls idle: the agent waits for the stop before it ends', async () => {
  let stopped = 0
  await withAgent(
    (_req, io) =>
      new Promise((res) =>
        // The stop of a step's processes: a grace, then KILL (1 s here, over the agent's idle 300 ms).
        io.signal.addEventListener('abort', () => setTimeout(() => ((stopped = Date.now()), res({ code: 137 })), 1000))
      ),
    async (s) => {
      await new Promise<void>((res) => {
        const c = createConnection(s, () => {
          c.write(`${JSON.stringify({ op: 'run', raw: '{}', env: {}, cwd: '/' })}\n`)
          // The hook is killed (SIGKILL: no cancel frame) while its step runs.
          setTimeout(() => (c.destroy(), res()), 100)
        })
      })
    }
  )
  expect(stopped).toBeGreaterThan(0)
  expect(agentEndedAt).toBeGreaterThanOrEqual(stopped)
})

test('control: with no step under way the agent ends once idle', async () => {
  const began = Date.now()
  await withAgent(
    async () => ({ code: 0 }),
    async (s) => expect(await step(s)).toEqual({ code: 0, lost: false })
  )
  expect(agentEndedAt - began).toBeLessThan(5000)
})

test('lines a hook never sends (null, a list, a number, a string, an op not a string) are dropped; the agent lives on and serves the next step (control)', async () => {
  await withAgent(
    async () => ({ code: 0 }),
    async (s) => {
      for (const line of ['null', '[]', '7', '"run"', '{"op":5}', '{"op":"socket","path":5}']) {
        await new Promise<void>((res, rej) => {
          const c = createConnection(s, () => c.write(`${line}\n`))
          c.on('error', rej)
          c.on('close', () => res())
          c.resume()
        })
        expect([line, await step(s)]).toEqual([line, { code: 0, lost: false }])
      }
    }
  )
}, 10_000)

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

describe("a pool member's lease, as the agent renews it", () => {
  /** An agent renewing a lease every 300 ms with `renew` (a shell body printing one record), and what a step printed. */
  async function leased(
    renew: string,
    /** What the agent logs once the first renewal's answer is taken (none: the renewal has started), or a time to let pass. */
    after: RegExp | null | number,
    /** renewedAt: when the hook that starts the agent last renewed (bootMs); absent, as for an agent a step restarts. */
    more: { ttlMs?: number; renewedAt?: number; step?: RunHandler } = {}
  ): Promise<{ exit: { code: number; lost: boolean }; ran: boolean; said: string; noted: string }> {
    const dir = tempDir()
    runCommandsWith(new LocalRemote(dir))
    let ran = false
    let said = ''
    let noted = ''
    const { socketPath, agent, logged } = await standInAgent(
      async (req, io) => {
        ran = true
        return more.step ? more.step(req, io) : { code: 0 }
      },
      { command: `: > ${dir}/renewing; ${renew}`, everyMs: 300, ttlMs: more.ttlMs, renewedAt: more.renewedAt, worker: null }
    )
    if (typeof after === 'number') await new Promise((r) => setTimeout(r, after))
    else if (after) expect(await waitUntil(() => logged.some((m) => after.test(m)), 5000, 5)).toBe(true)
    else expect(await waitUntil(() => existsSync(`${dir}/renewing`), 5000, 5)).toBe(true)
    // Asked without naming the hook's pipes, the agent sends the step's output in frames.
    const exit = await new Promise<{ code: number; lost: boolean }>((res, rej) => {
      const c = createConnection(socketPath, () => c.write(`${JSON.stringify({ op: 'run', raw: '{}', env: {}, cwd: '/' })}\n`))
      const reader = new FrameReader(
        (type, payload) => {
          if (type === F.STDOUT) said += payload.toString()
          if (type === F.STDERR) noted += payload.toString()
          if (type === F.EXIT) {
            const st = JSON.parse(payload.toString()) as { code: number; lost?: boolean }
            res({ code: st.code, lost: st.lost === true })
          }
        },
        () => rej(new Error('bad frame'))
      )
      c.on('data', (d: Buffer) => reader.push(d))
      c.on('error', rej)
    })
    // The agent of a lease lives until shut down.
    await new Promise<void>((res) => {
      const c = createConnection(socketPath, () => c.end('{"op":"shutdown"}\n'))
      c.on('close', () => res())
    })
    await agent
    runCommandsWith(null)
    return { exit, ran, said, noted }
  }

  /** How a step's command ends once its signal aborts: a cancel, reported as execute.ts reports one. */
  const endsStopped = (io: RunIo): number => report(Cancelled.by(io.signal), io)

  // An agent a step restarts (the last one gone, say after a partition) does not know when its
  // lease was last renewed: it may have lapsed, and another job hold the machine. A step sent at
  // once waits for the first renewal's answer.
  test('a step sent before the first renewal answers waits for it: refused then, the step is not run (control: renewed, it runs)', async () => {
    const r = await leased(`sleep 0.5; ${record('lost')}`, null)
    expect(r.ran).toBe(false)
    expect(r.exit.code).toBe(75)
    expect(r.said).toMatch(
      /^::error::this machine's lease was not renewed \("lost"\): another job may hold the machine now; the step was not run\n$/
    )
    const c = await leased(`sleep 0.5; ${record('renewed')}`, null)
    expect(c).toEqual({ exit: { code: 0, lost: false }, ran: true, said: '', noted: '' })
  }, 20_000)

  // The new holder (root on the member) can make a restarted agent's renewal fail rather than be
  // refused (kill its session, hold the lease lock): a failed first try opens nothing then; the
  // lapse a ttl on does, refusing.
  test('an agent a step restarted whose first renewal fails: the step waits, and is refused at the lapse (control: a fresh agent runs it, warned)', async () => {
    const r = await leased('exit 1', null, { ttlMs: 1500 })
    expect(r.ran).toBe(false)
    expect(r.exit.code).toBe(75)
    expect(r.said).toMatch(
      /^::error::this machine's lease lapsed: not renewed for 2 s; another job may hold the machine now; the step was not run\n$/
    )
    const c = await leased('exit 1', /renewing this machine's lease failed/, { ttlMs: 60_000, renewedAt: bootMs() })
    expect({ ran: c.ran, code: c.exit.code }).toEqual({ ran: true, code: 0 })
    expect(c.said).toMatch(/^::warning::renewing this machine's lease failed at /)
  }, 20_000)

  test('renewed: the step runs, and nothing is said of the lease (control)', async () => {
    const r = await leased(record('renewed'), null)
    expect(r).toEqual({ exit: { code: 0, lost: false }, ran: true, said: '', noted: '' })
  })

  test('refused ("lost": another job may hold the machine): the step is not run, and fails saying so', async () => {
    const r = await leased(record('lost'), /was not renewed/)
    expect(r.ran).toBe(false)
    expect(r.exit.code).toBe(75)
    expect(r.said).toMatch(
      /^::error::this machine's lease was not renewed \("lost"\): another job may hold the machine now; the step was not run\n$/
    )
  })

  test('a renewal that fails: the step runs, with a warning naming the failure', async () => {
    const r = await leased('echo "no space left on device" >&2; exit 1', /renewing this machine's lease failed/)
    expect(r.ran).toBe(true)
    expect(r.exit.code).toBe(0)
    expect(r.said).toMatch(
      /^::warning::renewing this machine's lease failed at .*no space left on device.*; the lease lapses if this goes on\n$/
    )
  })

  test('a lease that lapses while a step runs (renewals failing for the whole ttl): the step is stopped and fails saying so', async () => {
    const r = await leased('exit 1', 100, {
      ttlMs: 1500,
      renewedAt: bootMs(),
      // A step that runs until it is stopped, and ends as the hook's commands do: through report().
      step: (_req, io) => new Promise((res) => io.signal.addEventListener('abort', () => res({ code: endsStopped(io) })))
    })
    expect(r.ran).toBe(true)
    expect(r.exit.code).toBe(75)
    // One error line, said by the step's command itself (report()), and no cancel note: the step was
    // not cancelled, it failed; and no "what became of the machine" lookup (lost: false).
    expect(r.said).toMatch(
      /\n::error::this machine's lease lapsed: not renewed for 2 s; another job may hold the machine now; the step was stopped\n$/
    )
    expect(r.said.match(/::error::/g)).toHaveLength(1)
    expect(r.noted).toBe('')
    expect(r.exit.lost).toBe(false)
  }, 20_000)

  test("a step stopped mid-line by a lapsed lease: the agent's error line starts a line of its own (the runner reads it)", async () => {
    const r = await leased('exit 1', 100, {
      ttlMs: 1500,
      renewedAt: bootMs(),
      step: (_req, io) =>
        new Promise((res) => {
          // A progress bar: output without a newline, written as a step's output is.
          outputTo(io.stdout, io.stderr).onStdout(Buffer.from('tick'))
          io.signal.addEventListener('abort', () => res({ code: endsStopped(io) }))
        })
    })
    expect(r.exit.code).toBe(75)
    expect(r.said).toMatch(/\ntick\n::error::this machine's lease lapsed: .*; the step was stopped\n$/)
  }, 20_000)
})
