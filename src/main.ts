// The one entry point and the one place that touches `process`: reads stdin and the environment,
// hands a step to the job's agent or runs the command itself through execute() (execute.ts, the same
// path the agent takes), and sets the exit code.
// `__agent` and `__rsh` are internal modes of the same file (the per-job agent, rsync's transport).
import { dirname } from 'node:path'
import { errnoOf, formatError, HookError } from './errors'
import { jobSocket, runViaAgent, stepJob, type StepJob } from './agent-client'
import { flushed } from './remote/mux-frames'
import { checkPrivateDir } from './private-fs'
import { stepEnv, stepOwnersOf } from './runner-env'
import { SYSTEM_PATH } from './tools'
import type { ExecuteIo, HookPlace } from './execute'
import type { AgentOptions, RunIo, RunResult } from './remote/agent'
import { version } from '../package.json'
import { usage } from './usage'
import { BUILD_ID } from './build-id'
import { isOpCommand, NO_REQUEST_AT_TERMINAL, notACommand, type OpName } from './ops/names'
import { defaultLogFile, hookLocalRoot } from './paths'
import { ownLines } from './line-start'
import { workflowCommand } from './workflow-commands'
import { BEAT_LAND_MS, beatDue, beatPeriodFrom } from './fleet/beat-period'

// Everything but the step fast path is imported lazily: a step whose job has an agent then costs
// this process no more than reading stdin and one local socket (see agent-client.ts).

const place = (): HookPlace => ({
  hookPath: process.argv[1],
  nodePath: process.execPath,
  localRoot: hookLocalRoot(),
  defaultLogFile: defaultLogFile()
})

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return ''
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

async function hook(): Promise<number> {
  const controller = new AbortController()
  let signals = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals > 2) process.exit(sig === 'SIGTERM' ? 143 : 130)
    if (!controller.signal.aborted) controller.abort(sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // The runner closed the hook's output (its worker died): a write then fails with EPIPE, which
  // unheard ended the process at once, before prepare_job's undo. Stopped as a cancel is, with its
  // own reason (written to the file log), so what the command started is undone.
  const onOutputClosed = (e: NodeJS.ErrnoException): void => {
    if (!controller.signal.aborted)
      controller.abort(new HookError(`the runner closed the hook's output (${errnoOf(e)}); the command was stopped`))
  }
  process.stdout.on('error', onOutputClosed)
  process.stderr.on('error', onOutputClosed)

  const io = { cwd: process.cwd(), signal: controller.signal, stdout: process.stdout, stderr: process.stderr, place: place() }
  // The runner starts the hook in the job's workspace, which the job fills (pull-back): what this
  // process starts (the AWS SDK's credential_process, rsync, ssh, the job's agent) must not run in
  // it and find a file the job put there by a relative name. The workspace stays known as io.cwd.
  process.chdir('/')
  let raw = ''
  let ended: RunResult
  let beats = NO_BEATS
  try {
    raw = await readStdin()
    watchParent(raw, controller)
    // A step's job, derived once from the request for its heartbeats and its agent.
    const job = stepJob(raw, io.place.localRoot, stepOwnersOf(process.env))
    beats = stepHeartbeats(raw, job, io.place.localRoot)
    ended = await command(raw, io, job)
  } catch (err) {
    const { report, lostConnection, causeOf, failureLog } = await import('./execute')
    // Failed in this process before any command's own log (the job's agent lost): to the file log too.
    const log = await failureLog(process.env, io)
    const code = report(err, io, log)
    await log?.close()
    ended = { code, lost: lostConnection(causeOf(err, io.signal), code) }
  }
  // A step that lost its machine's connection (not one that exited 75 itself): the provider says
  // what became of the machine.
  if (ended.lost && !controller.signal.aborted && STEP_COMMAND.test(raw))
    await (await import('./execute')).explainLoss(raw, process.env, io)
  // A cancelled step does not wait: the runner kills the hook soon after its signals.
  const missed = controller.signal.aborted ? null : await beats.landed()
  // Said at the step's end, after its output: reap ends a job whose heartbeats stop.
  if (missed)
    ownLines(
      io.stdout,
      `${workflowCommand('warning', `the fleet ledger did not take this step's heartbeat (${missed}): a job without one for fleet.reap.deadAfterMinutes is judged dead by reap, which ends its machine`)}\n`
    )
  return ended.code
}

const STEP_COMMAND = /"command"\s*:\s*"run_(script|container)_step"/

/** Whether the request is cleanup_job's: its `command` field, not the words anywhere (an env var may be named so). */
function isCleanup(raw: string): boolean {
  if (!/"command"\s*:\s*"cleanup_job"/.test(raw)) return false
  try {
    return (JSON.parse(raw) as { command?: unknown }).command === 'cleanup_job'
  } catch {
    return false
  }
}

/** How often a command looks whether the runner's worker (its parent) is still there. */
const PARENT_CHECK_MS = 1000

/**
 * The runner's worker is the hook's parent. Once it is gone (killed, out of memory) nobody reads
 * what the command gives back and no cleanup_job may come: prepare_job and steps stop as on a
 * cancel (prepare_job's undo gives the machine back; a step's remote process is stopped, and its
 * heartbeats end, so reap judges the job dead). cleanup_job runs on: it gives the machine back.
 */
function watchParent(raw: string, controller: AbortController): void {
  if (isCleanup(raw)) return
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent || controller.signal.aborted) return
    clearInterval(timer)
    controller.abort(new HookError(`the runner's worker process (pid ${parent}) is gone; the command was stopped`))
  }, PARENT_CHECK_MS).unref()
}

/** Runs one hook command: through the job's agent when it has one, else in this process. */
async function command(raw: string, io: ExecuteIo, job: StepJob | null): Promise<RunResult> {
  const socket = job && jobSocket(job)
  // Nothing goes to a socket whose folders another user could have made (missing: no agent yet).
  if (socket && checkPrivateDir(io.place.localRoot) && checkPrivateDir(dirname(socket))) {
    const exit = await runViaAgent(socket, { raw, env: stepEnv(process.env), cwd: io.cwd }, io, io.signal)
    if (exit !== null) return exit
  }
  // No agent (or not a step): the command runs in this process.
  const { execute } = await import('./execute')
  return execute(raw, process.env, io)
}

interface Beats {
  /**
   * Resolves once the heartbeat on its way, if any, has landed (or a bounded wait is over): with why
   * the first of the step's heartbeats that failed did, or null.
   */
  landed(): Promise<string | null>
}
const NO_BEATS: Beats = { landed: () => Promise.resolve(null) }

/**
 * While a step of a launched machine runs, its reservation gets a heartbeat every minute (see
 * fleet/step-beat.ts). Only a timer here: nothing is loaded unless the step outlives a period or
 * the job's last heartbeat is a period old.
 */
function stepHeartbeats(raw: string, job: StepJob | null, localRoot: string): Beats {
  if (!STEP_COMMAND.test(raw) || !raw.includes('"reservation"')) return NO_BEATS
  const every = beatPeriodFrom(process.env)
  // The job's folder stamps its last heartbeat: a step that starts a period or more after it beats
  // at once, so a run of steps each shorter than the period (which never reach the timer) still
  // beats about once a period.
  let jobDir: string | null = null
  try {
    jobDir = job && checkPrivateDir(localRoot) && checkPrivateDir(job.dir) ? job.dir : null
  } catch {
    jobDir = null
  }
  let beating: Promise<void> | null = null
  let failed: string | null = null
  const beat = (): void => {
    if (beating) return
    beating = import('./fleet/step-beat')
      .then((m) => m.beatOnce(raw, process.env, localRoot, jobDir))
      .catch((e: unknown) => void (failed ??= formatError(e)))
      .finally(() => (beating = null))
  }
  // Without a job folder to stamp, every step beats at once (the timer alone misses short steps).
  if (!jobDir || beatDue(jobDir, every)) beat()
  setInterval(beat, every).unref()
  return {
    // A step shorter than the ledger's round trip would otherwise exit under its beat.
    async landed() {
      if (beating) await (await import('./retry')).settlesWithin(beating, BEAT_LAND_MS)
      return failed
    }
  }
}

async function agent(payload: string): Promise<number> {
  const { runAgent } = await import('./remote/agent')
  const { agentEntry, OTHER_BUILD_EXIT } = await import('./remote/agent-failure')
  const opts = JSON.parse(payload) as AgentOptions
  const say = (m: string): void => void process.stderr.write(agentEntry(m))
  // Started by a hook of another build (this file replaced it after that hook started): that hook
  // would talk to this agent as to one of its own build. Nothing is served.
  if (opts.build !== BUILD_ID) {
    say(
      `this file is build ${BUILD_ID}, the hook that started the agent ${opts.build ? `build ${opts.build}` : 'an older build'}: not started`
    )
    return OTHER_BUILD_EXIT
  }
  const { betweenSteps } = await import('./sync/early-push')
  betweenSteps.onFailure = (e) => say(`early push failed (the step's own push sends the files): ${formatError(e)}`)
  betweenSteps.ownSocket = opts.socketPath
  betweenSteps.worker = opts.worker ?? null
  // The agent's socket is in the job's local folder (agent-client.ts jobSocket).
  ;(await import('./sync/warm-base')).warmBase(dirname(opts.socketPath))
  // The agent's side of the step fast path: the same execute() as the hook, with the agent's
  // connection; a step runs only on the machine it reaches (session.ts openJobRemote).
  const runInAgent = async (req: Record<string, unknown>, io: RunIo): Promise<RunResult> =>
    (await import('./execute')).executeRequest(req, { ...io, place: place(), remoteAt: opts.connect })
  try {
    return await runAgent(opts, say, runInAgent, betweenSteps)
  } catch (e) {
    say(formatError(e))
    return 1
  }
}

/** rsync's `-e` transport: `__rsh SOCKET [-l user] host command…` over the job's agent. */
async function rsh(args: string[]): Promise<number> {
  const { MuxRemote } = await import('./remote/mux-client')
  const [socket, ...rest] = args
  // Its socket is named for the build of the command that started rsync (agent-client.ts): another
  // build's means this file replaced that command's after it started.
  if (!socket?.endsWith(`-${BUILD_ID}.sock`)) {
    const { replacedWhileRunning } = await import('./remote/agent-failure')
    process.stderr.write(`${replacedWhileRunning(process.argv[1])}: ${socket} is not an agent of this build (${BUILD_ID})\n`)
    return 255
  }
  while (rest[0]?.startsWith('-')) rest.splice(0, rest[0] === '-l' || rest[0] === '-p' ? 2 : 1)
  rest.shift() // host
  const ch = await new MuxRemote(socket).openExec(rest.join(' '))
  process.stdin.pipe(ch.stdin)
  ch.stdout.pipe(process.stdout)
  ch.stderr.pipe(process.stderr)
  const st = await ch.done
  return st.code ?? 255
}

/** An operator command (check-config, doctor): its code is loaded only now, never on the hook's path. */
async function operatorCommand(name: OpName, argv: string[]): Promise<number> {
  const { runOpCommand } = await import('./ops/cli')
  // No signal handlers: Ctrl-C ends a read-only command at once, as any command-line tool.
  const signal = new AbortController().signal
  return runOpCommand(name, argv, { env: process.env, stdout: process.stdout, stderr: process.stderr, signal })
}

async function main(): Promise<void> {
  // The runner puts the job's GITHUB_PATH entries first on this process's PATH: whatever starts a
  // program without an explicit environment (the AWS SDK's credential_process, for one) must not
  // find the job's programs.
  process.env.PATH = SYSTEM_PATH
  // The AWS SDK warns about Node 20 on every load; the runner's node is not ours to choose and the
  // step log is no place for it.
  const emit = process.emitWarning.bind(process)
  process.emitWarning = (w: string | Error, ...rest: unknown[]) => {
    const name = typeof w === 'string' ? (typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string })?.type) : w.name
    if (name === 'NodeVersionSupportWarning' || String(typeof w === 'string' ? w : w.message).startsWith('NodeVersionSupportWarning'))
      return
    ;(emit as (...a: unknown[]) => void)(w, ...rest)
  }
  const mode = process.argv[2]
  let code: number
  if (mode === '__agent') code = await agent(process.argv[3])
  else if (mode === '__rsh') code = await rsh(process.argv.slice(3)).catch((e) => (process.stderr.write(`${formatError(e)}\n`), 255))
  else if (mode === '--version') {
    // The build id names the agent sockets: it tells which build a running agent belongs to.
    process.stdout.write(`remote-container-hooks ${version} (build ${BUILD_ID})\n`)
    code = 0
  } else if (mode === '--help' || mode === '-h') {
    process.stdout.write(usage(version))
    code = 0
  } else if (isOpCommand(mode)) code = await operatorCommand(mode, process.argv.slice(3))
  else if (mode !== undefined || process.stdin.isTTY) {
    process.stderr.write(mode !== undefined ? notACommand(mode) : NO_REQUEST_AT_TERMINAL)
    code = 64
  } else code = await hook()
  // An exit drops whatever a slow reader has not yet taken from stdout/stderr, whichever path wrote it.
  if (mode !== '__agent') await Promise.all([flushed(process.stdout), flushed(process.stderr)])
  process.exitCode = code
  // Open handles (an idle socket) must not keep the hook alive after its work is done.
  if (mode !== '__agent') setTimeout(() => process.exit(code), 50).unref()
  else process.exit(code)
}

// The one exit for what main() does not catch itself: a part imported on demand that failed to load
// (with the loader's exit code, named by its own message), and a throw no
// promise holds (node would print its stack raw to stderr, where the runner reads workflow commands
// at the start of every line: text from a VM in its message could issue one). Only the hook's stdout
// is the step log: an operator command's is its data (a report, a .prom file), rsync's transport's
// (`__rsh`) rsync's own stream. The agent's crash stays node's own, in the agent's private log, where
// the hook reads its reason (remote/agent-failure.ts).
function fatal(what: string, e: unknown): void {
  const mode = process.argv[2]
  ownLines(
    mode === undefined ? process.stdout : process.stderr,
    `${workflowCommand('error', `remote-container-hooks ${what} (${formatError(e)})`)}\n`
  )
  process.exit(70)
}
if (process.argv[2] !== '__agent') {
  process.on('uncaughtException', (e) => fatal('failed', e))
  process.on('unhandledRejection', (e) => fatal('failed', e))
}
// What escapes main() is not always a load failure: named by its own message.
main().catch((e: unknown) => fatal('failed', e))
