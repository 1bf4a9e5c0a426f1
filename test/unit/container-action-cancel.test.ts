// A container action cancelled while its container is being started: the kill the cancel sends then
// finds nothing running yet (docker answers 409), so without a second kill once the start returns
// the container ran to its own end and the step waited for it.
import { CUT_AFTER_CANCEL_MS, runContainer } from '../../src/docker/steps'
import { EngineError, type Engine, type Output } from '../../src/docker/engine'
import { settlesWithin } from '../../src/retry'

const ID = 'c'.repeat(64)

/** A container that runs until killed; `duringStart` runs while the start call is under way. */
function engineFor(duringStart: () => void) {
  let running = false
  let exit!: (code: number) => void
  const exited = new Promise<number>((r) => (exit = r))
  const kills: string[] = []
  const engine = {
    call: async (method: string, path: string, _b: unknown, _w: string, opts?: { answered?: () => void }) => {
      if (path.startsWith('/containers/create')) return { status: 201, data: { Id: ID } }
      if (path.endsWith('/start')) {
        duringStart()
        await new Promise((r) => setTimeout(r, 20))
        running = true
        return { status: 204, data: null }
      }
      if (path.endsWith('/kill')) {
        kills.push(running ? 'running' : 'not running')
        if (!running) throw new EngineError(409, 'kill', `container ${ID} is not running`)
        running = false
        exit(137)
        return { status: 204, data: null }
      }
      if (path.includes('/wait')) {
        opts?.answered?.()
        return { status: 200, data: { StatusCode: await exited } }
      }
      if (method === 'DELETE') return { status: 204, data: null }
      throw new Error(`unexpected ${method} ${path}`)
    },
    hijack: async () => ({ ended: exited.then(() => undefined), input: null, close: () => undefined })
  }
  return { engine: engine as unknown as Engine, kills, exit }
}

const spec = { image: 'i', name: 'n', cmd: [], entrypoint: null, env: {}, workdir: '/', mounts: [], network: null, labels: {} }
const out: Output = { onStdout: () => undefined, onStderr: () => undefined }

type CallOpts = { answered?: () => void }
/**
 * An Engine.call stand-in that records each call (`METHOD /path`, the container as C), makes
 * container C, answers its wait with `wait` and anything else with `other`.
 */
function recordingCall(
  calls: string[],
  wait: (opts?: CallOpts) => Promise<unknown>,
  other: (method: string, path: string) => Promise<unknown>
): (method: string, path: string, b: unknown, w: string, opts?: CallOpts) => Promise<unknown> {
  return async (method, path, _b, _w, opts) => {
    calls.push(`${method} ${path.split('?')[0].replace(ID, 'C')}`)
    if (path.startsWith('/containers/create')) return { status: 201, data: { Id: ID } }
    if (path.includes('/wait')) return wait(opts)
    return other(method, path)
  }
}

test('a cancel that lands during the container start still stops the container: the step ends as cancelled', async () => {
  const cancel = new AbortController()
  const f = engineFor(() => cancel.abort('SIGINT'))
  const res = runContainer(f.engine, spec, out, cancel.signal)
  const ended = await settlesWithin(res, 2000)
  f.exit(0) // frees the test when the container was left running
  expect(ended).toBe(true)
  await expect(res).resolves.toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
  // positive control: the cancel's own kill came before anything ran
  expect(f.kills).toEqual(['not running', 'running'])
})

test('positive control: without a cancel the container runs to its end and its status is the step’s', async () => {
  const f = engineFor(() => setTimeout(() => f.exit(3), 50))
  await expect(runContainer(f.engine, spec, out, new AbortController().signal)).resolves.toEqual({ exitCode: 3, cancelled: false })
  expect(f.kills).toEqual([])
})

// The VM's docker (the job is root there) answers the kill but holds the container's wait and its
// attach stream open: the step must not wait on them after its cancel (with the job's agent the
// request stayed in flight until cleanup_job).
test.each([
  ['answers', 'stopped'],
  ['refuses', 'unconfirmed']
])(
  'a cancel whose kill the engine answers while holding the wait and the stream open: cut off, the step ends as cancelled (removal %s: %s)',
  async (removal, stop) => {
    jest.useFakeTimers()
    try {
      const cancel = new AbortController()
      let closed = 0
      const calls: string[] = []
      const engine = {
        call: recordingCall(
          calls,
          (opts) => {
            opts?.answered?.()
            return new Promise<never>(() => undefined)
          },
          async (method) => {
            // Whether the container is gone is the removal's answer: a stop it does not confirm is told as such.
            if (method === 'DELETE' && removal === 'refuses') throw new Error('409 removal of container C is already in progress')
            return { status: 204, data: null }
          }
        ),
        hijack: async () => ({ ended: new Promise<never>(() => undefined), input: null, close: () => void closed++ })
      } as unknown as Engine
      let res: unknown = null
      const step = runContainer(engine, spec, out, cancel.signal).then((r) => (res = r))
      await jest.advanceTimersByTimeAsync(60_000)
      // Positive control: without a cancel it is still waiting, as for any long container action.
      expect(res).toBeNull()
      cancel.abort('SIGINT')
      await jest.advanceTimersByTimeAsync(CUT_AFTER_CANCEL_MS - 100)
      expect(res).toBeNull()
      await jest.advanceTimersByTimeAsync(200)
      await step
      expect(res).toEqual({ exitCode: 130, cancelled: true, stop })
      expect(closed).toBe(1)
      expect(calls).toEqual([
        'POST /containers/create',
        'POST /containers/C/wait',
        'POST /containers/C/start',
        'POST /containers/C/kill',
        'DELETE /containers/C'
      ])
    } finally {
      jest.useRealTimers()
    }
  }
)

// Every call after a cancel is bounded, also the start and the removal an engine may hold.
test('a cancel while the engine holds the start and then the removal: the step still ends within the cut-off', async () => {
  jest.useFakeTimers()
  try {
    const cancel = new AbortController()
    const seen: string[] = []
    /** Held until its own bound or signal ends it, as Engine.call does. */
    const held = (opts?: { timeoutMs?: number | null; signal?: AbortSignal }) =>
      new Promise((_, reject) => {
        if (typeof opts?.timeoutMs === 'number') setTimeout(() => reject(new Error('no answer')), opts.timeoutMs)
        opts?.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true })
      })
    const engine = {
      call: async (
        method: string,
        path: string,
        _b: unknown,
        _w: string,
        opts?: { timeoutMs?: number | null; signal?: AbortSignal; answered?: () => void }
      ) => {
        seen.push(
          `${method} ${path.split('?')[0].replace(ID, 'C')} ${typeof opts?.timeoutMs === 'number' ? 'bounded' : opts?.signal ? 'signal' : '-'}`
        )
        if (path.startsWith('/containers/create')) return { status: 201, data: { Id: ID } }
        if (path.includes('/wait')) opts?.answered?.()
        if (path.endsWith('/start') || method === 'DELETE' || path.includes('/wait')) return held(opts)
        return { status: 204, data: null }
      },
      // A stream that fails while nothing awaits it yet must not become an unhandled rejection.
      hijack: async () => ({ ended: Promise.reject(new Error('stream broke')), input: null, close: () => undefined })
    } as unknown as Engine
    let res: unknown = null
    const step = runContainer(engine, spec, out, cancel.signal).then((r) => (res = r))
    await jest.advanceTimersByTimeAsync(1_000)
    expect(res).toBeNull()
    cancel.abort('SIGINT')
    await jest.advanceTimersByTimeAsync(CUT_AFTER_CANCEL_MS + 100)
    await step
    expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'unconfirmed' })
    expect(seen).toEqual([
      'POST /containers/create -',
      'POST /containers/C/wait -',
      'POST /containers/C/start signal',
      'POST /containers/C/kill bounded',
      'DELETE /containers/C bounded'
    ])
  } finally {
    jest.useRealTimers()
  }
})

// docker's `next-exit` wait sees only exits after it is registered, and registers it a little after
// the request arrives (here 50 ms; on a busy VM any time). A container that ends during its start
// then ended before the wait saw it: the step waited for ever. The start waits for the wait's head.
describe("a container that ends during its start, before docker registered the step's wait", () => {
  function lateWait(headFirst: boolean) {
    let exits = 0
    const waiters: Array<(code: number) => void> = []
    const calls: string[] = []
    const engine = {
      call: recordingCall(
        calls,
        async (opts) => {
          const code = await new Promise<number>((resolve) =>
            setTimeout(() => {
              waiters.push(resolve)
              if (headFirst) opts?.answered?.()
            }, 50)
          )
          return { status: 200, data: { StatusCode: code } }
        },
        async (method, path) => {
          if (path.endsWith('/start')) {
            exits++
            for (const w of waiters.splice(0)) w(0)
            return { status: 204, data: null }
          }
          if (method === 'DELETE') return { status: 204, data: null }
          throw new Error(`unexpected ${method} ${path}`)
        }
      ),
      hijack: async () => ({ ended: Promise.resolve(), input: null, close: () => undefined })
    }
    return { engine: engine as unknown as Engine, calls, exits: () => exits }
  }

  test("the start waits for the wait to be registered, and the step ends with the container's status", async () => {
    const f = lateWait(true)
    const res = runContainer(f.engine, spec, out, new AbortController().signal)
    expect(await settlesWithin(res, 2000)).toBe(true)
    await expect(res).resolves.toEqual({ exitCode: 0, cancelled: false })
    expect(f.exits()).toBe(1)
  })

  test('control: an engine that never answers the head holds the start, and a cancel still ends the step at once', async () => {
    const f = lateWait(false)
    const cancel = new AbortController()
    const res = runContainer(f.engine, spec, out, cancel.signal)
    expect(await settlesWithin(res, 300)).toBe(false)
    expect(f.exits()).toBe(0)
    cancel.abort('SIGINT')
    expect(await settlesWithin(res, 1000)).toBe(true)
    await expect(res).resolves.toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
    expect(f.calls).toEqual(['POST /containers/create', 'POST /containers/C/wait', 'DELETE /containers/C'])
  })
})
