// An exclusive lock between processes of one host: a lock file created O_EXCL holding the owner's
// pid and a random token. A lock whose owner died is removed by one breaker at a time (see
// breakStale) and then taken like a free one.
import { closeSync, constants, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { HookError } from '../errors'
import { waitUntil } from '../retry'

/**
 * Whether the lock's owner still runs. The lock lives in a folder private to this user, so only
 * this user's processes take it: a pid we may not signal (EPERM) is another user's process that
 * reused a dead owner's pid, and the lock is stale.
 */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function tryCreate(path: string, token: string): boolean {
  let fd: number
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  }
  try {
    writeSync(fd, `${process.pid} ${token}\n`)
  } finally {
    closeSync(fd)
  }
  return true
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
}

/** A lock file without an owner is one whose creator died before writing its pid; give it time to. */
const UNNAMED_STALE_MS = 5000
function unnamedFor(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ms
  } catch {
    return false
  }
}

/** Moves `path` away if it is still exactly `seen`, and puts it back if it turned out not to be. */
function removeIfStill(path: string, seen: string): void {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`
  try {
    renameSync(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  if (read(aside) !== seen) {
    try {
      linkSync(aside, path)
    } catch {
      // taken again meanwhile: the one displaced is a breaker's guard, held for microseconds
    }
  }
  rmSync(aside, { force: true })
}

/** A lock (or guard) is stale when the pid it names is dead, or, naming none, once it is old. */
function stale(path: string, seen: string): boolean {
  const pid = Number(seen.split(' ')[0])
  return Number.isInteger(pid) && pid > 0 ? !alive(pid) : unnamedFor(path, UNNAMED_STALE_MS)
}

/**
 * Removes the lock at `path` if it is still exactly `seen` (a dead owner's). Breakers take turns
 * through a guard file, and nothing else removes a lock its process did not create, so the lock
 * cannot change between the check and the removal: a live owner's lock is never moved. Only a
 * guard whose breaker died in its few microseconds is moved aside, by compare and put back.
 */
export function breakStale(path: string, seen: string): void {
  const guard = `${path}.break`
  const token = randomBytes(8).toString('hex')
  if (!tryCreate(guard, token)) {
    const g = read(guard)
    if (g !== null && stale(guard, g)) removeIfStill(guard, g)
    return
  }
  try {
    // Judged again as it is now: an owner that has just created its lock and not yet written its pid
    // reads as the same empty text as the dead one's, but its file is new.
    if (read(path) === seen && stale(path, seen)) rmSync(path, { force: true })
  } finally {
    if (read(guard) === `${process.pid} ${token}\n`) rmSync(guard, { force: true })
  }
}

/** Runs `fn` holding the lock at `path`; waits up to `timeoutMs` for it. */
export async function withFileLock<T>(path: string, fn: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const token = randomBytes(8).toString('hex')
  await waitUntil(
    () => {
      if (tryCreate(path, token)) return Promise.resolve(true)
      const seen = read(path)
      if (seen !== null && stale(path, seen)) breakStale(path, seen)
      return Promise.resolve(undefined)
    },
    {
      timeoutMs,
      minDelayMs: 5,
      maxDelayMs: 100,
      onTimeout: () => new HookError(`fleet ledger: lock ${path} still held after ${Math.round(timeoutMs / 1000)} s`)
    }
  )
  try {
    return await fn()
  } finally {
    if (read(path) === `${process.pid} ${token}\n`) rmSync(path, { force: true })
  }
}
