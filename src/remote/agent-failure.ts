// How a job's agent reports that it could not connect: one line in its log naming the failure's
// kind, which the hook that started it turns back into the same TransportError. Kept apart from
// the agent so that reading it does not load ssh2.
import { readFileSync } from 'node:fs'
import { TRANSPORT_KINDS, TransportError, clipMessage, formatError, type TransportKind } from '../errors'
import type { ConnectInfo } from './remote'

const FAILED = 'connect failed'

/**
 * How an agent ends when the hook that started it is of another build: the hook's file was replaced
 * (an upgrade) after that hook started, and `node <file> __agent` ran the new one. It serves nothing:
 * a hook never talks to an agent of another build (src/build-id.ts).
 */
export const OTHER_BUILD_EXIT = 76

/** A hook command whose file was replaced while it ran, as the loader says it (scripts/build.mjs). */
export const replacedWhileRunning = (file: string): string => `${file} was replaced by another build while this command ran (run it again)`

export function connectFailureLine(e: unknown): string {
  const kind = e instanceof TransportError ? e.kind : 'network'
  return `${FAILED} [${kind}] ${formatError(e)}`
}

/**
 * One entry of an agent's log, always one line: a message may quote text the remote chose (an SSH
 * disconnect's description is the server's), which must not start a line of its own that the hook
 * would read back as the agent's (connectFailure). Every entry an agent writes is made here.
 */
export function agentEntry(message: string, pid = process.pid, at = new Date()): string {
  return `${at.toISOString()} agent ${pid}: ${clipMessage(oneLine(message))}\n`
}

/**
 * Every control character (C0, DEL, C1) and Unicode line or paragraph separator as a space: no
 * line break of any kind, and no terminal escape that would show a forged line to someone who
 * `cat`s the log.
 */
// eslint-disable-next-line no-control-regex -- the control characters are what it removes
const oneLine = (s: string): string => s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ')

/** An entry that reports a connect failure: `<time> agent <pid>: connect failed [kind] …`. */
const FAILURE_ENTRY = new RegExp(`^\\S+ agent (\\d+): ${FAILED} \\[(${TRANSPORT_KINDS.join('|')})\\] (.*)$`)

/**
 * The connection failure an agent wrote into its log, with its kind; null when there is none. Only
 * an entry's own start counts (`<time> agent <pid>: `, as the agent writes each entry on one line):
 * the same words later in a line are text an entry quoted, which the remote may have chosen. Given
 * the agent's pid, only its entries count: a line that got past the one-line rule would also have
 * to guess the pid.
 */
export function connectFailure(logText: string, pid?: number): TransportError | null {
  const m = logText
    .split('\n')
    .map((l) => FAILURE_ENTRY.exec(l))
    .filter((x) => x !== null && (pid === undefined || Number(x[1]) === pid))
    .pop()
  return m ? new TransportError(m[3], m[2] as TransportKind) : null
}

/**
 * The line that says why, of what node printed when the agent crashed: the error's own line
 * (`TypeError [ERR_X]: …`), not the `Node.js v20…` that node prints last; else the last line.
 * Shown as one line (the text is node's, not an entry, and may hold anything).
 */
export function crashReason(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^Node\.js v\d/.test(l))
  const error = lines.filter((l) => /^(?:[A-Za-z_$][\w$]*)?(?:Error|Exception)\b[^:]*:/.test(l)).pop()
  return oneLine(error ?? lines.pop() ?? '')
}

/**
 * Why an agent did not come up, from its own log (each agent has one): the connect failure it
 * logged (with its kind), else node's own reason when it crashed (crashReason).
 */
export function agentFailure(logFile: string, pid: number | undefined, connect: ConnectInfo, seconds: number): TransportError {
  let text = ''
  try {
    text = readFileSync(logFile, 'utf8')
  } catch {
    // no log: the generic reason below
  }
  const tail = crashReason(text)
  return (
    connectFailure(text, pid) ??
    new TransportError(
      tail || `could not reach ${connect.user}@${connect.host}:${connect.port} within ${seconds} s`,
      tail ? 'agent' : 'timeout'
    )
  )
}
