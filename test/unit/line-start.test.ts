// A step whose output ends without a newline must not take the hook's next line into its own: the
// runner reads stdout by lines, so a `::error::` or `::warning::` joined to "abc" would show as text
// and its annotation would be lost. Checked against a model of the runner's line reading.
import { join } from 'node:path'
import { createServer } from 'node:net'
import { spawn } from 'node:child_process'
import { closeSync, fstatSync, readSync } from 'node:fs'
import { makePipes } from '../helpers/pipes'
import { cleanupTempDirs, tempDir } from './_helpers'

jest.mock('../../src/remote/ssh', () => jest.requireActual('./_ssh-stand-in'))
import { dropConnection } from './_ssh-stand-in'
// The hook's pipes as the test says: none (the agent relays), or some the agent cannot open.
let pipesOfHook: object | undefined
jest.mock('../../src/remote/direct-output', () => ({
  ...jest.requireActual('../../src/remote/direct-output'),
  hookPipes: () => pipesOfHook
}))
import type { RunHandler } from '../../src/remote/agent'
import { standInAgent } from './_stand-in-agent'
import { runViaAgent } from '../../src/agent-client'
import { report } from '../../src/execute'
import { outputTo } from '../../src/job'
import { Cancelled, TransportError } from '../../src/errors'
import { lineOpen, ownLines } from '../../src/line-start'
import { F, frame } from '../../src/remote/mux-frames'

afterAll(cleanupTempDirs)

const recorder = () => {
  const chunks: string[] = []
  return { chunks, text: () => chunks.join(''), write: (c: Buffer | string) => (chunks.push(c.toString()), true), once: () => undefined }
}
/** The runner's view: the workflow commands it reads, one per line that starts with `::`. */
const commandsIn = (text: string): string[] => text.split('\n').filter((l) => /^::[a-z-]+( [^:]*)?::/.test(l))

const noSignal = new AbortController().signal

describe("the hook's own lines after a step's output", () => {
  test('start a line of their own when the step left one open', () => {
    const [stdout, stderr] = [recorder(), recorder()]
    const out = outputTo(stdout, stderr)
    out.onStdout(Buffer.from('no newline at the end'))
    out.onStderr(Buffer.from('nor here'))
    report(new TransportError('lost the connection', 'lost'), { signal: noSignal, stdout, stderr })
    expect(stdout.text()).toBe('no newline at the end\n::error::lost the connection\n')
    expect(commandsIn(stdout.text())).toEqual(['::error::lost the connection'])
    const ac = new AbortController()
    ac.abort('SIGINT')
    report(new Cancelled('SIGINT'), { signal: ac.signal, stdout, stderr })
    expect(stderr.text()).toMatch(/^nor here\n\[remote-hooks\] /)
  })

  test('control: after a whole line no empty line is added', () => {
    const [stdout, stderr] = [recorder(), recorder()]
    outputTo(stdout, stderr).onStdout(Buffer.from('one\ntwo\n'))
    report(new TransportError('lost the connection', 'lost'), { signal: noSignal, stdout, stderr })
    expect(stdout.text()).toBe('one\ntwo\n::error::lost the connection\n')
  })

  test('the last chunk decides: an open line closed by a later chunk is closed', () => {
    const s = recorder()
    const out = outputTo(s, recorder())
    out.onStdout(Buffer.from('abc'))
    expect(lineOpen(s)).toBe(true)
    out.onStdout(Buffer.from('def\n'))
    expect(lineOpen(s)).toBe(false)
    ownLines(s, '::warning::w\n')
    expect(s.text()).toBe('abcdef\n::warning::w\n')
  })
})

describe('through the job agent', () => {
  async function withAgent(onRun: RunHandler, use: (socket: string) => Promise<void>): Promise<void> {
    const { socketPath, agent } = await standInAgent(onRun)
    await use(socketPath)
    dropConnection()
    await agent
  }
  const step = (socket: string, out: { stdout: ReturnType<typeof recorder>; stderr: ReturnType<typeof recorder> }) =>
    runViaAgent(socket, { raw: '{}', env: {}, cwd: '/' }, out, noSignal)

  test('the agent tells the hook which lines the step left open', async () => {
    pipesOfHook = undefined
    const out = { stdout: recorder(), stderr: recorder() }
    await withAgent(
      async (_req, io) => {
        const o = outputTo(io.stdout, io.stderr)
        o.onStdout(Buffer.from('open'))
        o.onStderr(Buffer.from('closed\n'))
        return { code: 0 }
      },
      async (s) => expect(await step(s, out)).toEqual({ code: 0, lost: false })
    )
    expect(out.stdout.text()).toBe('open')
    expect([lineOpen(out.stdout), lineOpen(out.stderr)]).toEqual([true, false])
    // Control: whole lines leave nothing open.
    const out2 = { stdout: recorder(), stderr: recorder() }
    await withAgent(
      async (_req, io) => {
        const o = outputTo(io.stdout, io.stderr)
        o.onStdout(Buffer.from('closed\n'))
        o.onStderr(Buffer.from('open'))
        return { code: 0 }
      },
      async (s) => expect(await step(s, out2)).toEqual({ code: 0, lost: false })
    )
    expect([lineOpen(out2.stdout), lineOpen(out2.stderr)]).toEqual([false, true])
  })

  test("written straight into the hook's pipes: the agent's word is all the hook has", async () => {
    const { out, err } = makePipes()
    const hook = spawn('sleep', ['30'], { stdio: ['ignore', out.write, err.write] })
    try {
      const id = (fd: number) => ({ dev: fstatSync(fd).dev, ino: fstatSync(fd).ino })
      pipesOfHook = { pid: hook.pid, out: id(out.write), err: id(err.write) }
      const relayed = { stdout: recorder(), stderr: recorder() }
      await withAgent(
        async (_req, io) => {
          outputTo(io.stdout, io.stderr).onStdout(Buffer.from('open'))
          return { code: 0 }
        },
        async (s) => expect(await step(s, relayed)).toEqual({ code: 0, lost: false })
      )
      // Nothing came over the socket (it went into the pipe), yet the hook knows the line is open.
      expect(relayed.stdout.text()).toBe('')
      expect(readSync(out.read, Buffer.alloc(16))).toBe(4)
      expect([lineOpen(relayed.stdout), lineOpen(relayed.stderr)]).toEqual([true, false])
    } finally {
      hook.kill('SIGKILL')
      for (const fd of [out.read, out.write, err.read, err.write]) closeSync(fd)
    }
  })

  // A stand-in agent that writes `payload` as stdout and then goes away without an exit status.
  async function dyingAgent(payload: string, use: (socket: string) => Promise<void>): Promise<void> {
    const socketPath = join(tempDir(), 'dying.sock')
    const server = createServer((sock) => sock.once('data', () => sock.end(frame(F.STDOUT, Buffer.from(payload)))))
    await new Promise<void>((res) => server.listen(socketPath, res))
    try {
      await use(socketPath)
    } finally {
      server.close()
    }
  }

  test('an agent lost mid-step after writing into the pipes itself: the error line starts a line of its own', async () => {
    // The pipes were named, so the agent may have written into them directly: unknown to the hook.
    pipesOfHook = { pid: 1, out: { dev: 1, ino: 1 }, err: { dev: 1, ino: 2 } }
    const out = { stdout: recorder(), stderr: recorder() }
    await dyingAgent('whole\n', async (s) => {
      const err = await step(s, out).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TransportError)
      report(err, { signal: noSignal, ...out })
    })
    expect(commandsIn(out.stdout.text())).toEqual([expect.stringMatching(/^::error::lost the job's agent during the step/)])
    expect(out.stdout.text()).toMatch(/^whole\n\n::error::/)
  })

  test('control: relayed only (no pipes named), the hook knows the line was closed', async () => {
    pipesOfHook = undefined
    const out = { stdout: recorder(), stderr: recorder() }
    await dyingAgent('whole\n', async (s) => {
      report(await step(s, out).catch((e: unknown) => e), { signal: noSignal, ...out })
    })
    expect(out.stdout.text()).toMatch(/^whole\n::error::lost the job's agent/)
    const out2 = { stdout: recorder(), stderr: recorder() }
    await dyingAgent('cut mid-li', async (s) => {
      report(await step(s, out2).catch((e: unknown) => e), { signal: noSignal, ...out2 })
    })
    expect(out2.stdout.text()).toMatch(/^cut mid-li\n::error::lost the job's agent/)
  })
})
