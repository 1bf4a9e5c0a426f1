// The job's agent renews its pool member's lease every third of lease.ttlSeconds. A network stall
// must not let the lease lapse while the connection (which now survives 90 s of silence) lives on:
// a failed renewal is tried again within seconds, and once the lease has gone a whole ttl without
// a renewal it counts as lost (another job may take the machine) and the job's steps are stopped.
import { PassThrough } from 'node:stream'
import { keepAlive, type LeaseState } from '../../src/remote/agent'
import type { ExecChannel, Remote } from '../../src/remote/remote'

const TTL = 120_000
const EVERY = TTL / 3

/**
 * One renewal's exec channel, answered when `answer` is called: the lease script's record `word`
 * (`renewed`, `lost`), or a failed command (null).
 */
function renewal(cmd: string): { channel: ExecChannel; answer(word: string | null): void } {
  const stdout = new PassThrough()
  let exit!: (s: { code: number; signal: null }) => void
  const done = new Promise<{ code: number; signal: null }>((r) => (exit = r))
  const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(cmd)?.[1]
  return {
    channel: { stdin: new PassThrough(), stdout, stderr: new PassThrough(), done },
    answer: (word) => {
      stdout.end(word === null ? '' : `RCH-BEGIN-${nonce}\0${word}\0RCH-END-${nonce}\0`)
      exit({ code: word === null ? 1 : 0, signal: null })
    }
  }
}

/** A member whose renewals answer `renewed` at once, except while `stalled` (then nothing comes back). */
function member(): Remote & { stalled: boolean; renewals: number[] } {
  const m = {
    stalled: false,
    renewals: [] as number[],
    openExec: async (cmd: string): Promise<ExecChannel> => {
      const r = renewal(cmd)
      if (!m.stalled) {
        m.renewals.push(Date.now())
        setImmediate(() => r.answer('renewed'))
      }
      return r.channel
    },
    openSocket: () => Promise.reject(new Error('no')),
    close: () => undefined
  }
  return m
}

beforeEach(() => jest.useFakeTimers())
afterEach(() => jest.useRealTimers())

/**
 * A keeper of `m`'s lease. Its clock for the lease's age is the fake timers' plus `suspend(ms)`: time
 * the runner host spent suspended, when timers stand still and the member's clock does not.
 */
function keep(
  m: Remote,
  log: (line: string) => void = () => undefined,
  /** How long before the keeper's start the lease was last renewed (or granted), as its starter knew. */
  renewedAgo?: number
): { state: LeaseState; lostAt: () => number | null; stop(): void; suspend(ms: number): void; tried(): boolean; first: Promise<void> } {
  const state: LeaseState = { lost: null, failing: null }
  let lostAt: number | null = null
  let suspended = 0
  const t0 = Date.now()
  const k = keepAlive(
    { command: 'renew', everyMs: EVERY, ttlMs: TTL, renewedAt: renewedAgo === undefined ? undefined : t0 - renewedAgo, worker: null },
    m,
    log,
    () => undefined,
    state,
    () => {
      lostAt = Date.now() - t0
    },
    () => Date.now() + suspended
  )
  return {
    state,
    lostAt: () => lostAt,
    stop: () => k.stop(),
    suspend: (ms) => void (suspended += ms),
    tried: () => k.tried(),
    first: k.first
  }
}

test('a 55-second stall: the failed renewal is tried again within seconds, and the lease never lapses', async () => {
  const m = member()
  const t0 = Date.now()
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(30_000)
  m.stalled = true
  await jest.advanceTimersByTimeAsync(55_000)
  m.stalled = false
  await jest.advanceTimersByTimeAsync(60_000)
  k.stop()
  expect(k.lostAt()).toBeNull()
  expect(k.state).toMatchObject({ lost: null, failing: null })
  // The first renewal after the stall came within seconds of its end (at 85 s), not at the next period (120 s).
  const after = m.renewals.map((t) => t - t0).filter((t) => t >= 85_000)
  expect(after[0]).toBeLessThan(95_000)
  // And no renewal gap reached the ttl.
  const at = [0, ...m.renewals.map((t) => t - t0)]
  expect(Math.max(...at.slice(1).map((t, i) => t - at[i]))).toBeLessThan(TTL)
})

test('a stall past the ttl: the lease counts as lost once a whole ttl went without a renewal', async () => {
  const m = member()
  const k = keep(m)
  m.stalled = true
  await jest.advanceTimersByTimeAsync(TTL - 5_000)
  expect(k.lostAt()).toBeNull()
  expect(k.state.failing).toMatch(/^renewing this machine's lease failed at /)
  await jest.advanceTimersByTimeAsync(20_000)
  k.stop()
  expect(k.lostAt()).toBeGreaterThanOrEqual(TTL)
  expect(k.lostAt()).toBeLessThan(TTL + 15_000)
  expect(k.state.lost).toBe("this machine's lease lapsed: not renewed for 120 s; another job may hold the machine now")
})

test('after a lapse no renewal goes out any more (another job may hold the machine)', async () => {
  const m = member()
  m.stalled = true
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(TTL + 15_000)
  expect(k.lostAt()).not.toBeNull()
  m.stalled = false
  await jest.advanceTimersByTimeAsync(2 * TTL)
  k.stop()
  expect(m.renewals).toEqual([])
  expect(k.state.lost).toMatch(/lease lapsed/)
})

test('the first renewal goes out as the keeper starts, not a period later (the grant came earlier)', async () => {
  const m = member()
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(0)
  expect(m.renewals).toHaveLength(1)
  await jest.advanceTimersByTimeAsync(EVERY)
  expect(m.renewals).toHaveLength(2)
  k.stop()
})

test("a runner host suspended for longer than the ttl: lost before the next step (the keeper's timers stood still), and no renewal goes out", async () => {
  const m = member()
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(10_000)
  expect(m.renewals).toHaveLength(1)
  k.suspend(TTL)
  // Back from the suspend: what the agent asks before a step starts.
  k.state.check?.()
  expect(k.state.lost).toBe("this machine's lease lapsed: not renewed for 120 s; another job may hold the machine now")
  expect(k.lostAt()).toBe(10_000)
  await jest.advanceTimersByTimeAsync(2 * EVERY)
  expect(m.renewals).toHaveLength(1)
  k.stop()
})

test('control: a suspend that ends before the next tick would come past the ttl loses nothing, and that tick renews', async () => {
  const m = member()
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(10_000)
  // Renewed at 0; the next tick (40 s on the timers) comes at 100 s by the member's clock, before its 120 s.
  k.suspend(60_000)
  k.state.check?.()
  expect(k.state.lost).toBeNull()
  await jest.advanceTimersByTimeAsync(EVERY)
  expect(m.renewals).toHaveLength(2)
  expect(k.lostAt()).toBeNull()
  k.stop()
})

test("a suspend met by the keeper's own tick (no step started): lost at the tick, with no renewal sent", async () => {
  const m = member()
  const k = keep(m)
  await jest.advanceTimersByTimeAsync(10_000)
  k.suspend(TTL)
  await jest.advanceTimersByTimeAsync(EVERY)
  expect(k.state.lost).toMatch(/lease lapsed/)
  expect(m.renewals).toHaveLength(1)
  k.stop()
})

describe('stopped while a renewal is under way', () => {
  type Answer = 'renewed' | 'lost' | 'fails'
  /** A member whose one renewal answers only when `answer` is called. */
  function slow(): Remote & { answer(a: Answer): void; asked: number } {
    let settle: ((a: Answer) => void) | null = null
    const m = {
      asked: 0,
      answer: (a: Answer) => settle?.(a),
      openExec: async (cmd: string): Promise<ExecChannel> => {
        m.asked++
        const r = renewal(cmd)
        settle = (a) => r.answer(a === 'fails' ? null : a)
        return r.channel
      },
      openSocket: () => Promise.reject(new Error('no')),
      close: () => undefined
    }
    return m
  }

  test.each(['fails', 'renewed', 'lost'] as const)(
    'a renewal answering "%s" after the stop arms no retry or lapse, and reports nothing: no timer is left',
    async (a) => {
      const m = slow()
      const k = keep(m)
      await jest.advanceTimersByTimeAsync(0)
      expect(m.asked).toBe(1)
      k.stop()
      m.answer(a)
      await jest.advanceTimersByTimeAsync(0)
      expect(jest.getTimerCount()).toBe(0)
      expect({ lostAt: k.lostAt(), state: k.state }).toMatchObject({ lostAt: null, state: { lost: null, failing: null } })
      // Nor does anything try again later.
      await jest.advanceTimersByTimeAsync(TTL * 2)
      expect(m.asked).toBe(1)
    }
  )

  test.each(['fails', 'lost'] as const)('control: the same renewal answering "%s" before the stop is acted on', async (a) => {
    const m = slow()
    const k = keep(m)
    await jest.advanceTimersByTimeAsync(0)
    m.answer(a)
    await jest.advanceTimersByTimeAsync(6_000)
    if (a === 'fails') {
      // tried again within seconds
      expect(m.asked).toBe(2)
      expect(k.state.failing).toMatch(/^renewing this machine's lease failed at /)
    } else expect(k.lostAt()).not.toBeNull()
    k.stop()
  })
})

test("a member that fails two tries in three, with kilobytes of stderr each, writes a line a minute at most to the agent's log; the lease holds", async () => {
  let tries = 0
  const noisy: Remote = {
    openExec: async (cmd: string): Promise<ExecChannel> => {
      const r = renewal(cmd)
      const ok = ++tries % 3 === 0
      setImmediate(() => {
        if (!ok) (r.channel.stderr as PassThrough).end(`${tries} ${`${'e'.repeat(3000)}\n`.repeat(8)}`)
        r.answer(ok ? 'renewed' : null)
      })
      return r.channel
    },
    openSocket: () => Promise.reject(new Error('no')),
    close: () => undefined
  }
  const logged: string[] = []
  const k = keep(noisy, (l) => void logged.push(l))
  const minutes = 30
  await jest.advanceTimersByTimeAsync(minutes * 60_000)
  k.stop()
  expect(k.lostAt()).toBeNull()
  const failed = logged.filter((l) => l.startsWith("renewing this machine's lease failed"))
  // Control: the failures happened, many more than were said; the first was said, naming the try.
  expect(tries).toBeGreaterThan(4 * minutes)
  expect(failed[0]).toMatch(/failed at .*: renew the lease failed \(exit code 1\)/)
  expect(failed.length).toBeLessThanOrEqual(minutes + 1)
  expect(failed.slice(1).every((l) => / \(and \d+ more failed tries since the last said\)$/.test(l))).toBe(true)
  expect(Math.max(...logged.map((l) => l.length))).toBeLessThan(1200)
  expect(logged).toContain('renewed the lease again after 2 failed tries')
})

// The grant came before the keeper: the acquire's last AWS calls and the agent's own connect lie
// between (each AWS call may be retried for a minute). The lease runs from the grant.
describe('a keeper told when the lease was last renewed counts the ttl from then', () => {
  test('renewed a whole ttl before it started: lost at once, and no renewal goes out (control: a second less, renewed)', async () => {
    const late = member()
    const k = keep(late, undefined, TTL)
    await jest.advanceTimersByTimeAsync(0)
    expect(k.state.lost).toBe("this machine's lease lapsed: not renewed for 120 s; another job may hold the machine now")
    expect(k.lostAt()).toBe(0)
    await jest.advanceTimersByTimeAsync(2 * EVERY)
    expect(late.renewals).toEqual([])
    k.stop()
    const inTime = member()
    const c = keep(inTime, undefined, TTL - 1_000)
    await jest.advanceTimersByTimeAsync(EVERY)
    expect(c.state.lost).toBeNull()
    expect(inTime.renewals).toHaveLength(2)
    c.stop()
  })

  test('renewals stalled from the start: lost a ttl after the last renewal, not a ttl after the keeper began', async () => {
    const m = member()
    m.stalled = true
    const k = keep(m, undefined, TTL - 20_000)
    await jest.advanceTimersByTimeAsync(19_000)
    expect(k.state.lost).toBeNull()
    await jest.advanceTimersByTimeAsync(2_000)
    expect(k.lostAt()).toBe(20_000)
    k.stop()
    // control: with no time given, the ttl runs from the keeper's start
    const n = member()
    n.stalled = true
    const c = keep(n)
    await jest.advanceTimersByTimeAsync(21_000)
    expect(c.state.lost).toBeNull()
    c.stop()
  })
})

// What the agent waits for before it serves a step: the first try's outcome.
describe("the keeper's first try", () => {
  test.each([
    ['renewed', 'renewed', null, undefined],
    ['refused', 'lost', /was not renewed \("lost"\)/, undefined],
    ['failed, told of a renewal a second ago', null, null, 1_000]
  ] as const)('%s: `first` settles once its answer is taken, not before', async (_name, word, lost, renewedAgo) => {
    const answers: ((w: string | null) => void)[] = []
    const m: Remote = {
      openExec: async (cmd: string) => {
        const r = renewal(cmd)
        answers.push((w) => r.answer(w))
        return r.channel
      },
      openSocket: () => Promise.reject(new Error('no')),
      close: () => undefined
    }
    const k = keep(m, undefined, renewedAgo)
    let settled = false
    void k.first.then(() => (settled = true))
    await jest.advanceTimersByTimeAsync(1_000)
    expect({ settled, tried: k.tried(), asked: answers.length }).toEqual({ settled: false, tried: false, asked: 1 })
    answers[0](word)
    await jest.advanceTimersByTimeAsync(0)
    expect({ settled, tried: k.tried() }).toEqual({ settled: true, tried: true })
    if (lost) expect(k.state.lost).toMatch(lost)
    else expect(k.state.lost).toBeNull()
    k.stop()
  })

  // A keeper that knows of no renewal (an agent a step restarted): a failing try may be the new
  // holder's doing, so only an answer or the lapse settles it.
  test('failed, told of no renewal: `first` waits for an answer or the lapse', async () => {
    const m = member()
    m.stalled = true
    const k = keep(m)
    let settled = false
    void k.first.then(() => (settled = true))
    await jest.advanceTimersByTimeAsync(TTL - 5_000)
    expect(k.state.failing).toMatch(/^renewing this machine's lease failed at /)
    expect({ settled, tried: k.tried() }).toEqual({ settled: false, tried: false })
    await jest.advanceTimersByTimeAsync(10_000)
    expect({ settled, tried: k.tried(), lost: k.state.lost }).toEqual({
      settled: true,
      tried: true,
      lost: expect.stringMatching(/lease lapsed/)
    })
    k.stop()
  })

  test('a keeper stopped before any answer settles `first` too (nothing waits for ever)', async () => {
    const m = member()
    m.stalled = true
    const k = keep(m)
    let settled = false
    void k.first.then(() => (settled = true))
    await jest.advanceTimersByTimeAsync(100)
    expect(settled).toBe(false)
    k.stop()
    await jest.advanceTimersByTimeAsync(0)
    expect(settled).toBe(true)
    expect(k.tried()).toBe(false)
  })
})
