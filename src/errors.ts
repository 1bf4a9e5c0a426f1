// Error kinds the top-level exit maps to exit codes and messages. Every message is one line and
// names what failed; none carries a secret (callers pass names, never values).

export class HookError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** stdin, arguments or state the runner sent are unusable. Nothing was started. */
export class InputError extends HookError {}

/** A failed system call's code (ENOSPC, EMFILE…), which names the cause in a line that names the file; else the error's message. */
export const errnoOf = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message

/**
 * The operator's configuration file is wrong; `issues` lists every problem with its field path.
 * The step log shows one `::error::` line per problem (outcome.ts); the message joins them for the file log.
 */
export class ConfigError extends HookError {
  constructor(readonly issues: string[]) {
    super(`invalid configuration: ${issues.join('; ')}`)
  }
}

/**
 * What went wrong with a connection, set where the failure arises. Retry decisions read this,
 * never the message: `hostkey`, `auth` and `keyfile` will not mend by waiting; `network` (refused,
 * unreachable, reset, handshake cut short) and `timeout` may; `lost` is a connection that dropped
 * after it worked; `agent` is the job's local agent process; `stream` is a channel or stream that
 * ended on a connection that still works (the VM's doing: a killed step shell, a stopped Docker
 * engine), which says nothing about the machine; `lease` is a pool member that is no longer this
 * job's (its lease lapsed or was refused): the machine works, another job may hold it.
 */
export const TRANSPORT_KINDS = ['hostkey', 'auth', 'keyfile', 'network', 'timeout', 'lost', 'agent', 'stream', 'lease'] as const
export type TransportKind = (typeof TRANSPORT_KINDS)[number]

const PERMANENT: ReadonlySet<TransportKind> = new Set(['hostkey', 'auth', 'keyfile'])

/**
 * SSH could not connect, authenticate, verify the host key, or the connection dropped. The kind is
 * stated where the error arises (no default): a step's `lost` is checked against the connection
 * afterwards (remote.ts blameOf), which makes it `stream` when the connection still works.
 */
export class TransportError extends HookError {
  constructor(
    message: string,
    readonly kind: TransportKind,
    options?: { cause?: unknown }
  ) {
    super(message, options)
  }
}

/** A connection failure that waiting or retrying cannot mend (a wrong host key, key pair or key file). */
export function isPermanentTransport(err: unknown): boolean {
  return err instanceof TransportError && PERMANENT.has(err.kind)
}

/** A command the hook itself ran on the remote (docker, tar, mkdir…) failed. */
export class RemoteCommandError extends HookError {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderrTail: string,
    readonly signal?: string
  ) {
    const how = exitCode === null ? `killed by signal ${signal ?? 'unknown'}` : `exit code ${exitCode}`
    const tail = stderrTail.trim().split('\n').slice(-3).join(' | ')
    super(`${command} failed (${how})${tail ? `: ${tail}` : ''}`)
  }
}

/** The user's own step exited non-zero: reported as the user's failure, not an infrastructure error. */
export class StepFailed extends HookError {
  constructor(readonly exitCode: number) {
    super(`the step's process exited with code ${exitCode}`)
  }
}

/**
 * What a cancel did to a running step's processes: `stopped` once none runs (they ended, or never
 * started), `unconfirmed` when the VM (where the job is root) kept them from confirming it and the
 * step was cut off. Absent where no step was running.
 */
export type StepStop = 'stopped' | 'unconfirmed'

/** SIGINT/SIGTERM arrived. */
export class Cancelled extends HookError {
  constructor(
    readonly signal: string,
    readonly step?: StepStop
  ) {
    super(`cancelled by ${signal}`)
  }

  /** The cancellation an aborted signal stands for (its reason is the signal's name; one that is an error is reported as that error: execute.ts causeOf). */
  static by(signal: AbortSignal, step?: StepStop): Cancelled {
    return new Cancelled(String(signal.reason ?? 'signal'), step)
  }
}

/**
 * Failures that came before a cancel, whose handling (prepare_job's undo) the cancel then cut:
 * reported beside the cancel (execute.ts report), since they are why the command failed.
 */
const beforeCancel = new WeakSet<object>()

/** Marks `err` as a failure of its own when `signal` was not aborted yet (a cancel that comes later does not hide it). */
export function markIfBeforeCancel(err: unknown, signal: AbortSignal): void {
  if (!signal.aborted && err instanceof Error && !(err instanceof Cancelled)) beforeCancel.add(err)
}

export function failedBeforeCancel(err: unknown): boolean {
  return err instanceof Error && beforeCancel.has(err)
}

/** The longest message the hook writes as one line of its own (step log and file log). */
export const MESSAGE_MAX = 16 * 1024

/**
 * `s` at most about MESSAGE_MAX long, saying what was left out: a machine's text inside a message
 * (a Docker engine's error body, up to the 16 MiB a reply may have) must not become a line of
 * megabytes in the step log and in hook.log, which is never rotated. Its start (what failed) and
 * its end (a command's last stderr lines, the causes) are kept, the middle goes. Cut after the
 * hook's masking, and only at white space: a value the runner masks (a secret the hook does not
 * know) is recognised only whole, so a run without white space that spans a cut goes entirely.
 */
export function clipMessage(s: string, max = MESSAGE_MAX): string {
  if (s.length <= max) return s
  const head = s.slice(0, max / 4)
  const tail = s.slice(s.length - (max * 3) / 4)
  const start = head.slice(0, Math.max(0, head.search(/\s\S*$/)))
  const afterSpace = tail.search(/\s/)
  const end = afterSpace < 0 ? '' : tail.slice(afterSpace)
  return `${start} … (${s.length - start.length - end.length} characters not shown)${end}`
}

/**
 * The lines of `s` as one, each line break with the white space around it made one space. Linear:
 * a machine's text reaches here (an engine's error body), and a regular expression for it (white
 * space, a line break, white space) takes time of the square of a run of spaces without a line
 * break (hours for 16 MiB).
 */
function joinLines(s: string): string {
  const lines = s.split('\n')
  const out: string[] = [lines[0].trimEnd()]
  for (let i = 1; i < lines.length; i++) {
    const last = i === lines.length - 1
    const l = last ? lines[i].trimStart() : lines[i].trim()
    // A line of white space only joins the breaks around it into one.
    if (l || last) out.push(l)
  }
  return out.join(' ')
}

/** Turns any thrown value into a single line without throwing itself (circular causes, non-Errors). */
export function formatError(err: unknown, depth = 0): string {
  const oneLine = (s: string): string => (s.includes('\n') ? joinLines(s) : s)
  try {
    if (err instanceof Error) {
      let msg = err.message || err.name
      const cause = (err as { cause?: unknown }).cause
      if (cause !== undefined && cause !== err && depth < 8) {
        const c = formatError(cause, depth + 1)
        if (c && !msg.includes(c)) msg += `: ${c}`
      }
      return oneLine(msg)
    }
    if (typeof err === 'string') return oneLine(err)
    if (err && typeof err === 'object' && 'message' in err) return oneLine(String(err.message))
    return oneLine(JSON.stringify(err) ?? String(err))
  } catch {
    try {
      return String(err)
    } catch {
      return '[unprintable value]'
    }
  }
}
