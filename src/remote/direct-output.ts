// A step's output written by the agent straight into the hook's own stdout and stderr pipes, so
// each byte skips a hop (agent → Unix socket → hook → pipe) and the hook process, which otherwise
// copies every byte once more on a machine whose few cores the whole chain shares.
//
// The hook names its pipes (its pid, and each pipe's device and inode); the agent reopens them through
// /proc/<pid>/fd/<n>, which for a pipe gives a new description of the same pipe (non-blocking
// there without touching the runner's end). Only pipes: reopening a file through /proc would write
// from its start. Anything that does not match (not a pipe, another inode, no such process) leaves
// the output on the socket as before. The agent closes both before it sends the exit status, so
// every byte is in the pipe before the hook exits, and when the hook goes away, at once: the
// runner reads the pipe to its end, which only comes once no process holds it open.
import { closeSync, constants, fstatSync, openSync, statSync } from 'node:fs'
import { Socket } from 'node:net'
import { flushed, whenDrained, writeQueued } from './mux-frames'

/** What the hook sends: its pid and each pipe's device and inode. */
export interface DirectPipes {
  pid: number
  out: { dev: number; ino: number }
  err: { dev: number; ino: number }
}

/** The hook's side: its pipes, or undefined when either is not a pipe (a file, a terminal). */
export function hookPipes(): DirectPipes | undefined {
  try {
    const out = fstatSync(1)
    const err = fstatSync(2)
    if (!out.isFIFO() || !err.isFIFO()) return undefined
    return { pid: process.pid, out: { dev: out.dev, ino: out.ino }, err: { dev: err.dev, ino: err.ino } }
  } catch {
    return undefined
  }
}

const isId = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
const isPipeId = (p: unknown): p is { dev: number; ino: number } =>
  !!p && typeof p === 'object' && isId((p as { dev?: unknown }).dev) && isId((p as { ino?: unknown }).ino)
const same = (st: { dev: number; ino: number; isFIFO(): boolean }, id: { dev: number; ino: number }): boolean =>
  st.isFIFO() && st.dev === id.dev && st.ino === id.ino

function reopen(pid: number, fd: 1 | 2, id: { dev: number; ino: number }): Socket | null {
  const path = `/proc/${pid}/fd/${fd}`
  let h: number | null = null
  try {
    if (!same(statSync(path), id)) return null
    h = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
    // The fd may have changed between the two calls: what was opened must be that same pipe.
    if (!same(fstatSync(h), id)) {
      closeSync(h)
      return null
    }
    return new Socket({ fd: h, readable: false, writable: true })
  } catch {
    if (h !== null) closeSync(h)
    return null
  }
}

/** A pipe as the step's output goes to it: a writer that waits for it as a relay would, and never for a closed one. */
export interface PipeSink {
  write(c: Buffer | string): boolean
  once(e: 'drain', fn: () => void): unknown
}

export interface Direct {
  stdout: PipeSink
  stderr: PipeSink
  /** Resolves once everything written has left for the pipes; then both are closed. */
  close(): Promise<void>
  /** Closes both at once, dropping what is queued (the hook is gone). */
  drop(): void
}

function sinkOf(s: Socket): PipeSink {
  return {
    // A closed pipe takes nothing more, and is not waited for (its 'drain' never comes).
    write: (c) => s.destroyed || writeQueued(s, c),
    once: (_e, fn) => whenDrained(s, fn)
  }
}

/**
 * The agent's side: the hook's two pipes, or null (the output then goes over the socket).
 * `onLost` is called once if a pipe fails (its reader went away, EPIPE): the step then has nowhere
 * to print, as when the hook itself died of that before.
 */
export function openDirect(p: unknown, onLost: () => void): Direct | null {
  if (!p || typeof p !== 'object') return null
  const { pid, out, err } = p as Record<string, unknown>
  if (!isId(pid) || pid === 0 || !isPipeId(out) || !isPipeId(err)) return null
  const stdout = reopen(pid, 1, out)
  if (!stdout) return null
  // stdout and stderr the same pipe (2>&1): one description, one queue, so their bytes keep the
  // order they were written in (two would interleave partial writes once the pipe is full).
  const stderr = out.dev === err.dev && out.ino === err.ino ? stdout : reopen(pid, 2, err)
  if (!stderr) {
    stdout.destroy()
    return null
  }
  const drop = (): void => {
    stdout.destroy()
    stderr.destroy()
  }
  let lost = false
  for (const s of new Set([stdout, stderr]))
    s.on('error', () => {
      s.destroy()
      if (!lost) {
        lost = true
        onLost()
      }
    })
  return {
    stdout: sinkOf(stdout),
    stderr: sinkOf(stderr),
    close: async () => {
      await Promise.all([flushed(stdout), flushed(stderr)])
      drop()
    },
    drop
  }
}
