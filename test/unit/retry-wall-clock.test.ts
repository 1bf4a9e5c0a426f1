// A wait's deadline is elapsed time, on the monotonic clock: a wall clock stepped mid-wait (an NTP
// step, a VM resumed) neither ends it at once nor stretches it by the step.
import { waitUntil } from '../../src/retry'

const HOUR = 3_600_000

afterEach(() => jest.restoreAllMocks())

/** Date.now as the real one, moved by `step` ms from the first probe on. */
function stepWallClock(step: number): () => void {
  const real = Date.now.bind(Date)
  let moved = 0
  jest.spyOn(Date, 'now').mockImplementation(() => real() + moved)
  return () => void (moved = step)
}

test('a wall clock stepped forward mid-wait does not end the wait before its time', async () => {
  const step = stepWallClock(HOUR)
  let n = 0
  const got = await waitUntil(
    async () => {
      step()
      return ++n >= 3 ? 'ready' : undefined
    },
    { timeoutMs: 5_000, minDelayMs: 5, maxDelayMs: 5, onTimeout: () => new Error('timed out') }
  )
  expect(got).toBe('ready')
  expect(n).toBe(3)
})

test('a wall clock stepped back mid-wait does not stretch its deadline by the step', async () => {
  const step = stepWallClock(-HOUR)
  const started = performance.now()
  const wait = waitUntil(
    async () => {
      step()
      return undefined
    },
    { timeoutMs: 300, minDelayMs: 10, maxDelayMs: 20, onTimeout: () => new Error('timed out') }
  )
  const late = new Promise((resolve) => setTimeout(() => resolve('still waiting after 3 s'), 3_000).unref())
  await expect(Promise.race([wait, late])).rejects.toThrow('timed out')
  expect(performance.now() - started).toBeLessThan(3_000)
})
