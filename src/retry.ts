// The project's one retry primitive. Every retried or polled operation goes through it, so
// backoff, jitter, deadlines and cancellation behave the same everywhere.
import pRetry, { AbortError } from 'p-retry'

export interface RetryOptions {
  /** Upper bound on attempts (including the first). */
  attempts: number
  minDelayMs?: number
  maxDelayMs?: number
  /** Stop retrying when this much time has passed since the first attempt. */
  deadlineMs?: number
  signal?: AbortSignal
  /** Return false for errors that must not be retried (they are rethrown at once). */
  retryable?: (err: unknown) => boolean
  onRetry?: (err: unknown, attempt: number) => void
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const started = Date.now()
  return pRetry(
    async (attempt) => {
      if (opts.signal?.aborted) throw new AbortError(opts.signal.reason ?? new Error('aborted'))
      try {
        return await fn(attempt)
      } catch (err) {
        const outOfTime = opts.deadlineMs !== undefined && Date.now() - started >= opts.deadlineMs
        if (outOfTime || (opts.retryable && !opts.retryable(err))) {
          throw new AbortError(err instanceof Error ? err : new Error(String(err)))
        }
        // p-retry 4 never retries a TypeError ("fetch failed"); the classifier decides, not the type.
        throw Object.assign(new Error(err instanceof Error ? err.message : String(err)), { wrapped: err })
      }
    },
    {
      retries: Math.max(0, opts.attempts - 1),
      // The backoff is ours (below), so an abort interrupts the wait, not just the next attempt.
      minTimeout: 0,
      maxTimeout: 0,
      onFailedAttempt: async (e) => {
        opts.onRetry?.((e as { wrapped?: unknown }).wrapped ?? e, e.attemptNumber)
        if (e.retriesLeft <= 0) return
        const base = Math.min(opts.maxDelayMs ?? 5000, (opts.minDelayMs ?? 200) * 2 ** (e.attemptNumber - 1))
        await sleep(base * (1 + Math.random()) / 2 + base / 2, opts.signal)
      }
    }
  ).catch((e: unknown) => {
    // p-retry wraps non-retryable errors in AbortError; unwrap so callers see the original.
    const orig = (e as { originalError?: unknown }).originalError ?? e
    throw (orig as { wrapped?: unknown }).wrapped ?? orig
  })
}

/** Sleeps unless the signal fires first (then rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const reason = (): Error => (signal?.reason instanceof Error ? signal.reason : new Error(`aborted (${String(signal?.reason)})`))
    if (signal?.aborted) return reject(reason())
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(reason())
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
