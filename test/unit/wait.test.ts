// The wait primitive on a fake clock: no real time passes, so schedules are checked exactly.
import { backoff, retry, waitUntil, type Clock, type ProgressNote } from '../../src/retry'

function fakeClock(): Clock & { t: number; pauses: number[] } {
  const c = {
    t: 1_000_000,
    pauses: [] as number[],
    now: () => c.t,
    sleep: async (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) throw signal.reason
      c.pauses.push(ms)
      c.t += ms
    }
  }
  return c
}

/** The progress notes of a retry whose every attempt fails, with fixed pauses on the fake clock. */
async function notesOf(clock: Clock, o: { attempts: number; pauseMs: number; progressEveryMs: number }): Promise<ProgressNote[]> {
  const notes: ProgressNote[] = []
  await retry(
    async () => {
      throw new Error('busy')
    },
    {
      attempts: o.attempts,
      minDelayMs: o.pauseMs,
      maxDelayMs: o.pauseMs,
      jitter: false,
      clock,
      progressEveryMs: o.progressEveryMs,
      onProgress: (p) => notes.push(p)
    }
  ).catch(() => undefined)
  return notes
}

describe('retry on a fake clock', () => {
  it('grows the pause by the factor up to the maximum, without jitter when it is off', async () => {
    const clock = fakeClock()
    await expect(
      retry(
        async () => {
          throw new Error('down')
        },
        { attempts: 6, minDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: false, clock }
      )
    ).rejects.toThrow('down')
    expect(clock.pauses).toEqual([100, 200, 400, 800, 1000])
  })

  it('draws each pause from the upper half of the backoff when jitter is on', async () => {
    const clock = fakeClock()
    const o = { minDelayMs: 100, maxDelayMs: 10_000, factor: 3 }
    await expect(
      retry(
        async () => {
          throw new Error('down')
        },
        { attempts: 7, ...o, clock }
      )
    ).rejects.toThrow('down')
    expect(clock.pauses).toHaveLength(6)
    clock.pauses.forEach((p, i) => {
      expect(p).toBeGreaterThanOrEqual(backoff(i + 1, o) / 2)
      expect(p).toBeLessThanOrEqual(backoff(i + 1, o))
    })
    // Positive control: jitter really varies the pauses.
    expect(new Set(clock.pauses.map((p, i) => p / backoff(i + 1, o))).size).toBeGreaterThan(1)
  })

  it('keeps trying until the deadline, cuts the last pause to end on it, then rejects with the last error', async () => {
    const clock = fakeClock()
    const start = clock.t
    let n = 0
    const err = await retry(
      async () => {
        throw new Error(`fail ${++n}`)
      },
      { deadlineMs: 1000, minDelayMs: 300, maxDelayMs: 300, jitter: false, clock }
    ).catch((e: Error) => e)
    expect(err.message).toBe(`fail ${n}`)
    expect(clock.pauses).toEqual([300, 300, 300, 100])
    expect(clock.t - start).toBe(1000)
    expect(n).toBe(5)
  })

  it('writes a progress note at most once per progressEveryMs, with the elapsed time and the last error', async () => {
    const notes = await notesOf(fakeClock(), { attempts: 12, pauseMs: 1000, progressEveryMs: 3000 })
    expect(notes.map((p) => [p.elapsedMs, p.attempt, (p.lastError as Error).message])).toEqual([
      [3000, 4, 'busy'],
      [6000, 7, 'busy'],
      [9000, 10, 'busy']
    ])
  })

  it('writes a note that falls due during a long pause on time, not at the next attempt', async () => {
    const clock = fakeClock()
    const notes = await notesOf(clock, { attempts: 4, pauseMs: 5000, progressEveryMs: 3000 })
    expect(notes.map((p) => [p.elapsedMs, p.attempt])).toEqual([
      [3000, 1],
      [6000, 2],
      [9000, 2],
      [12000, 3]
    ])
    // The pauses add up to the same schedule: attempts still start every 5 s.
    expect(clock.pauses).toEqual([3000, 2000, 1000, 3000, 1000, 2000, 3000])
  })

  it('with progressEveryMs 0 writes a note at every retry and still ends (no endless split of the pause)', async () => {
    const clock = fakeClock()
    const notes = await notesOf(clock, { attempts: 4, pauseMs: 1000, progressEveryMs: 0 })
    expect(notes.map((p) => p.attempt)).toEqual([1, 2, 3])
    expect(clock.pauses).toEqual([1000, 1000, 1000])
  })

  it('stops at once when the signal fires in a pause split by a note, with the signal reason', async () => {
    const ac = new AbortController()
    const reason = new Error('cancelled by SIGTERM')
    const clock = fakeClock()
    const sleep = clock.sleep.bind(clock)
    // The pause is split at the note due at 3 s; the signal fires during its second part.
    clock.sleep = async (ms, signal) => {
      if (clock.pauses.length === 1) ac.abort(reason)
      return sleep(ms, signal)
    }
    const notes: number[] = []
    let n = 0
    const err = await retry(
      async () => {
        n++
        throw new Error('busy')
      },
      {
        attempts: 5,
        minDelayMs: 5000,
        maxDelayMs: 5000,
        jitter: false,
        clock,
        signal: ac.signal,
        progressEveryMs: 3000,
        onProgress: (p) => notes.push(p.elapsedMs)
      }
    ).catch((e: Error) => e)
    expect(err).toBe(reason)
    expect(notes).toEqual([3000]) // positive control: the pause was split by the note
    expect(clock.pauses).toEqual([3000])
    expect(n).toBe(1)
  })

  it('stops at once when the signal fires during a pause, with the signal reason', async () => {
    const ac = new AbortController()
    const reason = new Error('cancelled by SIGINT')
    const clock = fakeClock()
    clock.sleep = async (ms, signal) => {
      clock.pauses.push(ms)
      ac.abort(reason)
      if (signal?.aborted) throw signal.reason
    }
    const fn = jest.fn(async () => {
      throw new Error('down')
    })
    await expect(retry(fn, { attempts: 10, clock, signal: ac.signal })).rejects.toBe(reason)
    expect(fn).toHaveBeenCalledTimes(1)
    expect(clock.pauses).toHaveLength(1)
  })
})

describe('waitUntil', () => {
  it('returns the first value the probe gives, polling with growing pauses', async () => {
    const clock = fakeClock()
    let n = 0
    const v = await waitUntil(async () => (++n === 4 ? 'ready' : undefined), {
      timeoutMs: 60_000,
      minDelayMs: 50,
      factor: 2,
      jitter: false,
      clock,
      onTimeout: () => new Error('late')
    })
    expect(v).toBe('ready')
    expect(clock.pauses).toEqual([50, 100, 200])
  })

  it('throws the onTimeout error at the deadline, with the elapsed time', async () => {
    const clock = fakeClock()
    const err = (await waitUntil(async () => undefined, {
      timeoutMs: 5000,
      minDelayMs: 1000,
      maxDelayMs: 1000,
      jitter: false,
      clock,
      onTimeout: (ms) => new Error(`not up after ${ms} ms`)
    }).catch((e: Error) => e)) as Error
    expect(err.message).toBe('not up after 5000 ms')
  })

  it('rethrows a probe error at once unless it is transient', async () => {
    const clock = fakeClock()
    const fatal = new Error('host key mismatch')
    let n = 0
    await expect(
      waitUntil(
        async () => {
          n++
          throw fatal
        },
        { timeoutMs: 5000, clock, onTimeout: () => new Error('late') }
      )
    ).rejects.toBe(fatal)
    expect(n).toBe(1)
    expect(clock.pauses).toEqual([])
  })

  it('polls through transient probe errors and hands the last one to onTimeout', async () => {
    const clock = fakeClock()
    let n = 0
    const err = await waitUntil(
      async () => {
        throw new Error(`refused ${++n}`)
      },
      {
        timeoutMs: 2000,
        minDelayMs: 500,
        maxDelayMs: 500,
        jitter: false,
        clock,
        transient: (e) => /refused/.test((e as Error).message),
        onTimeout: (_ms, last) => new Error(`gave up: ${(last as Error).message}`)
      }
    ).catch((e: Error) => e)
    expect(n).toBe(5)
    expect(err.message).toBe('gave up: refused 5')
  })

  it('ends after `attempts` polls when no timeout is given', async () => {
    const clock = fakeClock()
    let n = 0
    await expect(
      waitUntil(
        async () => {
          n++
          return undefined
        },
        { attempts: 3, minDelayMs: 10, clock, onTimeout: () => new Error('still running') }
      )
    ).rejects.toThrow('still running')
    expect(n).toBe(3)
  })

  it('passes progress notes without the internal not-yet marker', async () => {
    const clock = fakeClock()
    const seen: unknown[] = []
    await waitUntil(async () => undefined, {
      timeoutMs: 4000,
      minDelayMs: 1000,
      maxDelayMs: 1000,
      jitter: false,
      progressEveryMs: 1000,
      clock,
      onProgress: (p) => seen.push(p.lastError),
      onTimeout: () => new Error('late')
    }).catch(() => undefined)
    expect(seen.length).toBeGreaterThan(0)
    expect(seen.every((e) => e === undefined)).toBe(true)
  })

  it('rejects with the signal reason, not a timeout, when cancelled', async () => {
    const ac = new AbortController()
    const reason = new Error('cancelled by SIGTERM')
    const clock = fakeClock()
    let n = 0
    const p = waitUntil(
      async () => {
        if (++n === 3) ac.abort(reason)
        return undefined
      },
      { timeoutMs: 60_000, clock, signal: ac.signal, onTimeout: () => new Error('late') }
    )
    await expect(p).rejects.toBe(reason)
    expect(n).toBe(3)
  })
})
