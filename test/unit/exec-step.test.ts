// A step run by a plain exec whose cancel the VM's docker ignores (steerable by the job: it keeps the
// output stream open and the stop execs change nothing): the step still ends, as cancelled, by
// cutting the stream, and the agent's pause of V8's marking for that stream ends with it.
import { cachedDataVersionTag } from 'node:v8'
import { guardMarking } from '../helpers/v8-marking'
import { execStep } from '../../src/docker/steps'
import { pauseMarkingWhileStreaming } from '../../src/gc-policy'
import type { Engine, Output } from '../../src/docker/engine'
import type { Remote } from '../../src/remote/remote'

const ID = 'a'.repeat(64)

/** An engine that answers every call and never ends a stream until it is closed from this side. */
function deafEngine(): Engine & { closed: number; stops: number } {
  const e = {
    closed: 0,
    stops: 0,
    call: async (_m: string, path: string, body?: { User?: string }) => {
      if (body?.User === '0') e.stops++
      if (path.endsWith('/json')) return { status: 200, data: { Running: false, ExitCode: 0 } }
      return { status: 201, data: { Id: ID } }
    },
    hijack: async (_p: string, _b: unknown, _out: Output) => {
      let close!: () => void
      const ended = new Promise<void>((_r, reject) => (close = () => reject(new Error('closed'))))
      return {
        ended,
        input: null,
        close: () => {
          e.closed++
          close()
        }
      }
    }
  }
  return e as unknown as Engine & { closed: number; stops: number }
}

const normal = guardMarking()

test('a cancel the engine does not answer ends the step as cancelled within the stop passes, and V8 marks again', async () => {
  pauseMarkingWhileStreaming()
  const engine = deafEngine()
  const cancel = new AbortController()
  setTimeout(() => cancel.abort('SIGINT'), 100)
  const t0 = Date.now()
  let during = normal
  const streaming = setTimeout(() => (during = cachedDataVersionTag()), 50)
  const res = await execStep(
    {} as Remote,
    engine,
    { container: 'c', cmd: ['true'], env: {}, workdir: '/' },
    { onStdout: () => undefined, onStderr: () => undefined },
    cancel.signal,
    100
  )
  clearTimeout(streaming)
  expect(during).not.toBe(normal) // positive control: V8's marking was paused while the output streamed
  expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
  expect(engine.stops).toBeGreaterThanOrEqual(1)
  expect(engine.closed).toBe(1)
  expect(Date.now() - t0).toBeLessThan(15_000)
  expect(cachedDataVersionTag()).toBe(normal)
}, 30_000)
