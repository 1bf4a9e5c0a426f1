// A step's output can end long before its process does: a step that sends its output to a file
// (`exec >build.log 2>&1`) closes docker's stream and may run on for hours. The plain exec path
// asks for the exit status for as long as docker says the process runs (it gave up after ~19 s,
// failing the step as a lost connection); a cancel meanwhile stops the step's processes. The step
// ends only with the exit, so the pull-back after it sees what the process wrote until then
// (unit/script-step-pull-after-exit.test.ts).
import { execStep } from '../../src/docker/steps'
import type { Engine, Output } from '../../src/docker/engine'
import type { Remote } from '../../src/remote/remote'

const ID = 'b'.repeat(64)

/** An engine whose exec stream ends at once, and whose process runs for `runsMs` after that (Infinity: until stopped). */
function quietEngine(runsMs: number): Engine & { polls: number; stops: number } {
  let endedAt = 0
  const e = {
    polls: 0,
    stops: 0,
    call: async (_m: string, path: string, body?: { User?: string }) => {
      if (body?.User === '0') {
        e.stops++
        runsMs = 0
      }
      if (path.endsWith('/json')) {
        e.polls++
        const running = Date.now() - endedAt < runsMs
        // The step exits 3; a stop exec (after the first stop) reports none of the step's processes left.
        return { status: 200, data: { Running: running, ExitCode: running ? null : e.stops > 0 ? 0 : 3 } }
      }
      return { status: 201, data: { Id: ID } }
    },
    hijack: async (_p: string, _b: unknown, _out: Output) => {
      endedAt = Date.now()
      return { ended: Promise.resolve(), input: null, close: () => undefined }
    }
  }
  return e as unknown as Engine & { polls: number; stops: number }
}

const SPEC = { container: 'c', cmd: ['sh', '-c', 'exec >f 2>&1; sleep 3600'], env: {}, workdir: '/' }
const OUT = { onStdout: () => undefined, onStderr: () => undefined }

beforeEach(() => jest.useFakeTimers())
afterEach(() => jest.useRealTimers())

test('a process that runs 10 minutes after its output ended: the step waits for its exit code', async () => {
  const engine = quietEngine(10 * 60_000)
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, new AbortController().signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(9 * 60_000)
  // Still waiting (it gave up after 50 polls, about 19 s, before): the process still runs.
  expect(res).toBeNull()
  expect(engine.polls).toBeGreaterThan(50)
  await jest.advanceTimersByTimeAsync(2 * 60_000)
  await step
  expect(res).toEqual({ exitCode: 3, cancelled: false })
})

test('a process that has exited when its output ends: one look', async () => {
  const engine = quietEngine(0)
  const res = await execStep({} as Remote, engine, SPEC, OUT, new AbortController().signal, 100)
  expect(res).toEqual({ exitCode: 3, cancelled: false })
  expect(engine.polls).toBe(1)
})

test("an exit docker records a moment after the output's end: a few looks, then its code", async () => {
  const engine = quietEngine(200)
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, new AbortController().signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(2_000)
  await step
  expect(engine.polls).toBeGreaterThan(1)
  expect(res).toEqual({ exitCode: 3, cancelled: false })
})

test('a cancel while the process outlives its output stops it, and the step ends as cancelled', async () => {
  const engine = quietEngine(Infinity)
  const cancel = new AbortController()
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, cancel.signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(60_000)
  expect(res).toBeNull()
  expect(engine.stops).toBe(0)
  cancel.abort('SIGINT')
  await jest.advanceTimersByTimeAsync(10_000)
  await step
  expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
  expect(engine.stops).toBeGreaterThanOrEqual(1)
})

// The note a cancel leaves says the step's processes were stopped only when a stop pass saw none
// left: here the VM's docker refuses every stop exec, and the output had ended before the cancel.
test('a cancel whose stop execs the VM refuses, while the process outlives its output: cancelled, the stop told unconfirmed', async () => {
  const engine = quietEngine(Infinity)
  const call = engine.call.bind(engine)
  engine.call = async (m: string, path: string, body?: { User?: string }) => {
    if (body?.User === '0') throw new Error('409 exec refused')
    return call(m, path, body as never)
  }
  const cancel = new AbortController()
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, cancel.signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(60_000)
  cancel.abort('SIGINT')
  await jest.advanceTimersByTimeAsync(60_000)
  await step
  expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'unconfirmed' })
})

describe("the exit status is the VM docker's word, and the job is root there", () => {
  /** An engine whose stream ends at once and whose exec inspect answers `data`. */
  const answering = (data: unknown): Engine =>
    ({
      call: async (_m: string, path: string) => (path.endsWith('/json') ? { status: 200, data } : { status: 201, data: { Id: ID } }),
      hijack: async () => ({ ended: Promise.resolve(), input: null, close: () => undefined })
    }) as unknown as Engine

  test.each([
    ['256 (the process exit code 0 once wrapped)', { Running: false, ExitCode: 256 }],
    ['-1', { Running: false, ExitCode: -1 }],
    ['3.5', { Running: false, ExitCode: 3.5 }],
    ['a string', { Running: false, ExitCode: '0' }],
    ['no Running', { ExitCode: 0 }],
    ['null for the whole answer', null]
  ])('an answer of %s fails the step, never passes for an exit status', async (_what, data) => {
    await expect(execStep({} as Remote, answering(data), SPEC, OUT, new AbortController().signal, 100)).rejects.toThrow(
      /^docker API exec inspect: /
    )
  })

  test('positive control: 0 and 255 are exit statuses', async () => {
    for (const code of [0, 255])
      expect(
        await execStep({} as Remote, answering({ Running: false, ExitCode: code }), SPEC, OUT, new AbortController().signal, 100)
      ).toEqual({
        exitCode: code,
        cancelled: false
      })
  })
})

test('a cancel while docker holds back its answer on the exit status ends the step at once (the call has the signal)', async () => {
  const cancel = new AbortController()
  let asked = 0
  const engine = {
    call: (_m: string, path: string, body: { User?: string } | undefined, _w: string, opts?: { signal?: AbortSignal }) => {
      if (body?.User === '0' || !path.endsWith('/json')) return Promise.resolve({ status: 201, data: { Id: ID } })
      // The step's first look is never answered (given up only through the call's own signal); the
      // stop's own execs answer.
      if (++asked > 1) return Promise.resolve({ status: 200, data: { Running: false, ExitCode: 0 } })
      return new Promise((_, reject) => opts?.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))
    },
    hijack: async () => ({ ended: Promise.resolve(), input: null, close: () => undefined })
  } as unknown as Engine
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, cancel.signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(1_000)
  expect(asked).toBe(1)
  expect(res).toBeNull()
  cancel.abort('SIGINT')
  await jest.advanceTimersByTimeAsync(5_000)
  await step
  expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
})

test('a cancel while docker holds back the exec start: the step ends as cancelled and what it may have started is stopped', async () => {
  const cancel = new AbortController()
  let stops = 0
  const engine = {
    call: async (_m: string, _path: string, body?: { User?: string }) => {
      if (body?.User === '0') stops++
      return { status: 201, data: { Id: ID, Running: false, ExitCode: 0 } }
    },
    // The start's answer never comes; only the signal ends the wait.
    hijack: (_p: string, _b: unknown, _o: Output, signal?: AbortSignal) =>
      new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))
  } as unknown as Engine
  let res: unknown = null
  const step = execStep({} as Remote, engine, SPEC, OUT, cancel.signal, 100).then((r) => (res = r))
  await jest.advanceTimersByTimeAsync(1_000)
  expect(res).toBeNull()
  cancel.abort('SIGINT')
  await jest.advanceTimersByTimeAsync(10_000)
  await step
  expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
  expect(stops).toBeGreaterThanOrEqual(1)
})

test('a stream that breaks while the process runs: its processes are stopped before the failure is told (the handler then pulls back)', async () => {
  let stops = 0
  const engine = {
    call: async (_m: string, path: string, body?: { User?: string }) => {
      if (body?.User === '0') stops++
      if (path.endsWith('/json')) return { status: 200, data: { Running: false, ExitCode: 0 } }
      return { status: 201, data: { Id: ID } }
    },
    hijack: async () => ({ ended: Promise.reject(new Error('output stream broke: reset')), input: null, close: () => undefined })
  } as unknown as Engine
  const step = execStep({} as Remote, engine, SPEC, OUT, new AbortController().signal, 100)
  const settled = step.catch((e: unknown) => e)
  await jest.advanceTimersByTimeAsync(10_000)
  expect(String(await settled)).toContain('output stream broke')
  expect(stops).toBeGreaterThanOrEqual(1)
})
