// Writes and deletes under a root (the runner's `_work`) at paths the VM chose, never through a
// symlink. Every folder on the way is checked with lstat and must be a real directory. The job's
// code runs on the VM, not on the runner host, so nothing swaps a folder for a symlink between the
// check and the write here: an lstat per component is enough (no openat-style walk needed).
import { randomBytes } from 'node:crypto'
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type Stats
} from 'node:fs'
import { posix } from 'node:path'
import { HookError } from '../errors'

/** A path would be written or deleted through something that is not a real directory. */
export class UnsafePathError extends HookError {}

const MAX_PATH = 4096
const MAX_NAME = 255

/** Why `p` is not a plain relative path (no `..`, `.` or empty components), or null when it is. */
export function badRelPath(p: string): string | null {
  if (p === '') return 'empty'
  if (p.includes('\0')) return 'contains NUL'
  if (p.startsWith('/')) return 'absolute'
  if (Buffer.byteLength(p) > MAX_PATH) return `longer than ${MAX_PATH} bytes`
  for (const c of p.split('/')) {
    if (c === '') return 'empty component'
    if (c === '.' || c === '..') return `"${c}" component`
    if (Buffer.byteLength(c) > MAX_NAME) return `a name longer than ${MAX_NAME} bytes`
  }
  return null
}

function checked(rel: string): string {
  const bad = badRelPath(rel)
  if (bad) throw new UnsafePathError(`refusing path ${JSON.stringify(rel.slice(0, 200))}: ${bad}`)
  return rel
}

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return null
    throw e
  }
}

/**
 * The absolute folder that holds `rel`, after checking that every folder above it is a real
 * directory. With `create`, missing ones are made; without, a missing one gives null (nothing there).
 */
function parentOf(root: string, rel: string, create: boolean): string | null {
  const parts = checked(rel).split('/')
  let dir = root
  for (let i = 0; i < parts.length - 1; i++) {
    dir = `${dir}/${parts[i]}`
    const st = lstatOrNull(dir)
    if (!st) {
      if (!create) return null
      mkdirSync(dir, { mode: 0o755 })
      continue
    }
    if (st.isDirectory()) continue
    const what = st.isSymbolicLink() ? 'a symlink' : 'not a folder'
    if (!create && !st.isSymbolicLink()) return null
    throw new UnsafePathError(`refusing ${JSON.stringify(rel)}: ${JSON.stringify(parts.slice(0, i + 1).join('/'))} is ${what} on the runner host`)
  }
  return dir
}

/** Clears the final name for a new entry: a real folder there is removed (rm does not follow symlinks). */
function clearDir(path: string): void {
  if (lstatOrNull(path)?.isDirectory()) rmSync(path, { recursive: true, force: true })
}

function tempName(dir: string): string {
  return `${dir}/.rch-${randomBytes(6).toString('hex')}.tmp`
}

export interface FileWriter {
  write(chunk: Buffer): void
  /** Sets mode and mtime, renames over the final name; returns the written file's stats. */
  finish(): Stats
  /** Drops the temporary file. */
  abort(): void
}

/**
 * A new regular file at `rel`, written to a fresh name in its folder and renamed over the final
 * name at the end: rename replaces a symlink there instead of writing through it.
 */
export function openFile(root: string, rel: string, mode: number, mtimeSec: number): FileWriter {
  const dir = parentOf(root, rel, true)!
  const final = `${root}/${rel}`
  const tmp = tempName(dir)
  const fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_WRONLY, 0o600)
  let open = true
  const close = (): void => {
    if (open) closeSync(fd)
    open = false
  }
  return {
    write(chunk) {
      let off = 0
      while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off)
    },
    finish() {
      try {
        // 0o777: no setuid, setgid or sticky bit from the VM.
        fchmodSync(fd, mode & 0o777)
        futimesSync(fd, mtimeSec, mtimeSec)
        const st = fstatSync(fd)
        close()
        clearDir(final)
        renameSync(tmp, final)
        return st
      } catch (e) {
        this.abort()
        throw e
      }
    },
    abort() {
      close()
      rmSync(tmp, { force: true })
    }
  }
}

/** Whether a symlink at `rel` pointing to `target` would leave the root (resolved lexically from its folder). */
export function symlinkEscapes(rel: string, target: string): boolean {
  if (target === '' || target.startsWith('/') || target.includes('\0')) return true
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target))
  return resolved === '..' || resolved.startsWith('../') || resolved.startsWith('/')
}

/** Creates the symlink unless its target is absolute or leaves the root; false when refused (nothing created). */
export function makeSymlink(root: string, rel: string, target: string): boolean {
  checked(rel)
  if (symlinkEscapes(rel, target)) return false
  const dir = parentOf(root, rel, true)!
  const final = `${root}/${rel}`
  const tmp = tempName(dir)
  symlinkSync(target, tmp)
  try {
    clearDir(final)
    renameSync(tmp, final)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw e
  }
  return true
}

/** A real folder at `rel` (whatever else is there is removed first). */
export function makeDir(root: string, rel: string): void {
  const dir = parentOf(root, rel, true)!
  const final = `${dir}/${posix.basename(rel)}`
  const st = lstatOrNull(final)
  if (st?.isDirectory()) return
  if (st) unlinkSync(final)
  mkdirSync(final, { mode: 0o755 })
}

/** Sets a folder's mode (always keeping the owner's rwx, so later copies can write into it). */
export function setDirMode(root: string, rel: string, mode: number): void {
  const dir = parentOf(root, rel, false)
  if (!dir) return
  let fd: number
  try {
    fd = openSync(`${root}/${rel}`, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
  } catch {
    return // gone or no longer a folder: nothing to set
  }
  try {
    fchmodSync(fd, (mode & 0o777) | 0o700)
  } finally {
    closeSync(fd)
  }
}

/** Removes `rel` (a folder with its contents); a symlink is removed, never followed. False when nothing was there. */
export function removeUnder(root: string, rel: string): boolean {
  const dir = parentOf(root, rel, false)
  if (!dir) return false
  const final = `${root}/${rel}`
  const st = lstatOrNull(final)
  if (!st) return false
  if (st.isDirectory()) rmSync(final, { recursive: true, force: true })
  else unlinkSync(final)
  return true
}
