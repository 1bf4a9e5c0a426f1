// The project's one wait/retry primitive. Every retried operation and every poll goes through
// `retry` or `waitUntil`, so backoff, jitter, deadlines, cancellation and progress notes behave the
// same everywhere, and tests can run them on a fake clock.
//
// p-retry counts attempts, classifies failures and carries the last error. The pause between
// attempts is slept here, on the injected clock: p-retry 4's own timer can neither be cut short by
// an AbortSignal nor replaced in tests (its successors that can are ESM-only, which this Jest
// setup cannot load).
import pRetry, { AbortError } from 'p-retry'
import { monoMs } from './mono-clock'

export interface Clock {
  now(): number
  /** Resolves after `ms`, or rejects when the signal fires first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

export interface ProgressNote {
  elapsedMs: number
  /** Attempts made so far. */
  attempt: number
  lastError: unknown
}

export interface RetryOptions {
  /** Upper bound on attempts, the first included. Default: unbounded when `deadlineMs` is set, else 3. */
  attempts?: number
  /** First pause; each further pause is `factor` times longer, up to `maxDelayMs`. */
  minDelayMs?: number
  maxDelayMs?: number
  factor?: number
  /** Each pause is drawn from [d/2, d] so that many waiters do not move in step. Default true. */
  jitter?: boolean
  /** No new attempt starts after this much time; the last pause is cut to end at the deadline. */
  deadlineMs?: number
  signal?: AbortSignal
  /** Return false for errors that must not be retried (they are rethrown at once). Default: all retried. */
  retryable?: (err: unknown) => boolean
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void
  /** Called every `progressEveryMs` while retrying (on time, also during a long pause): "still waiting" lines. */
  onProgress?: (p: ProgressNote) => void
  progressEveryMs?: number
  clock?: Clock
  /** When the wait began, if before this call (the deadline counts from it); default now. */
  startedAt?: number
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(`aborted (${String(signal.reason)})`)
}

/** Rejects with the signal's reason once it fires (at once if it has): the losing side of a race with work. */
export function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) return reject(abortReason(signal))
    signal.addEventListener('abort', () => reject(abortReason(signal)), { once: true })
  })
}

/**
 * `work`, or a rejection with `reason` (by default the cancel's own) as soon as `signal` fires; a
 * value `work` gives after that goes to `late` (a connection to close). For work that does not heed
 * a signal itself.
 */
export function unlessCancelled<T>(
  work: Promise<T>,
  signal: AbortSignal,
  late: (v: T) => unknown = () => undefined,
  reason: (signal: AbortSignal) => Error = abortReason
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let over = false
    const onAbort = (): void => {
      over = true
      reject(reason(signal))
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        if (!over) {
          over = true
          return resolve(v)
        }
        void Promise.resolve()
          .then(() => late(v))
          .catch(() => undefined)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        if (over) return
        over = true
        reject(e)
      }
    )
  })
}

/** Sleeps unless the signal fires first (then rejects with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal))
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(abortReason(signal!))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

// Elapsed time on the monotonic clock: a wall clock stepped forward mid-wait (NTP, a resumed VM)
// would end a wait at once, and one stepped back would stretch it (and its deadline) by the step.
export const systemClock: Clock = { now: monoMs, sleep }

/** The pause after failed attempt `n` (1-based), before jitter. */
export function backoff(n: number, o: Pick<RetryOptions, 'minDelayMs' | 'maxDelayMs' | 'factor'>): number {
  return Math.min(o.maxDelayMs ?? 5000, (o.minDelayMs ?? 200) * (o.factor ?? 2) ** (n - 1))
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const clock = opts.clock ?? systemClock
  const started = opts.startedAt ?? clock.now()
  const attempts = opts.attempts ?? (opts.deadlineMs !== undefined ? Infinity : 3)
  const everyMs = opts.progressEveryMs ?? 10_000
  let lastNote = started
  return pRetry(
    async (attempt) => {
      if (opts.signal?.aborted) throw new AbortError(abortReason(opts.signal))
      try {
        return await fn(attempt)
      } catch (err) {
        if (opts.retryable && !opts.retryable(err)) throw new AbortError(asError(err))
        // p-retry 4 never retries a TypeError ("fetch failed"): the classifier decides, not the type.
        throw Object.assign(new Error(asError(err).message), { wrapped: err })
      }
    },
    {
      // Bounded attempts are p-retry's count; unbounded ones end at the deadline (below).
      ...(Number.isFinite(attempts) ? { retries: Math.max(0, attempts - 1) } : { retries: 1, forever: true }),
      minTimeout: 0,
      maxTimeout: 0,
      onFailedAttempt: async (e) => {
        const err = (e as { wrapped?: unknown }).wrapped ?? e
        const n = e.attemptNumber
        if (n >= attempts) return
        let delay = backoff(n, opts)
        if (opts.jitter !== false) delay = delay / 2 + (delay / 2) * Math.random()
        const elapsed = clock.now() - started
        if (opts.deadlineMs !== undefined) {
          if (elapsed >= opts.deadlineMs) throw new AbortError(asError(err))
          delay = Math.min(delay, opts.deadlineMs - elapsed)
        }
        opts.onRetry?.(err, n, delay)
        const note = (): void => {
          lastNote = clock.now()
          opts.onProgress!({ elapsedMs: lastNote - started, attempt: n, lastError: err })
        }
        if (opts.onProgress && clock.now() - lastNote >= everyMs) note()
        // A note that falls due during the pause is written on time: waiting for the next attempt
        // could put it past the deadline (long pauses, a slow attempt on a loaded machine).
        let left = delay
        let due = Math.max(0, lastNote + everyMs - clock.now())
        while (opts.onProgress && everyMs > 0 && due < left) {
          await clock.sleep(due, opts.signal)
          left -= due
          note()
          due = everyMs
        }
        await clock.sleep(left, opts.signal)
      }
    }
  ).catch((e: unknown) => {
    // p-retry wraps what ends the retries in AbortError; callers see the original error.
    const orig = (e as { originalError?: unknown }).originalError ?? e
    throw (orig as { wrapped?: unknown }).wrapped ?? orig
  })
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : Object.assign(new Error(String(err)), { wrapped: err })
}

class NotYet extends Error {}

export interface WaitOptions extends Omit<RetryOptions, 'retryable' | 'deadlineMs'> {
  /** How long to wait in all (required unless `attempts` bounds the wait). */
  timeoutMs?: number
  /** The error thrown when time or attempts run out; `last` is the last transient error, if any. */
  onTimeout: (elapsedMs: number, last: unknown) => Error
  /** Errors the probe throws are final unless this says they are transient (then polled again). */
  transient?: (err: unknown) => boolean
}

/**
 * Polls `probe` until it returns a value other than `undefined`. Between polls the pause grows as
 * for `retry`; a probe error is final unless `transient` says otherwise.
 */
export async function waitUntil<T>(probe: (attempt: number) => Promise<T | undefined>, opts: WaitOptions): Promise<T> {
  const clock = opts.clock ?? systemClock
  const started = clock.now()
  const transient = (e: unknown): boolean => e instanceof NotYet || (opts.transient?.(e) ?? false)
  try {
    return await retry(
      async (attempt) => {
        const v = await probe(attempt)
        if (v === undefined) throw new NotYet('not yet')
        return v
      },
      {
        ...opts,
        deadlineMs: opts.timeoutMs,
        retryable: transient,
        clock,
        startedAt: started,
        onProgress:
          opts.onProgress && ((p) => opts.onProgress!({ ...p, lastError: p.lastError instanceof NotYet ? undefined : p.lastError }))
      }
    )
  } catch (e) {
    if (opts.signal?.aborted) throw e
    if (transient(e)) throw opts.onTimeout(clock.now() - started, e instanceof NotYet ? undefined : e)
    throw e
  }
}

/** Whether `p` settles (either way) within `ms`; the timer does not outlive the answer. */
export async function settlesWithin(p: Promise<unknown>, ms: number, clock: Clock = systemClock): Promise<boolean> {
  const stop = new AbortController()
  const settled = p.then(
    () => true,
    () => true
  )
  const late = clock.sleep(ms, stop.signal).then(
    () => false,
    () => true
  )
  try {
    return await Promise.race([settled, late])
  } finally {
    stop.abort()
  }
}
