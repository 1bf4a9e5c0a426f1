// Waiting in tests for something to happen, instead of sleeping a fixed time and hoping it did.
// Both clear their timers, so a finished test leaves nothing that holds Jest open.
import { readFileSync } from 'node:fs'

/**
 * Polls cond every everyMs until it is true or timeoutMs have passed; true if it became true.
 * The caller asserts on what it waited for afterwards, so a timeout fails with the real values.
 */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return true
    const left = deadline - Date.now()
    if (left <= 0) return false
    await new Promise((r) => setTimeout(r, Math.min(everyMs, left)))
  }
}

/** The first value fn gives other than undefined, polled as waitUntil polls; undefined at the deadline. */
export async function valueWithin<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
  everyMs = 50
): Promise<T | undefined> {
  let v: T | undefined
  await waitUntil(async () => (v = await fn()) !== undefined, timeoutMs, everyMs)
  return v
}

/** True if p settles (either way) within ms; the deadline timer is cleared as soon as it does. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const settled = p.then(
    () => true,
    () => true
  )
  try {
    return await Promise.race([settled, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** Whether `pid` is a live process (a zombie left for its reaper is not). */
export function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'latin1'))
  } catch {
    return false
  }
}
