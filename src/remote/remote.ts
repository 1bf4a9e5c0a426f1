// The transport seam: everything the hook does on the remote goes through a Remote, either a direct
// ssh2 connection or the per-job agent that keeps one connection open across hook processes.
import type { Duplex, Readable, Writable } from 'node:stream'
import { Cancelled, HookError, RemoteCommandError, TransportError } from '../errors'
import { monoMs } from '../mono-clock'
import { lineTail } from '../line-tail'

export interface ConnectInfo {
  host: string
  port: number
  user: string
  identityFile: string
  knownHostsFile: string
}

export interface ExitStatus {
  /** null when the channel closed without an exit status: the connection dropped. */
  code: number | null
  signal: string | null
}

export interface ExecChannel {
  stdin: Writable
  stdout: Readable
  stderr: Readable
  done: Promise<ExitStatus>
}

export interface Remote {
  openExec(command: string): Promise<ExecChannel>
  /** A raw byte stream to a Unix socket on the remote (the Docker Engine API). */
  openSocket(path: string): Promise<Duplex>
  close(): void
}

export interface RunOptions {
  input?: string | Buffer | Readable
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
  /** Keep stdout in memory, at most maxCollect bytes: more is an OutputLimitError, never a cut. */
  collect?: boolean
  maxCollect?: number
  /** Short name for errors and logs; never the full command (it may be long). */
  label?: string
  /** On abort the channel is closed and the call rejects with Cancelled at once. */
  signal?: AbortSignal
  /** After this the channel is closed and the call rejects, naming the label. */
  timeoutMs?: number
}

export interface RunResult extends ExitStatus {
  stdout: Buffer
  stderr: string
}

const TAIL = 16 * 1024

/** A collected output went over its bound; what was read is incomplete and must not be used. */
export class OutputLimitError extends HookError {
  constructor(
    readonly label: string,
    readonly limit: number
  ) {
    super(`${label}: output is larger than ${limit} bytes`)
  }
}

/** A call's timeoutMs passed with no result: the command may still run on the machine. */
export class NoResultError extends HookError {}

const noResult = (command: string, opts: RunOptions): HookError =>
  new NoResultError(`${opts.label ?? 'remote command'}: no result after ${opts.timeoutMs! / 1000} s`)

/**
 * The command's channel, bounded by the call's cancel and timeout as the rest of the call is: an
 * open the remote never answers (an sshd that still answers keepalives) must not hold the call for
 * ever. A channel that opens after the call gave up is closed at once.
 */
async function opened(remote: Remote, command: string, opts: RunOptions): Promise<ExecChannel> {
  const open = remote.openExec(command)
  if (opts.timeoutMs === undefined && !opts.signal) return open
  let fail!: (e: Error) => void
  const failed = new Promise<never>((_, r) => (fail = r))
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => fail(noResult(command, opts)), opts.timeoutMs)
  const onAbort = (): void => fail(Cancelled.by(opts.signal!))
  if (opts.signal?.aborted) onAbort()
  else opts.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([open, failed])
  } catch (e) {
    open.then(
      (ch) => {
        ch.stdout.destroy()
        ch.stdin.destroy()
      },
      () => undefined
    )
    throw e
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onAbort)
  }
}

/** Runs a shell command on the remote, feeding stdin and collecting output. Never throws on exit codes. */
export async function run(remote: Remote, command: string, opts: RunOptions = {}): Promise<RunResult> {
  const began = monoMs()
  const ch = await opened(remote, command, opts)
  const out: Buffer[] = []
  let outLen = 0
  const err = lineTail(TAIL)
  const max = opts.maxCollect ?? 256 * 1024 * 1024
  // Set below, in this same tick, so before any 'data' event.
  let s: ReturnType<typeof stopper> | null = null
  ch.stdout.on('data', (c: Buffer) => {
    opts.onStdout?.(c)
    if (!opts.collect || outLen > max) return
    outLen += c.length
    // Over the bound: fail now and close the channel rather than drain it (a VM can stream for
    // ever). A cut listing would read as deletions.
    if (outLen > max) {
      out.length = 0
      s!.stop(new OutputLimitError(labelOf(command, opts), max))
    } else out.push(c)
  })
  ch.stderr.on('data', (c: Buffer) => {
    opts.onStderr?.(c)
    err.push(c)
  })
  const input = opts.input
  if (input === undefined) ch.stdin.end()
  else if (typeof input === 'string' || Buffer.isBuffer(input)) ch.stdin.end(input)
  else {
    input.on('error', (e) => ch.stdin.destroy(e))
    input.pipe(ch.stdin)
  }
  ch.stdin.on('error', () => undefined) // the remote may exit before reading all input
  s = stopper(ch, opts.signal)
  // One bound for the whole call: what the open took is not given again.
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => s.stop(noResult(command, opts)), Math.max(0, opts.timeoutMs - (monoMs() - began)))
  try {
    const status = await Promise.race([ch.done, s.stopped])
    return { ...status, stdout: Buffer.concat(out), stderr: err.text() }
  } finally {
    clearTimeout(timer)
    s.dispose()
  }
}

/**
 * Stopping a command early: stop(e) runs onStop, closes the channel (which ends the remote command;
 * for the agent's channels, its socket) and rejects `stopped` with e. An abort of `signal` stops it
 * with Cancelled; dispose() drops that listener once the work is over.
 */
export function stopper(
  ch: Pick<ExecChannel, 'stdin' | 'stdout'>,
  signal?: AbortSignal,
  onStop?: () => void
): { stopped: Promise<never>; stop(e: Error): void; dispose(): void } {
  let reject!: (e: Error) => void
  const stopped = new Promise<never>((_, r) => (reject = r))
  stopped.catch(() => undefined)
  let done = false
  const stop = (e: Error): void => {
    // Once: chunks already in flight (up to a channel's window) still arrive after the close.
    if (done) return
    done = true
    onStop?.()
    ch.stdout.destroy()
    ch.stdin.destroy()
    reject(e)
  }
  const onAbort = (): void => stop(Cancelled.by(signal!))
  if (signal?.aborted) onAbort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  return { stopped, stop, dispose: () => signal?.removeEventListener('abort', onAbort) }
}

/**
 * The channel closed with neither an exit code nor a signal: the connection dropped. A signal is the
 * VM's answer (the command was killed there), never a dropped connection.
 */
export const dropped = (s: ExitStatus): boolean => s.code === null && s.signal === null

/** Settles once `s` has ended or closed (at once when it has): all of its data read, or none to come. */
export function endedOrClosed(s: Readable): Promise<void> {
  if (s.readableEnded || s.destroyed) return Promise.resolve()
  return new Promise((res) => {
    s.once('end', res)
    s.once('close', res)
  })
}

/** How an error names a remote command's end: its exit code, or the signal that killed it. */
export const exitOf = (s: ExitStatus): string => (s.code === null ? `killed by signal ${s.signal ?? 'unknown'}` : `exit ${s.code}`)

/** How errors name a command: its label, else its first three words. */
function labelOf(command: string, opts: RunOptions): string {
  return opts.label ?? command.split(' ').slice(0, 3).join(' ')
}

/** Like run(), but a non-zero exit or a dropped connection throws with the command's label. */
export async function check(remote: Remote, command: string, opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(remote, command, opts)
  const label = labelOf(command, opts)
  if (dropped(r)) throw new TransportError(`connection lost while running ${label}`, 'lost')
  if (r.code !== 0) throw new RemoteCommandError(label, r.code, r.stderr, r.signal ?? undefined)
  return r
}

/**
 * What a step's failure says about its connection. A failure blamed on the connection (`lost`, or a
 * `timeout` of a call the VM's docker held back) while the connection still runs a command to its
 * exit was the VM's own doing (a stream it ended or held: the job killed its step shell, or stopped,
 * removed or replaced the Docker socket): it becomes kind `stream`, so the job cannot make the hook
 * report its machine lost and ask the provider about it. The exit status itself does not matter
 * (the job may change what `true` does, or make it kill itself), only that one came, as a code or a
 * signal. Anything else is returned as it is.
 */
export async function blameOf(err: unknown, remote: Remote, signal?: AbortSignal): Promise<unknown> {
  if (!(err instanceof TransportError) || (err.kind !== 'lost' && err.kind !== 'timeout')) return err
  const up = await run(remote, 'true', { timeoutMs: CONNECTION_CHECK_MS, label: 'connection check', signal }).then(
    (r) => !dropped(r),
    () => false
  )
  return up ? new TransportError(err.message, 'stream', { cause: err }) : err
}

const CONNECTION_CHECK_MS = 5_000
