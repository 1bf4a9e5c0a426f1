// The hook's private folders and files on the runner host (agent sockets, per-job keys, sync bases,
// logs). They live under a shared TMPDIR, so another local user could create one of them first
// and catch what the hook sends there: a folder is used only if it is a real directory of this
// user with no group/other access, and files in it are created without following symlinks.
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeSync,
  type Stats
} from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { errnoOf, HookError } from './errors'

const DEFAULT_HINT = 'set TMPDIR to a private folder'

/** lstat check of a folder the hook keeps private: false when it does not exist, an error when it is not ours alone. */
export function checkPrivateDir(path: string, hint = DEFAULT_HINT): boolean {
  let st
  try {
    st = lstatSync(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new HookError(`private folder ${path} cannot be checked (${errnoOf(e)}); ${hint}`)
  }
  const me = process.geteuid?.() ?? 0
  let why: string | null = null
  if (st.isSymbolicLink()) why = 'is a symlink: another local user may be trying to intercept the hook'
  else if (!st.isDirectory()) why = 'is not a folder'
  else if (st.uid !== me) why = `is owned by uid ${st.uid}, not ${me}: another local user may be trying to intercept the hook`
  else if (st.mode & 0o077) why = `is open to other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, must be 0700)`
  if (why) throw new HookError(`private folder ${path} ${why}; ${hint}`)
  checkAncestors(path, me, hint)
  return true
}

/**
 * The folders above a private one: a checked folder is only as private as its place. Where another
 * user may rename entries (a folder writable by all without the sticky bit, or owned by someone
 * else), they could move ours away after the check and put their own in its place. Like OpenSSH's
 * StrictModes: each folder must be owned by root or this user, and writable by all only when
 * sticky (as /tmp). A group-writable one is accepted: its group is the administrator's choice
 * (Ubuntu's /var/log is root:syslog 0775). The path is resolved by hand, so every folder it goes
 * through is checked: those as written, those that hold a symlink on it (and the symlink's owner),
 * and those its targets go through.
 */
function checkAncestors(path: string, me: number, hint: string): void {
  const fail = (dir: string, why: string): never => {
    throw new HookError(`private folder ${path}: ${dir} ${why}; ${hint}`)
  }
  const check = (dir: string, st: Stats): void => {
    if (st.uid !== 0 && st.uid !== me) fail(dir, `is owned by uid ${st.uid}, who could replace what is in it`)
    if (st.mode & 0o002 && !(st.mode & 0o1000))
      fail(
        dir,
        `is writable by all users without the sticky bit (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}), so any of them could replace what is in it`
      )
  }
  const todo = resolve(dirname(path)).split('/').filter(Boolean)
  let cur = '/'
  check(cur, lstatSync(cur))
  let links = 0
  while (todo.length) {
    const name = todo.shift()!
    if (name === '.') continue
    if (name === '..') {
      cur = dirname(cur) // cur is a real folder here: its parent was checked on the way in
      continue
    }
    const next = join(cur, name)
    let st: Stats
    try {
      st = lstatSync(next)
    } catch (e) {
      // What is missing is created by ensurePrivateDir, below the folders checked so far.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
      return fail(next, `cannot be checked (${errnoOf(e)})`)
    }
    if (st.isSymbolicLink()) {
      if (++links > 40) fail(next, 'is one symlink too many (a loop?)')
      // Its folder was checked; in a sticky one its owner could still replace it.
      if (st.uid !== 0 && st.uid !== me) fail(next, `is a symlink owned by uid ${st.uid}, who could point it elsewhere`)
      const target = readlinkSync(next)
      if (target.startsWith('/')) cur = '/'
      todo.unshift(...target.split('/').filter(Boolean))
      continue
    }
    if (!st.isDirectory()) fail(next, 'is not a folder')
    check(next, st)
    cur = next
  }
}

/** The check ensurePrivateDir makes of a missing folder's place before it creates it: throws what it would. */
export function checkPrivatePlace(path: string, hint = DEFAULT_HINT): void {
  checkAncestors(path, process.geteuid?.() ?? 0, hint)
}

/** The folder, created 0700 if missing, else checked; nothing is read from or written to it unless this passes. */
export function ensurePrivateDir(path: string, hint = DEFAULT_HINT): string {
  if (checkPrivateDir(path, hint)) return path
  checkPrivatePlace(path, hint)
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new HookError(`cannot create private folder ${path} (${errnoOf(e)}); ${hint}`)
  }
  // Also catches a folder someone else made between the check and the mkdir.
  checkPrivateDir(path, hint)
  return path
}

const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
let seq = 0

/**
 * Writes a 0600 file: a fresh name opened O_EXCL|O_NOFOLLOW, then renamed over `path` (a rename
 * replaces a symlink, never follows it). `durable`: the data reaches the disk before the rename and
 * the rename before the return, so a power loss leaves the old file or the new one, never an empty
 * one (some file systems may otherwise keep the rename and lose the data).
 */
export function writePrivateFile(path: string, data: string | Buffer, opts: { durable?: boolean } = {}): void {
  const tmp = `${path}.${process.pid}-${Date.now().toString(36)}-${(seq++).toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`
  const fd = openSync(tmp, CREATE_NEW, 0o600)
  // Closed once only: in the agent another open (a step's response file) may get the same number
  // right after, and a second close would close that one.
  let open = true
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off)
    if (opts.durable) syncFd(fd)
    open = false
    closeSync(fd)
    renameSync(tmp, path)
    if (opts.durable) syncFolder(dirname(path))
  } catch (e) {
    if (open) closeSync(fd)
    rmSync(tmp, { force: true })
    throw e
  }
}

/** Makes a folder's entries (a rename, a new file) durable. */
export function syncFolder(path: string): void {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    syncFd(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * fsync, where the file system has it: some (network and FUSE ones) refuse it for a folder or at all
 * (EINVAL, ENOTSUP), and a write there stands as it did before syncs were asked for.
 */
export function syncFd(fd: number): void {
  try {
    fsyncSync(fd)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e
  }
}

/** A new 0600 file in a checked private folder, for appending: fails if the name exists in any form (file, link, symlink). */
export function createPrivateAppend(path: string): number {
  return openSync(path, CREATE_NEW | constants.O_APPEND, 0o600)
}

/** A 0600 file in a checked private folder, opened for appending without following a symlink. */
export function openPrivateAppend(path: string, readable = false): number {
  const fd = openSync(
    path,
    (readable ? constants.O_RDWR : constants.O_WRONLY) | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
    0o600
  )
  if (!fstatSync(fd).isFile()) {
    closeSync(fd)
    throw new HookError(`${path} is not a regular file`)
  }
  return fd
}
