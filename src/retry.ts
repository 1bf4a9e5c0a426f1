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
        throw err
      }
    },
    {
      retries: Math.max(0, opts.attempts - 1),
      minTimeout: opts.minDelayMs ?? 200,
      maxTimeout: opts.maxDelayMs ?? 5000,
      factor: 2,
      randomize: true,
      onFailedAttempt: (e) => opts.onRetry?.(e, e.attemptNumber)
    }
  ).catch((e: unknown) => {
    // p-retry wraps non-retryable errors in AbortError; unwrap so callers see the original.
    const orig = (e as { originalError?: unknown }).originalError
    throw orig ?? e
  })
}

/** Sleeps unless the signal fires first (then rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
