// One hook command from the runner's raw input to its exit code, the same in the hook process and
// in the job's agent (which runs steps on the hook's behalf): validate the input, config and
// runner environment, check the response file, run the handler (which writes its response through
// the context's respond(): prepare_job does so inside its undo), and map a failure to its exit code
// and `::error::` line.
import { Cancelled, ConfigError, failedBeforeCancel, formatError, HookError, TransportError } from './errors'
import { EXIT, outcomeOf } from './outcome'
import { workflowCommand } from './workflow-commands'
import { ensurePrivateDir } from './private-fs'
import { ownLines } from './line-start'
import { stepEnv, type RunnerEnv } from './runner-env'
import type { HookContext, Sink } from './context'
import { ledgerClockFrom } from './fleet/ledger-clock'
import { beatPeriodFrom } from './fleet/beat-period'
import type { HookInput } from './protocol'
import type { Log } from './log'
import type { Remote } from './remote/remote'

/** Where this hook runs: given by main.ts, the one module that reads `process`. */
export interface HookPlace {
  /** The hook bundle and the node running it, for the agent and rsync's transport. */
  hookPath: string
  nodePath: string
  /** The private folder of per-job local files (agent sockets, sync bases). */
  localRoot: string
  /** The log file when the configuration names none. */
  defaultLogFile: string
}

export interface ExecuteIo {
  cwd: string
  signal: AbortSignal
  stdout: Sink
  stderr: Sink
  place: HookPlace
  /** The job's open connection, when the command runs inside the agent. */
  remote?: Remote
  /** The machine `remote` reaches. */
  remoteAt?: { user: string; host: string; port: number }
}

export interface Executed {
  code: number
  /** What was written to the response file. */
  response?: object
  /**
   * Set when the command failed for its connection to the job's machine (the hook's own exit 75),
   * never for a step that exited 75 itself: only then is what became of the machine worth asking.
   */
  lost?: true
}

/** Whether a command that ended with `code` after `err` lost its connection (rather than a step exiting 75). */
export const lostConnection = (err: unknown, code: number): boolean =>
  code === EXIT.transport && err instanceof TransportError && err.kind !== 'stream' && err.kind !== 'lease'

export function execute(raw: string, env: Record<string, string | undefined>, io: ExecuteIo): Promise<Executed> {
  return withContext<Executed>(
    raw,
    env,
    io,
    async (ctx) => {
      const { dispatch } = await import('./dispatch')
      const result = await dispatch(ctx.input, ctx)
      return { code: result.exitCode, response: result.response }
    },
    (err, log) => {
      const code = report(err, io, log)
      return lostConnection(causeOf(err, io.signal), code) ? { code, lost: true } : { code }
    },
    true
  )
}

/** Runs `body` with the validated context; `failed` answers for any failure; the log is closed either way. */
async function withContext<T>(
  raw: string,
  env: Record<string, string | undefined>,
  io: ExecuteIo,
  body: (ctx: HookContext & { input: HookInput }) => Promise<T>,
  failed: (err: unknown, log: Log | undefined) => T,
  /** A failure before the command's log was opened (input, config, response file) still goes to a file log. */
  logEarly = false
): Promise<T> {
  let log: Log | undefined
  try {
    const ctx = await prepared(raw, env, io)
    log = ctx.log
    return await body(ctx)
  } catch (err) {
    if (!log && logEarly) log = await failureLog(env, io)
    return failed(err, log)
  } finally {
    await log?.close()
  }
}

/**
 * A `run` request the hook sent to the job's agent (agent-client.ts): executed like the hook
 * would, with only the allow-listed part of the environment the request carries.
 */
export async function executeRequest(req: Record<string, unknown>, io: Omit<ExecuteIo, 'cwd'>): Promise<Executed> {
  const env = stepEnv((req.env ?? {}) as Record<string, string | undefined>)
  return execute(String(req.raw), env, { ...io, cwd: String(req.cwd) })
}

/**
 * After a step failed for its connection: one more `::error::` line with what became of the job's
 * machine, when its provider can tell (handlers/lost-machine.ts). Quiet when it cannot: the step's
 * own error line stands.
 */
export function explainLoss(raw: string, env: Record<string, string | undefined>, io: ExecuteIo): Promise<void> {
  return withContext(
    raw,
    env,
    io,
    async (ctx) => {
      const { lostMachine } = await import('./handlers/lost-machine')
      const found = await lostMachine(ctx.input, ctx)
      if (!found) return
      // Said first: the ledger's record must not hold the line back.
      ownLines(io.stdout, `${workflowCommand('error', found.says)}\n`)
      ctx.log.failure(found.says)
      await found.record()
    },
    (e, log) => log?.debug(`could not find out what became of the job's machine: ${formatError(e)}`)
  )
}

/**
 * What a command that failed with `err` failed of: a command stopped for a failure of ours (the
 * agent's lost lease) fails with it, not as a cancel; anything else after a cancel is the cancel.
 */
export function causeOf(err: unknown, signal: AbortSignal): unknown {
  const reason: unknown = signal.aborted ? signal.reason : undefined
  if (reason instanceof HookError) return reason
  return signal.aborted && !(err instanceof Cancelled) ? Cancelled.by(signal) : err
}

/**
 * Prints a failure as the runner shows it and returns its exit code. Anything that fails after a
 * cancel is the cancel (a remote command stopped half-way fails in its own words).
 */
export function report(err: unknown, io: { signal: AbortSignal; stdout: Sink; stderr: Sink }, log?: Log): number {
  const cause = causeOf(err, io.signal)
  // Masked as the log masks: the step log must not show what the command's own lines hid.
  const mask = log ? (s: string): string => log.mask(s) : undefined
  const o = outcomeOf(cause, mask)
  // A failure whose undo a later cancel cut is still said beside the cancel's note: it is why the
  // command failed. The exit code stays the cancel's.
  const said = cause instanceof Cancelled && failedBeforeCancel(err) ? err : cause
  const errorLine = said === cause ? o.errorLine : outcomeOf(said, mask).errorLine
  if (o.note) ownLines(io.stderr, o.note)
  if (errorLine) ownLines(io.stdout, errorLine)
  if (log && errorLine) {
    log.failure(formatError(said))
    // Reading .stack formats it through the source map (tens of ms): only when it is written.
    if (log.debugEnabled) log.debug(said instanceof Error && said.stack ? said.stack : formatError(said))
  }
  return o.code
}

/**
 * A log for a failure that came before the command's own (bad input, a config error, a refused
 * response file; the hook's fast path losing the job's agent): the configured file when the config
 * loads and names one outside the runner's work folder, else the default file. Undefined when the
 * runner's folders are unknown (RUNNER_TEMP unset), when the file would be inside them, or when it
 * cannot be opened privately; the step log has the error line either way.
 */
export async function failureLog(
  env: Record<string, string | undefined>,
  io: Pick<ExecuteIo, 'cwd' | 'stdout' | 'place'>
): Promise<Log | undefined> {
  let runner: RunnerEnv
  let inJobFolders: (path: string, runner: RunnerEnv) => string | null
  try {
    runner = (await import('./runner-env')).readRunnerEnv(env, io.cwd)
    inJobFolders = (await import('./tools')).inJobFolders
  } catch {
    // Without the runner's folders nothing can be told to be outside them (steps copy those to the VM).
    return undefined
  }
  let file = io.place.defaultLogFile
  let level = 'info'
  try {
    const { loadConfig, systemConfigIo } = await import('./config')
    const config = loadConfig(env, systemConfigIo)
    level = config.log.level
    if (config.log.file && !inJobFolders(config.log.file, runner)) file = config.log.file
  } catch {
    // No usable config: the default file.
  }
  // A TMPDIR inside the runner's work folder (refused as a config error) holds the default file too.
  if (inJobFolders(file, runner)) return undefined
  try {
    const { createLog } = await import('./log')
    return createLog({ file, level, debugToStepLog: false, out: (line) => ownLines(io.stdout, line + '\n') })
  } catch {
    return undefined
  }
}

/** Input, config and runner environment validated, response file checked. */
async function prepared(raw: string, env: Record<string, string | undefined>, io: ExecuteIo): Promise<HookContext & { input: HookInput }> {
  const { parseHookInput, assertResponseFile } = await import('./protocol')
  const { loadConfig, systemConfigIo } = await import('./config')
  const { readRunnerEnv } = await import('./runner-env')
  const input = parseHookInput(raw)
  const config = loadConfig(env, systemConfigIo)
  const runner = readRunnerEnv(env, io.cwd)
  const { resolveTools, useTools, inJobFolders } = await import('./tools')
  useTools(resolveTools(config.tools, runner))
  // Keys, sockets, the sync base and other jobs' log lines: never where a step's push copies them to the VM.
  const logFile = config.log.file ?? io.place.defaultLogFile
  const kept = [
    ['TMPDIR', io.place.localRoot, "the hook's private folder: keys, sockets, the sync base"],
    // The default log file is under TMPDIR too: one line says it.
    ...(config.log.file ? [['log.file', logFile, "every job's log lines"]] : [])
  ].flatMap(([name, path, why]) => {
    const inside = inJobFolders(path, runner)
    return inside
      ? [`${name}: ${path} (${why}) is inside the runner's work folder ${inside}, which steps copy to the VM: use a folder outside it`]
      : []
  })
  if (kept.length) throw new ConfigError(kept)
  await assertResponseFile(input.responseFile)
  const { createLog } = await import('./log')
  const localRoot = ensurePrivateDir(io.place.localRoot)
  const log = createLog({
    file: logFile,
    level: runner.debug ? 'debug' : config.log.level,
    debugToStepLog: runner.debug,
    out: (line) => ownLines(io.stdout, line + '\n')
  })
  const { hookPath, nodePath } = io.place
  return {
    config,
    runner,
    log,
    signal: io.signal,
    hookPath,
    nodePath,
    stdout: io.stdout,
    stderr: io.stderr,
    localRoot,
    remote: io.remote,
    remoteAt: io.remoteAt,
    ledgerClock: ledgerClockFrom(env),
    beatMs: beatPeriodFrom(env),
    respond: async (response) => (await import('./protocol')).writeResponse(input.responseFile, response),
    input
  }
}
