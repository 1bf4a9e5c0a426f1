// bootMs: the clock a lease's age is measured on, which must count time the runner host spent
// suspended (the monotonic clock, and timers, stop then).
import { readFileSync } from 'node:fs'

afterEach(() => jest.resetModules())

test("bootMs is the kernel's uptime (suspended time included), in milliseconds, and never goes back", async () => {
  const { bootMs } = await import('../../src/mono-clock')
  const before = parseFloat(readFileSync('/proc/uptime', 'latin1')) * 1000
  const a = bootMs()
  const b = bootMs()
  const after = parseFloat(readFileSync('/proc/uptime', 'latin1')) * 1000
  expect(a).toBeGreaterThanOrEqual(Math.floor(before) - 1)
  expect(b).toBeGreaterThanOrEqual(a)
  expect(b).toBeLessThanOrEqual(Math.ceil(after) + 1)
  // Not the process's own monotonic clock (which starts near 0 with the process).
  expect(a - performance.now()).toBeGreaterThan(1000)
})

test('where /proc/uptime cannot be read any more, it goes on from the last read on the monotonic clock', async () => {
  let gone = false
  let refused = 0
  jest.doMock('node:fs', () => {
    const real = jest.requireActual<typeof import('node:fs')>('node:fs')
    return {
      ...real,
      readFileSync: (...a: Parameters<typeof real.readFileSync>) => {
        if (gone && ++refused) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
        return real.readFileSync(...a)
      }
    }
  })
  const { bootMs } = await import('../../src/mono-clock')
  const last = bootMs()
  gone = true
  const next = bootMs()
  expect(next).toBeGreaterThanOrEqual(last - 1)
  expect(next - last).toBeLessThan(1000)
  expect(refused).toBe(1)
  // Control: on the monotonic clock alone it would be near 0, not near the uptime.
  expect(last - performance.now()).toBeGreaterThan(1000)
  jest.dontMock('node:fs')
})

test('a first read that fails keeps the process on the monotonic clock: a later read does not jump it by the uptime', async () => {
  let fail = true
  jest.doMock('node:fs', () => {
    const real = jest.requireActual<typeof import('node:fs')>('node:fs')
    return {
      ...real,
      readFileSync: (...a: Parameters<typeof real.readFileSync>) => {
        if (fail) throw Object.assign(new Error('EMFILE'), { code: 'EMFILE' })
        return real.readFileSync(...a)
      }
    }
  })
  const { bootMs } = await import('../../src/mono-clock')
  const first = bootMs()
  fail = false
  const second = bootMs()
  expect(second - first).toBeGreaterThanOrEqual(0)
  expect(second - first).toBeLessThan(1000)
  // Control: the uptime this machine has is far from the monotonic clock's value here.
  expect(
    parseFloat(jest.requireActual<typeof import('node:fs')>('node:fs').readFileSync('/proc/uptime', 'latin1')) * 1000 - second
  ).toBeGreaterThan(1000)
  jest.dontMock('node:fs')
})
