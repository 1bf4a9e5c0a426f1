// The one entry point and the one place that touches `process`: reads stdin, config and the
// runner's environment, dispatches to a handler, writes the response and sets the exit code.
// `__agent` and `__rsh` are internal modes of the same file (the per-job agent, rsync's transport).
import { readFileSync, accessSync, constants, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { ConfigError, Cancelled, InputError, StepFailed, TransportError, formatError } from './errors'
import { assertResponseFile, parseHookInput, writeResponse, type HookInput } from './protocol'
import { loadConfig } from './config'
import { readRunnerEnv } from './runner-env'
import { createLog, type Log } from './log'
import { decodeState } from './state'
import type { HandlerResult, HookContext } from './context'

const EXIT = { input: 64, config: 78, transport: 75, internal: 70 } as const

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return ''
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function fail(err: unknown, log?: Log): number {
  const msg = formatError(err)
  if (err instanceof StepFailed) return err.exitCode
  if (err instanceof Cancelled) {
    process.stderr.write(`[remote-hooks] ${msg}; the remote process was stopped\n`)
    return err.signal === 'SIGTERM' ? 143 : 130
  }
  process.stdout.write(`::error::${msg.replace(/\r?\n/g, ' ')}\n`)
  if (log) log.debug(err instanceof Error && err.stack ? err.stack : msg)
  if (err instanceof InputError) return EXIT.input
  if (err instanceof ConfigError) return EXIT.config
  if (err instanceof TransportError) return EXIT.transport
  return EXIT.internal
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

  let input: HookInput
  let log: Log | undefined
  try {
    input = parseHookInput(await readStdin())
    const config = loadConfig(process.env, {
      readFile: (p) => readFileSync(p, 'utf8'),
      canRead: (p) => {
        try {
          accessSync(p, constants.R_OK)
          return statSync(p).isFile() ? null : 'not a file'
        } catch (e) {
          return (e as NodeJS.ErrnoException).code ?? 'unreadable'
        }
      }
    })
    const runner = readRunnerEnv(process.env, process.cwd())
    await assertResponseFile(input.responseFile)
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0
    log = createLog({
      file: config.log.file ?? `${tmpdir()}/remote-container-hooks-${uid}/hook.log`,
      level: runner.debug ? 'debug' : config.log.level,
      debugToStepLog: runner.debug,
      out: (line) => process.stdout.write(line + '\n')
    })
    const ctx: HookContext = {
      config,
      runner,
      log,
      signal: controller.signal,
      hookPath: process.argv[1],
      nodePath: process.execPath,
      stdout: process.stdout,
      stderr: process.stderr,
      localRoot: `${tmpdir()}/rch-${uid}`
    }
    const state = decodeState(input.state)
    let result: HandlerResult
    // Handlers are loaded on demand so each command pays only for what it uses.
    switch (input.command) {
      case 'prepare_job':
        result = await (await import('./handlers/prepare-job')).prepareJob(input.args, ctx)
        break
      case 'run_script_step':
        result = await (await import('./handlers/run-script-step')).runScriptStep(input.args, state, ctx)
        break
      case 'run_container_step':
        result = await (await import('./handlers/run-container-step')).runContainerStep(input.args, state, ctx)
        break
      case 'cleanup_job':
        result = await (await import('./handlers/cleanup-job')).cleanupJob(state, ctx)
        break
    }
    if (result.response) await writeResponse(input.responseFile, result.response)
    return result.exitCode
  } catch (err) {
    if (controller.signal.aborted && !(err instanceof Cancelled)) return fail(new Cancelled(String(controller.signal.reason)), log)
    return fail(err, log)
  } finally {
    await log?.close()
  }
}

async function agent(payload: string): Promise<number> {
  const { runAgent } = await import('./remote/agent')
  const opts = JSON.parse(payload)
  const say = (m: string): void => void process.stderr.write(`${new Date().toISOString()} agent ${process.pid}: ${m}\n`)
  try {
    return await runAgent(opts, say)
  } catch (e) {
    say(formatError(e))
    return 1
  }
}

/** rsync's `-e` transport: `__rsh SOCKET [-l user] host command…` over the job's agent. */
async function rsh(args: string[]): Promise<number> {
  const { MuxRemote } = await import('./remote/mux-client')
  const [socket, ...rest] = args
  while (rest[0]?.startsWith('-')) rest.splice(0, rest[0] === '-l' || rest[0] === '-p' ? 2 : 1)
  rest.shift() // host
  const ch = await new MuxRemote(socket).openExec(rest.join(' '))
  process.stdin.pipe(ch.stdin)
  ch.stdout.pipe(process.stdout)
  ch.stderr.pipe(process.stderr)
  const st = await ch.done
  return st.code ?? 255
}

async function main(): Promise<void> {
  const mode = process.argv[2]
  let code: number
  if (mode === '__agent') code = await agent(process.argv[3])
  else if (mode === '__rsh') code = await rsh(process.argv.slice(3)).catch((e) => (process.stderr.write(`${formatError(e)}\n`), 255))
  else if (mode === '--version') {
    process.stdout.write('remote-container-hooks 0.1.0\n')
    code = 0
  } else code = await hook()
  process.exitCode = code
  // Open handles (an idle socket) must not keep the hook alive after its work is done.
  if (mode !== '__agent') setTimeout(() => process.exit(code), 50).unref()
  else process.exit(code)
}

void main()
