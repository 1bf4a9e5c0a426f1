// An exclusive lock between processes of one host: a lock file created O_EXCL holding the owner's
// pid and a random token. A lock whose owner died is taken over: renamed away (only one process
// wins a rename), and put back at once if it turns out to be a live owner's newer lock.
import { closeSync, constants, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { HookError } from '../errors'
import { waitUntil } from '../retry'

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
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

/** Removes the lock at `path` if it is still exactly `seen` (a dead owner's). */
function breakStale(path: string, seen: string): void {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`
  try {
    renameSync(path, aside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  if (read(aside) !== seen) {
    // A live owner's lock, taken between our read and the rename: give it back.
    try {
      linkSync(aside, path)
    } catch {
      // someone else holds a lock now; the displaced owner still believes it holds one, which the
      // ledger tolerates no worse than a crash (its write is a rename of a complete file)
    }
  }
  rmSync(aside, { force: true })
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

/** Runs `fn` holding the lock at `path`; waits up to `timeoutMs` for it. */
export async function withFileLock<T>(path: string, fn: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const token = randomBytes(8).toString('hex')
  await waitUntil(
    () => {
      if (tryCreate(path, token)) return Promise.resolve(true)
      const seen = read(path)
      const pid = Number(seen?.split(' ')[0])
      if (seen !== null && (Number.isInteger(pid) && pid > 0 ? !alive(pid) : unnamedFor(path, UNNAMED_STALE_MS))) breakStale(path, seen)
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
