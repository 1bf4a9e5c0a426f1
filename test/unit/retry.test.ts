import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { retry, sleep } from '../../src/retry'
import { bundle, cleanupTempDirs, SRC, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

const fast = { minDelayMs: 1, maxDelayMs: 5 }

describe('retry', () => {
  it('returns the first success without retrying', async () => {
    const fn = jest.fn(async () => 'ok')
    await expect(retry(fn, { attempts: 3, ...fast })).resolves.toBe('ok')
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it('retries failures, then succeeds, passing the attempt number', async () => {
    const seen: number[] = []
    const onRetry = jest.fn()
    const result = await retry(
      async (attempt) => {
        seen.push(attempt)
        if (attempt < 3) throw new Error(`fail ${attempt}`)
        return attempt * 10
      },
      { attempts: 5, ...fast, onRetry }
    )
    expect(result).toBe(30)
    expect(seen).toEqual([1, 2, 3])
    expect(onRetry.mock.calls.map(([e, n]) => [(e as Error).message, n])).toEqual([
      ['fail 1', 1],
      ['fail 2', 2]
    ])
  })

  it('gives up after `attempts` and rejects with the last error', async () => {
    let n = 0
    const fn = jest.fn(async () => {
      throw new Error(`fail ${++n}`)
    })
    await expect(retry(fn, { attempts: 3, ...fast })).rejects.toThrow('fail 3')
    expect(fn).toHaveBeenCalledTimes(3)
  })

  it('attempts once when attempts is 1 (or less)', async () => {
    const fn = jest.fn(async () => {
      throw new Error('x')
    })
    await expect(retry(fn, { attempts: 1, ...fast })).rejects.toThrow('x')
    await expect(retry(fn, { attempts: 0, ...fast })).rejects.toThrow('x')
    expect(fn).toHaveBeenCalledTimes(2)
  })

  it('rethrows a non-retryable error at once, the very same object', async () => {
    class Permanent extends Error {}
    const original = new Permanent('auth failed')
    const fn = jest.fn(async () => {
      throw original
    })
    const got = await retry(fn, { attempts: 5, ...fast, retryable: (e) => !(e instanceof Permanent) }).catch((e: unknown) => e)
    expect(got).toBe(original)
    expect(fn).toHaveBeenCalledTimes(1)
  })

  it('asks retryable about every failure', async () => {
    const retryable = jest.fn((e: unknown) => (e as Error).message !== 'stop')
    let n = 0
    const fn = async (): Promise<never> => {
      throw new Error(++n < 3 ? 'again' : 'stop')
    }
    await expect(retry(fn, { attempts: 10, ...fast, retryable })).rejects.toThrow('stop')
    expect(retryable).toHaveBeenCalledTimes(3)
  })

  // Node's fetch and many libraries report network failures as TypeError; p-retry 4 refuses to
  // retry a TypeError whatever `retryable` says.
  it('retries a TypeError when retryable allows it', async () => {
    let n = 0
    const fn = jest.fn(async () => {
      if (++n < 3) throw new TypeError('fetch failed')
      return 'ok'
    })
    await expect(retry(fn, { attempts: 5, ...fast, retryable: () => true })).resolves.toBe('ok')
    expect(fn).toHaveBeenCalledTimes(3)
  })

  it('stops retrying once the deadline has passed and rejects with the last error', async () => {
    const started = Date.now()
    let n = 0
    const fn = jest.fn(async () => {
      await new Promise((r) => setTimeout(r, 20))
      throw new Error(`slow fail ${++n}`)
    })
    const err = (await retry(fn, { attempts: 1000, minDelayMs: 1, maxDelayMs: 2, deadlineMs: 1000 }).catch((e: unknown) => e)) as Error
    const elapsed = Date.now() - started
    expect(err.message).toBe(`slow fail ${n}`)
    expect(fn.mock.calls.length).toBeGreaterThanOrEqual(2)
    expect(fn.mock.calls.length).toBeLessThan(100)
    expect(elapsed).toBeGreaterThanOrEqual(1000)
    expect(elapsed).toBeLessThan(5000)
  })

  it('does not call fn when the signal is already aborted, and rejects with its reason', async () => {
    const ac = new AbortController()
    const reason = new Error('cancelled by SIGINT')
    ac.abort(reason)
    const fn = jest.fn(async () => 'never')
    await expect(retry(fn, { attempts: 3, ...fast, signal: ac.signal })).rejects.toBe(reason)
    expect(fn).not.toHaveBeenCalled()
  })

  it('stops before the next attempt once the signal fires', async () => {
    const ac = new AbortController()
    const reason = new Error('cancelled by SIGTERM')
    const fn = jest.fn(async (attempt: number) => {
      if (attempt === 2) ac.abort(reason)
      throw new Error(`fail ${attempt}`)
    })
    const err = await retry(fn, { attempts: 10, ...fast, signal: ac.signal }).catch((e: unknown) => e)
    expect(fn).toHaveBeenCalledTimes(2)
    expect(err).toBe(reason)
  })

  // Cancellation must be prompt: the runner sends SIGINT, then SIGTERM 7.5 s later.
  it('stops waiting between attempts as soon as the signal fires', async () => {
    const ac = new AbortController()
    const fn = jest.fn(async () => {
      throw new Error('down')
    })
    const started = Date.now()
    setTimeout(() => ac.abort(new Error('cancelled')), 50)
    const err = (await retry(fn, { attempts: 3, minDelayMs: 4000, maxDelayMs: 4000, signal: ac.signal }).catch((e: unknown) => e)) as Error
    expect(err.message).toBe('cancelled')
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe('sleep', () => {
  it('resolves after the time', async () => {
    const t = Date.now()
    await sleep(30)
    expect(Date.now() - t).toBeGreaterThanOrEqual(25)
  })

  it('resolves with a signal that never fires, and removes its listener', async () => {
    const ac = new AbortController()
    const add = jest.spyOn(ac.signal, 'addEventListener')
    const remove = jest.spyOn(ac.signal, 'removeEventListener')
    await sleep(5, ac.signal)
    expect(add).toHaveBeenCalledTimes(1)
    expect(remove).toHaveBeenCalledWith('abort', add.mock.calls[0][1])
  })

  it('rejects at once with the reason of an already aborted signal', async () => {
    const ac = new AbortController()
    const reason = new Error('gone')
    ac.abort(reason)
    const t = Date.now()
    await expect(sleep(10_000, ac.signal)).rejects.toBe(reason)
    expect(Date.now() - t).toBeLessThan(100)
  })

  // A plain abort() makes signal.reason a DOMException named AbortError, created by Node itself.
  // Jest runs the tests in another realm, where that object is not `instanceof Error` and sleep
  // would wrap it; so this runs in a child node process, as the hook does.
  it('rejects as soon as the signal fires, with the AbortError of a plain abort()', () => {
    const dir = tempDir()
    const entry = join(dir, 'abort.ts')
    writeFileSync(
      entry,
      `import { sleep } from ${JSON.stringify(join(SRC, 'retry'))}
const ac = new AbortController()
const t = Date.now()
setTimeout(() => ac.abort(), 20)
sleep(10_000, ac.signal).then(
  () => process.stdout.write(JSON.stringify({ resolved: true })),
  (e: any) => process.stdout.write(JSON.stringify({ same: e === ac.signal.reason, name: e.name, ms: Date.now() - t }))
)
`
    )
    const r = spawnSync(process.execPath, [bundle(entry, join(dir, 'abort.js'))], { timeout: 10_000 })
    expect(r.signal).toBeNull()
    expect(r.stderr.toString()).toBe('')
    expect(r.status).toBe(0)
    const got = JSON.parse(r.stdout.toString()) as { same: boolean; name: string; ms: number }
    expect(got).toEqual({ same: true, name: 'AbortError', ms: expect.any(Number) })
    expect(got.ms).toBeLessThan(1000)
  })

  it('rejects as soon as the signal fires with a reason that is not an Error, as an Error naming it', async () => {
    const ac = new AbortController()
    const t = Date.now()
    setTimeout(() => ac.abort('shutdown'), 20)
    const err = await sleep(10_000, ac.signal).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toBe('aborted (shutdown)')
    expect(Date.now() - t).toBeLessThan(1000)
  })
})
