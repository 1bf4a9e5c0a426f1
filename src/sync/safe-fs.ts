// Writes and deletes under a root (the runner's `_work`) at paths the VM chose, never through a
// symlink. Every folder on the way is checked with lstat and must be a real directory. The job's
// code runs on the VM, not on the runner host, so nothing swaps a folder for a symlink between the
// check and the write here: an lstat per component is enough (no openat-style walk needed), and a
// folder checked once in a pull need not be checked again unless the pull itself replaced it.
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
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
  type Stats
} from 'node:fs'
import { posix } from 'node:path'
import { errnoOf, HookError } from '../errors'
import { KnownFolders } from './known-folders'

/** A path would be written or deleted through something that is not a real directory. */
export class UnsafePathError extends HookError {}

const MAX_PATH = 4096
const MAX_NAME = 255
const DOT = 0x2e
const SLASH = 0x2f

/** Why `p` is not a plain relative path (no `..`, `.` or empty components), or null when it is. */
export function badRelPath(p: string): string | null {
  if (p === '') return 'empty'
  if (p.includes('\0')) return 'contains NUL'
  if (p.startsWith('/')) return 'absolute'
  // A UTF-16 unit is at most 3 bytes of UTF-8: most names need no byte count (listings run this per entry).
  if (p.length * 3 > MAX_PATH && Buffer.byteLength(p) > MAX_PATH) return `longer than ${MAX_PATH} bytes`
  // Components by position, not split(): a listing runs this for every entry.
  for (let start = 0; start <= p.length;) {
    const slash = p.indexOf('/', start)
    const end = slash < 0 ? p.length : slash
    const len = end - start
    if (len === 0) return 'empty component'
    if (len <= 2 && p.charCodeAt(start) === DOT && (len === 1 || p.charCodeAt(start + 1) === DOT))
      return `"${p.slice(start, end)}" component`
    if (len * 3 > MAX_NAME && Buffer.byteLength(p.slice(start, end)) > MAX_NAME) return `a name longer than ${MAX_NAME} bytes`
    start = end + 1
  }
  return null
}

/** Whether a local file operation failed because what it named is not there (no entry, or a path through a file). */
export const isGone = (e: unknown): boolean => {
  const code = (e as NodeJS.ErrnoException | null)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/**
 * A local read that failed: null when what was to be read is gone, or is no longer what was seen
 * (ENOENT, ENOTDIR; ELOOP from O_NOFOLLOW on a link put in its place), else the error to fail with,
 * naming the path. Out of descriptors, an I/O error or a folder not readable must not read as
 * "nothing there": a push would delete on the VM what it could not list, or leave the VM's old
 * copy of what it could not open, recorded as sent.
 */
export function readFailure(path: string, e: unknown): HookError | null {
  const code = (e as NodeJS.ErrnoException).code
  if (isGone(e) || code === 'ELOOP') return null
  return new HookError(`cannot read ${path} on the runner host (${errnoOf(e)}); nothing is sent or removed for it`)
}

/** Whether the relative path `p` is `root` itself or something inside it. */
export const isWithin = (p: string, root: string): boolean =>
  p === root || (p.length > root.length && p.charCodeAt(root.length) === SLASH && p.startsWith(root))

function checked(rel: string): string {
  const bad = badRelPath(rel)
  if (bad) throw new UnsafePathError(`refusing path ${JSON.stringify(rel.slice(0, 200))}: ${bad}`)
  return rel
}

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p)
  } catch (e) {
    if (isGone(e)) return null
    throw e
  }
}

/**
 * The mode a file or folder from the VM gets on the runner host: no setuid, setgid or sticky bit,
 * and never writable by group or others (the VM's 0777 would let another local user swap what the
 * runner reads after the pull, its file-command files among them); and no more than the runner's
 * umask allows, as for a file the runner writes itself (a runner kept private with umask 077 stays
 * so, though what a job's root makes on the VM is 0644). What a checkout makes is kept otherwise.
 */
export const hostMode = (mode: number): number => mode & 0o755 & ~runnerUmask()

let umask: number | undefined
/** The process's umask, read once: from /proc (node's own read of it is deprecated), else 022. */
export function runnerUmask(): number {
  if (umask === undefined) {
    let status = ''
    try {
      status = readFileSync('/proc/self/status', 'utf8')
    } catch {
      // not Linux: the common default
    }
    const m = /^Umask:\s*([0-7]{1,4})$/m.exec(status)
    umask = m ? parseInt(m[1], 8) : 0o022
  }
  return umask
}

let tmpSeq = 0
const tmpTag = `${process.pid}-${randomBytes(4).toString('hex')}`

function tempName(dir: string): string {
  return `${dir}/.rch-${tmpTag}-${++tmpSeq}.tmp`
}

export interface FileWriter {
  write(chunk: Buffer): void
  /** Sets mode and mtime, renames over the final name; returns the written file's stats. */
  finish(): Stats
  /** Drops the temporary file. */
  abort(): void
}

/**
 * One root's writes and deletes. Folders found to be real directories are remembered (a pull of
 * many files in a few folders checks each folder once) and forgotten when this tree removes or
 * replaces anything at or above them. They are remembered with their inode: on a file system that
 * folds names (`a/D` finds `a/d`) a folder removed under another spelling is forgotten under every
 * spelling it was remembered by, so no later write goes through whatever took its place.
 */
export class SafeTree {
  private readonly known = new KnownFolders()

  /**
   * `linkTops`: the top-level folders of the root a symlink may point into (see symlinkEscapes);
   * without it, anywhere inside the root.
   */
  constructor(
    private readonly root: string,
    private readonly linkTops?: ReadonlySet<string>
  ) {}

  /**
   * The absolute folder that holds `rel`, after checking that every folder above it is a real
   * directory. With `create`, missing ones are made; without, a missing one gives null (nothing there).
   */
  private parentOf(rel: string, create: boolean): string | null {
    const slash = checked(rel).lastIndexOf('/')
    if (slash < 0) return this.root
    // The deepest remembered folder above `rel`, found upwards: every folder above a remembered one
    // is remembered (KnownFolders keeps one only below a remembered parent), so only the folders
    // below it are checked. Each file then costs its path, not the square of its depth (every
    // ancestor looked up from the top, for each file of a deep tree the VM chose).
    let known = slash
    while (known > 0 && !this.known.has(rel.slice(0, known))) known = rel.lastIndexOf('/', known - 1)
    for (let end = rel.indexOf('/', known + 1); end >= 0 && end <= slash; end = rel.indexOf('/', end + 1)) {
      const dirRel = rel.slice(0, end)
      const dir = `${this.root}/${dirRel}`
      let st = lstatOrNull(dir)
      if (!st) {
        if (!create) return null
        mkdirSync(dir, { mode: 0o755 })
        st = lstatSync(dir)
      }
      if (!st.isDirectory()) {
        if (!create && !st.isSymbolicLink()) return null
        const what = st.isSymbolicLink() ? 'a symlink' : 'not a folder'
        throw new UnsafePathError(`refusing ${JSON.stringify(rel)}: ${JSON.stringify(dirRel)} is ${what} on the runner host`)
      }
      this.known.add(dirRel, st.ino)
    }
    return `${this.root}/${rel.slice(0, slash)}`
  }

  /**
   * Something at `rel` is about to be removed or replaced: what was known below it no longer holds.
   * A folder (`dir`, its lstat) is forgotten by its inode too, under any other name it was known by.
   */
  private forget(rel: string, dir?: Stats): void {
    this.known.forget(rel, dir?.ino)
  }

  /** Clears the final name for a new entry: a real folder there is removed (rm does not follow symlinks). */
  private clearDir(rel: string): void {
    const path = `${this.root}/${rel}`
    const st = lstatOrNull(path)
    if (st?.isDirectory()) {
      this.forget(rel, st)
      rmSync(path, { recursive: true, force: true })
    }
  }

  /**
   * A new regular file at `rel`, written to a fresh name in its folder and renamed over the final
   * name at the end: rename replaces a symlink there instead of writing through it.
   */
  openFile(rel: string, mode: number, mtimeSec: number): FileWriter {
    const dir = this.parentOf(rel, true)!
    const final = `${this.root}/${rel}`
    const tmp = tempName(dir)
    const fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_WRONLY, 0o600)
    let open = true
    const close = (): void => {
      if (open) closeSync(fd)
      open = false
    }
    const abort = (): void => {
      close()
      rmSync(tmp, { force: true })
    }
    return {
      write(chunk) {
        let off = 0
        try {
          while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off)
        } catch (e) {
          // A write's error names no file (a full disk says only ENOSPC): which one, and where.
          throw new HookError(`cannot write ${final} on the runner host (${errnoOf(e)})`)
        }
      },
      finish: () => {
        try {
          fchmodSync(fd, hostMode(mode))
          futimesSync(fd, mtimeSec, mtimeSec)
          const st = fstatSync(fd)
          close()
          this.clearDir(rel)
          renameSync(tmp, final)
          return st
        } catch (e) {
          abort()
          throw e
        }
      },
      abort
    }
  }

  /** Creates the symlink unless its target is absolute or leaves the root (or its linkTops); false when refused (nothing created). */
  makeSymlink(rel: string, target: string): boolean {
    checked(rel)
    if (symlinkEscapes(rel, target, this.linkTops)) return false
    const dir = this.parentOf(rel, true)!
    const tmp = tempName(dir)
    symlinkSync(target, tmp)
    try {
      this.clearDir(rel)
      renameSync(tmp, `${this.root}/${rel}`)
    } catch (e) {
      rmSync(tmp, { force: true })
      throw e
    }
    return true
  }

  /** A real folder at `rel` (whatever else is there is removed first). */
  makeDir(rel: string): void {
    this.parentOf(rel, true)
    const final = `${this.root}/${rel}`
    let st = lstatOrNull(final)
    if (!st?.isDirectory()) {
      if (st) unlinkSync(final)
      mkdirSync(final, { mode: 0o755 })
      st = lstatSync(final)
    }
    this.known.add(rel, st.ino)
  }

  /** Sets a folder's mode (always keeping the owner's rwx, so later copies can write into it; see hostMode). */
  setDirMode(rel: string, mode: number): void {
    if (!this.parentOf(rel, false)) return
    let fd: number
    try {
      fd = openSync(`${this.root}/${rel}`, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
    } catch {
      return // gone or no longer a folder: nothing to set
    }
    try {
      fchmodSync(fd, hostMode(mode) | 0o700)
    } finally {
      closeSync(fd)
    }
  }

  /** Removes `rel` (a folder with its contents); a symlink is removed, never followed. False when nothing was there. */
  removeUnder(rel: string): boolean {
    if (!this.parentOf(rel, false)) return false
    const final = `${this.root}/${rel}`
    const st = lstatOrNull(final)
    if (!st) return false
    this.forget(rel, st.isDirectory() ? st : undefined)
    if (st.isDirectory()) rmSync(final, { recursive: true, force: true })
    else unlinkSync(final)
    return true
  }
}

const distinct = new Map<string, boolean>()

/**
 * Refuses a folder on a file system that folds names (ext4 with casefold, vfat, CIFS, a
 * case-insensitive ZFS): there `_temp/_RUNNER_FILE_COMMANDS` from the VM is the runner's own
 * file-command folder, which every check here knows by one spelling. Tried once per folder and
 * process: a folder made under a random name with capitals and a precomposed letter, then looked
 * up under the other case and the decomposed form. Only `_work` itself is tried: a folding folder
 * an operator mounts or marks (`chattr +F`) below it is not seen (docs/operations.md).
 */
export function checkNamesDistinct(dir: string): void {
  let ok = distinct.get(dir)
  if (ok === undefined) {
    const name = `.rch-names-${randomBytes(4).toString('hex')}-A\u00e9`
    const path = `${dir}/${name}`
    try {
      mkdirSync(path, { mode: 0o700 })
    } catch (e) {
      throw new HookError(`could not check that ${dir} tells names apart: ${(e as Error).message}`)
    }
    try {
      // The name is random: found under another spelling at all, it was folded (some folding file
      // systems, CIFS with noserverino or a FUSE one, give each spelling its own inode number).
      const others = [name.toUpperCase(), name.toLowerCase(), name.normalize('NFD')].filter((v) => v !== name)
      ok = !others.some((v) => lstatOrNull(`${dir}/${v}`) !== null)
    } finally {
      rmdirSync(path)
    }
    distinct.set(dir, ok)
  }
  if (!ok)
    throw new UnsafePathError(
      `${dir} is on a file system that takes names differing in case or Unicode form for one name: a name the VM sends could reach the runner's own folders under another spelling, so nothing is copied back there (put the runner's _work on a case-sensitive file system)`
    )
}

/**
 * Whether a symlink at `rel` pointing to `target` would leave the root (resolved lexically from its
 * folder). A `..` after a name is refused too: lexically `s/..` is `.`, but through a symlink `s`
 * it climbs from wherever `s` points. With `..` only in front, every link resolves inside.
 * With `tops`, a link must also resolve inside one of those top-level folders: the runner's `_work`
 * holds other repositories' folders, and the runner reads through links there (`hashFiles`, local
 * actions), so a link to `_work` itself or to another repository's folder is refused.
 */
export function symlinkEscapes(rel: string, target: string, tops?: ReadonlySet<string>): boolean {
  if (target === '' || target.startsWith('/') || target.includes('\0')) return true
  const parts = target.split('/').filter((c) => c !== '' && c !== '.')
  const firstName = parts.findIndex((c) => c !== '..')
  if (firstName >= 0 && parts.indexOf('..', firstName) >= 0) return true
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target))
  if (resolved === '..' || resolved.startsWith('../') || resolved.startsWith('/')) return true
  return tops !== undefined && !tops.has(resolved.split('/')[0])
}
