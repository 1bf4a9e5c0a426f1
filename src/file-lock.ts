// An exclusive lock between processes of one host (and between callers in one process, who wait
// for each other as for another process): a lock file created O_EXCL holding the owner's
// pid, a random token and the owner's start time. A lock whose owner died is removed by one breaker
// at a time (see breakStale) and then taken like a free one.
import { closeSync, constants, linkSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { HookError } from './errors'
import { retry, waitUntil } from './retry'
import { isRunning, workerProcess } from './worker-process'

/**
 * Whether the lock's owner still runs. The lock lives in a folder private to this user, so only
 * this user's processes take it: a pid we may not signal (EPERM) is another user's process that
 * reused a dead owner's pid, and the lock is stale. A pid reused by another process of this user
 * (the hooks and agents of the other runners of the host, a runner's own processes) is told apart
 * by its start time, which the lock names; a lock of an older build names none and goes by the pid.
 */
const alive = (pid: number, start: string): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // No start time named (an older build's lock, or a host without /proc): the pid alone decides.
  // isRunning with none would still need /proc to read the pid's, and call every lock stale without it.
  return start === '' || isRunning({ pid, start })
}

/** This process's start time (/proc/self/stat), '' where it cannot be read; looked up once. */
let ownStart: string | undefined
const myStart = (): string => (ownStart ??= workerProcess(process.pid)?.start ?? '')

/**
 * This process's pid namespace (`ns:<inode>`), '' where /proc does not tell. A pid names a process
 * only within its namespace: a lock folder shared by a runner in a container and a process outside
 * it (reap or report on the host, through a volume) would have each judge the other's live lock
 * by a pid that is someone else's there, and break it.
 */
let ownNs: string | undefined
const myNs = (): string => {
  if (ownNs === undefined) {
    try {
      ownNs = `ns:${/^pid:\[([0-9]{1,20})\]$/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? ''}`
      if (ownNs === 'ns:') ownNs = ''
    } catch {
      ownNs = ''
    }
  }
  return ownNs
}

/** What a lock or guard file of this process holds: pid, token, start time, pid namespace. */
const content = (token: string): string => `${[process.pid, token, myStart(), myNs()].filter((f) => f !== '').join(' ')}\n`

/** The pid namespace a lock names when it is not this process's (an older build's lock names none). */
const foreignNs = (seen: string): string | null => {
  const ns = seen
    .trim()
    .split(' ')
    .find((f) => f.startsWith('ns:'))
  return ns !== undefined && myNs() !== '' && ns !== myNs() ? ns : null
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
    writeSync(fd, content(token))
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

/**
 * A lock (or guard) is stale when the process it names is gone (its pid dead, or now another
 * process's), or, naming none, once it is old.
 */
function stale(path: string, seen: string, foreignStaleMs = Infinity): boolean {
  // Its pid means nothing here: from outside its namespace it goes by age alone, and only where the
  // caller knows how long a holder may hold it (withFileLock's foreignStaleMs); else never.
  if (foreignNs(seen)) return unnamedFor(path, foreignStaleMs)
  const [p, , start = ''] = seen.trim().split(' ')
  const pid = Number(p)
  return Number.isInteger(pid) && pid > 0 ? !alive(pid, /^[0-9]{1,20}$/.test(start) ? start : '') : unnamedFor(path, UNNAMED_STALE_MS)
}

/**
 * Removes the lock at `path` if it is still exactly `seen` (a dead owner's). Breakers take turns
 * through a guard file, and nothing else removes a lock its process did not create, so the lock
 * cannot change between the check and the removal: a live owner's lock is never moved. Only a
 * guard whose breaker died in its few microseconds is moved aside, by compare and put back.
 */
export function breakStale(path: string, seen: string, foreignStaleMs = Infinity): void {
  const guard = `${path}.break`
  const token = randomBytes(8).toString('hex')
  if (!tryCreate(guard, token)) {
    const g = read(guard)
    if (g !== null && stale(guard, g, foreignStaleMs)) removeIfStill(guard, g)
    return
  }
  try {
    // Judged again as it is now: an owner that has just created its lock and not yet written its pid
    // reads as the same empty text as the dead one's, but its file is new.
    if (read(path) === seen && stale(path, seen, foreignStaleMs)) rmSync(path, { force: true })
  } finally {
    if (read(guard) === content(token)) rmSync(guard, { force: true })
  }
}

/**
 * Runs `fn` holding the lock at `path`; waits up to `timeoutMs` for it (or until `signal` fires).
 * `what` names the lock in the timeout's error.
 */
export async function withFileLock<T>(
  path: string,
  fn: () => T | Promise<T>,
  timeoutMs = 30_000,
  opts: {
    signal?: AbortSignal
    what?: string
    /** How old a lock from another pid namespace must be to count as its dead holder's (else never). */
    foreignStaleMs?: number
  } = {}
): Promise<T> {
  // A lock this process could not give back (out of descriptors at the time) is taken again as
  // its own: it holds its live pid, which no one else would ever break.
  const kept = unreleased.get(path)
  unreleased.delete(path)
  const token = kept ?? randomBytes(8).toString('hex')
  await waitUntil(
    () => {
      if (kept !== undefined && read(path) === content(kept)) return Promise.resolve(true)
      if (tryCreate(path, token)) return Promise.resolve(true)
      const seen = read(path)
      if (seen !== null && stale(path, seen, opts.foreignStaleMs)) breakStale(path, seen, opts.foreignStaleMs)
      return Promise.resolve(undefined)
    },
    {
      timeoutMs,
      minDelayMs: 5,
      maxDelayMs: 100,
      signal: opts.signal,
      onTimeout: () => {
        const seen = read(path)
        const ns = seen === null ? null : foreignNs(seen)
        return new HookError(
          `${opts.what ?? 'fleet ledger: lock'} ${path} still held after ${Math.round(timeoutMs / 1000)} s` +
            (ns
              ? ` (by pid ${seen!.trim().split(' ')[0]} of another pid namespace, ${ns}: a folder shared with a container or with the processes outside one; whether it still runs cannot be told from here${opts.foreignStaleMs === undefined ? '; remove the file once it does not' : `, so its lock is broken only once ${Math.round(opts.foreignStaleMs / 60_000)} minutes old`})`
              : '')
        )
      }
    }
  )
  try {
    return await fn()
  } finally {
    await release(path, token)
  }
}

/** Locks of this process whose removal failed, by path: their tokens (see withFileLock). */
const unreleased = new Map<string, string>()

/**
 * Removes the lock if it is still this token's. A read or removal that fails (out of descriptors,
 * an I/O error) is tried again a few times; then the lock is kept as this process's, to be taken
 * again by its next withFileLock: not an error that would replace what the work under it returned.
 */
async function release(path: string, token: string): Promise<void> {
  const once = (): Promise<void> => {
    if (read(path) === content(token)) rmSync(path, { force: true })
    return Promise.resolve()
  }
  try {
    await once()
  } catch {
    await retry(once, { attempts: 4, minDelayMs: 20, maxDelayMs: 200 }).catch(() => void unreleased.set(path, token))
  }
}
