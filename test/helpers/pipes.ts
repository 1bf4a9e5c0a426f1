// A child whose stdout and stderr are pipes, as the runner's (.NET Process redirects them with
// pipe(2)). Node's own spawn gives a socketpair instead, which the hook treats differently (its
// agent can write a step's output straight into a pipe, not into a socket), so tests and the bench
// would otherwise never see the path a real runner takes. Node cannot make an anonymous pipe: a
// FIFO, opened at both ends and unlinked at once, is one.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface PipedChild {
  /** stdout and stderr of the returned child are the read ends of its pipes (ended once every writer closed them). */
  child: ChildProcess & { stdout: Socket; stderr: Socket }
  /** Resolves once the child exited and both pipes reached their end (no process holds them any more). */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface Pipes {
  out: { read: number; write: number }
  err: { read: number; write: number }
}

/** The two pipes for spawnPiped, made beforehand when their making (a mkfifo run) must not count in a timing. */
export function makePipes(): Pipes {
  const dir = mkdtempSync(join(tmpdir(), 'rch-fifo-'))
  try {
    const paths = [join(dir, 'out'), join(dir, 'err')]
    const made = spawnSync('mkfifo', ['-m', '600', ...paths])
    if (made.status !== 0) throw new Error(`mkfifo: ${String(made.stderr)}`)
    const [out, err] = paths.map((path) => {
      const read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
      return { read, write: openSync(path, constants.O_WRONLY) }
    })
    return { out, err }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** spawn() with stdin a Node pipe and stdout/stderr real pipes. */
export function spawnPiped(
  cmd: string,
  args: string[],
  opts: Omit<SpawnOptions, 'stdio'> & { sharedPipe?: boolean } = {},
  pipes: Pipes = makePipes()
): PipedChild {
  const { out, err } = pipes
  const { sharedPipe, ...spawnOpts } = opts
  let child: ChildProcess
  try {
    // sharedPipe: stdout and stderr are one pipe (2>&1); stderr's own pipe then only ends.
    child = spawn(cmd, args, { ...spawnOpts, stdio: ['pipe', out.write, sharedPipe ? out.write : err.write] })
  } catch (e) {
    for (const fd of [out.read, err.read]) closeSync(fd)
    throw e
  } finally {
    closeSync(out.write)
    closeSync(err.write)
  }
  const stdout = new Socket({ fd: out.read, readable: true, writable: false })
  const stderr = new Socket({ fd: err.read, readable: true, writable: false })
  Object.defineProperty(child, 'stdout', { value: stdout })
  Object.defineProperty(child, 'stderr', { value: stderr })
  const ended = (s: Socket): Promise<void> => new Promise((r) => (s.readableEnded || s.destroyed ? r() : s.once('close', () => r())))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r, reject) => {
    child.once('exit', (code, signal) => r({ code, signal }))
    // A child that could not start (ENOENT…) never exits: fail instead of waiting for ever.
    child.once('error', (e) => {
      stdout.destroy()
      stderr.destroy()
      reject(e)
    })
  })
  const closed = Promise.all([exited, ended(stdout), ended(stderr)]).then(([x]) => x)
  return { child: child as PipedChild['child'], closed }
}
