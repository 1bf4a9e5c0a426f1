import { InFlight } from '../../src/cancel'
import { Cancelled } from '../../src/errors'

const later = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms))

describe('InFlight', () => {
  test('passes results and errors through while not cancelled', async () => {
    const f = new InFlight(new AbortController().signal)
    await expect(f.track(later(5, 'ok'))).resolves.toBe('ok')
    await expect(f.track(Promise.reject(new Error('boom')))).rejects.toThrow('boom')
  })

  test('a cancel rejects the wait at once with Cancelled, long before the work ends', async () => {
    const c = new AbortController()
    const f = new InFlight(c.signal)
    const t0 = Date.now()
    let finish!: (v: string) => void
    const waiting = f.track(new Promise<string>((r) => (finish = r)))
    setTimeout(() => c.abort('SIGINT'), 20)
    await expect(waiting).rejects.toBeInstanceOf(Cancelled)
    expect(Date.now() - t0).toBeLessThan(1000)
    finish('late')
  })

  test('work tracked after the cancel is rejected at once too', async () => {
    const c = new AbortController()
    c.abort('SIGTERM')
    await expect(new InFlight(c.signal).track(later(10, 1))).rejects.toThrow('SIGTERM')
  })

  test('settle waits for work still running after a cancel (a container being created), but not past its limit', async () => {
    const c = new AbortController()
    const f = new InFlight(c.signal)
    let landed = false
    f.track(later(150, 0).then(() => (landed = true))).catch(() => undefined)
    c.abort('SIGINT')
    await f.settle(5000)
    expect(landed).toBe(true)

    let finish!: () => void
    f.track(new Promise<void>((r) => (finish = r))).catch(() => undefined)
    const t0 = Date.now()
    await f.settle(100)
    expect(Date.now() - t0).toBeLessThan(5000) // a settle that ignored its limit would wait for ever
    finish()
  })

  test('settle with nothing in flight returns at once; failed work counts as settled', async () => {
    const f = new InFlight(new AbortController().signal)
    const t = Date.now()
    await f.settle(10_000)
    expect(Date.now() - t).toBeLessThan(5000) // nothing in flight: at once, not the 10 s limit
    f.track(Promise.reject(new Error('x'))).catch(() => undefined)
    const t0 = Date.now()
    await f.settle(10_000)
    expect(Date.now() - t0).toBeLessThan(5000) // at once, not the 10 s limit
  })
  test('settle also waits for work that landing work started (a create once its network exists)', async () => {
    const ac = new AbortController()
    const f = new InFlight(ac.signal)
    let created = false
    // The first piece starts the second when it lands and returns without waiting for it, as
    // prepare_job's docker part does with the containers' creation.
    const network = later(50, 'net').then(() => {
      f.track(later(200, 'container').then(() => (created = true))).catch(() => undefined)
    })
    f.track(network).catch(() => undefined)
    ac.abort('SIGTERM')
    await f.settle(5000)
    expect(created).toBe(true)
  })

  // The runner kills the hook 10 s after its SIGINT: the undo's time before the release counts from there.
  test.each([
    ["the runner's SIGINT", 'SIGINT', true],
    ['its SIGTERM', 'SIGTERM', true],
    ["control: another abort (the runner closed the hook's output; no kill follows)", new Error('output closed'), false]
  ])('%s starts the time before the release', async (_what, reason, starts) => {
    const ac = new AbortController()
    const f = new InFlight(ac.signal)
    expect(f.leftBeforeRelease()).toBe(Infinity)
    ac.abort(reason)
    const left = f.leftBeforeRelease()
    if (starts) expect(left).toBeGreaterThan(7000)
    expect([left <= 7500, left === Infinity]).toEqual([starts, !starts])
  })
  test('a settle under way ends when the time before the release runs out, also for a cancel that came after it began', async () => {
    jest.useFakeTimers()
    try {
      const ac = new AbortController()
      const f = new InFlight(ac.signal)
      f.track(new Promise(() => undefined)).catch(() => undefined)
      let settled = false
      void f.settle(60_000).then(() => (settled = true))
      await jest.advanceTimersByTimeAsync(1000)
      ac.abort('SIGINT')
      await jest.advanceTimersByTimeAsync(7400)
      expect(settled).toBe(false)
      await jest.advanceTimersByTimeAsync(200)
      expect(settled).toBe(true)
    } finally {
      jest.useRealTimers()
    }
  })
})
