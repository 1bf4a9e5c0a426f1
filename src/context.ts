// What every handler gets: configuration, runner facts, logging, cancellation and output streams.
// Built once in main.ts; handlers never touch `process`.
import type { Config } from './config'
import type { Log } from './log'
import type { RunnerEnv } from './runner-env'
import type { Remote } from './remote/remote'
import type { LedgerClock } from './fleet/ledger'

export interface Sink {
  write(chunk: Buffer | string): boolean
  once(event: 'drain', fn: () => void): unknown
  /** Bytes queued in it, when it tells (a Node stream does): lets a writer go on past its small default mark. */
  readonly writableLength?: number
  /** A Node stream's batching (see corkTurn in remote/mux-frames.ts). */
  cork?(): void
  uncork?(): void
  readonly writableCorked?: number
}

export interface HookContext {
  config: Config
  runner: RunnerEnv
  log: Log
  signal: AbortSignal
  /** Absolute path of the running hook bundle, for the agent and rsync's transport. */
  hookPath: string
  nodePath: string
  stdout: Sink
  stderr: Sink
  /** Base folder for per-job local files (agent socket, sync manifests). */
  localRoot: string
  /** Set when the command runs inside the job's agent: its connection, shared by all commands. */
  remote?: Remote
  /** The machine `remote` reaches (the agent's own connection): a step for another is refused. */
  remoteAt?: { user: string; host: string; port: number }
  /** The fleet ledger's clock (the system clock unless a test moved it: fleet/ledger-clock.ts). */
  ledgerClock?: LedgerClock
  /** How often a long command beats its reservation (fleet/beat-period.ts; 60 s unless a test shortens it). */
  beatMs?: number
  /**
   * Writes the command's answer to the runner's response file. prepare_job writes it itself, as its
   * last part: a write that fails (a full disk) is a failure its undo answers, not a job the runner
   * never hears of left running.
   */
  respond: (response: object) => Promise<void>
}

export interface HandlerResult {
  exitCode: number
  /** What the handler wrote through `respond`. */
  response?: object
}
