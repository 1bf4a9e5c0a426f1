// The agent's GC policy: V8's incremental marking is off exactly while at least one step's output
// streams, and only in a process that asked for it (the agent). V8's flag state is read back through
// cachedDataVersionTag(), which changes with the flags.
import { cachedDataVersionTag } from 'node:v8'

const load = async (): Promise<typeof import('../../src/gc-policy')> => {
  jest.resetModules()
  return import('../../src/gc-policy')
}

const normal = cachedDataVersionTag()
afterEach(() => expect(cachedDataVersionTag()).toBe(normal)) // no test leaves marking off

test('not enabled (a hook process): a stream leaves V8 as it is', async () => {
  const { outputStreaming } = await load()
  const done = outputStreaming()
  expect(cachedDataVersionTag()).toBe(normal)
  done()
})

test('enabled (the agent): marking is off while output streams, and on again once the last stream is over', async () => {
  const { outputStreaming, pauseMarkingWhileStreaming } = await load()
  pauseMarkingWhileStreaming()
  const first = outputStreaming()
  const paused = cachedDataVersionTag()
  expect(paused).not.toBe(normal) // positive control: the flag changed what V8 reports
  const second = outputStreaming()
  first()
  expect(cachedDataVersionTag()).toBe(paused) // the second stream still runs
  first() // a second call of the same end does not count twice
  expect(cachedDataVersionTag()).toBe(paused)
  second()
  expect(cachedDataVersionTag()).toBe(normal)
  second()
  expect(cachedDataVersionTag()).toBe(normal)
})
