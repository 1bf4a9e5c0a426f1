// A step's output written by the agent straight into the hook's own stdout and stderr pipes, so
// each byte skips a hop (agent → Unix socket → hook → pipe) and the hook process, which otherwise
// copies every byte once more on a machine whose few cores the whole chain shares.
//
// The hook names its pipes (its pid and each pipe's inode); the agent reopens them through
// /proc/<pid>/fd/<n>, which for a pipe gives a new description of the same pipe (non-blocking
// there without touching the runner's end). Only pipes: reopening a file through /proc would write
// from its start. Anything that does not match (not a pipe, another inode, no such process) leaves
// the output on the socket as before. The agent closes both before it sends the exit status, so
// every byte is in the pipe before the hook exits, and when the hook goes away, at once: the
// runner reads the pipe to its end, which only comes once no process holds it open.
import { closeSync, constants, fstatSync, openSync, statSync } from 'node:fs'
import { Socket } from 'node:net'

/** What the hook sends: its pid and the inodes of its stdout and stderr pipes. */
export interface DirectPipes {
  pid: number
  out: number
  err: number
}

/** The hook's side: its pipes, or undefined when either is not a pipe (a file, a terminal). */
export function hookPipes(): DirectPipes | undefined {
  try {
    const out = fstatSync(1)
    const err = fstatSync(2)
    if (!out.isFIFO() || !err.isFIFO()) return undefined
    return { pid: process.pid, out: out.ino, err: err.ino }
  } catch {
    return undefined
  }
}

const isId = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0

function reopen(pid: number, fd: 1 | 2, ino: number): Socket | null {
  const path = `/proc/${pid}/fd/${fd}`
  let h: number | null = null
  try {
    const st = statSync(path)
    if (!st.isFIFO() || st.ino !== ino) return null
    h = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
    // The fd may have changed between the two calls: what was opened must be that same pipe.
    const again = fstatSync(h)
    if (!again.isFIFO() || again.ino !== ino) {
      closeSync(h)
      return null
    }
    const s = new Socket({ fd: h, readable: false, writable: true })
    // The reader went away (EPIPE): the step's output has nowhere to go, as for the hook itself.
    s.on('error', () => s.destroy())
    return s
  } catch {
    if (h !== null) closeSync(h)
    return null
  }
}

export interface Direct {
  stdout: Socket
  stderr: Socket
  /** Resolves once everything written has left for the pipes; then both are closed. */
  close(): Promise<void>
  /** Closes both at once, dropping what is queued (the hook is gone). */
  drop(): void
}

/** The agent's side: the hook's two pipes, or null (the output then goes over the socket). */
export function openDirect(p: unknown): Direct | null {
  if (!p || typeof p !== 'object') return null
  const { pid, out, err } = p as Record<string, unknown>
  if (!isId(pid) || !isId(out) || !isId(err)) return null
  const stdout = reopen(pid, 1, out)
  if (!stdout) return null
  const stderr = reopen(pid, 2, err)
  if (!stderr) {
    stdout.destroy()
    return null
  }
  const flushed = (s: Socket): Promise<void> =>
    new Promise((resolve) => {
      if (s.destroyed) return resolve()
      s.once('close', () => resolve())
      // An empty write's callback runs once the writes before it are done.
      s.write(Buffer.alloc(0), () => resolve())
    })
  return {
    stdout,
    stderr,
    close: async () => {
      await Promise.all([flushed(stdout), flushed(stderr)])
      stdout.destroy()
      stderr.destroy()
    },
    drop: () => {
      stdout.destroy()
      stderr.destroy()
    }
  }
}
