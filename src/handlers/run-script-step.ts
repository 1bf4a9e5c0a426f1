// run_script_step: push what the runner wrote on the host, exec the step in the job container with
// its env passed through the Engine API (never a command line), stream output, pull results back.
import type { HandlerResult, HookContext } from '../context'
import { Cancelled, InputError } from '../errors'
import type { ScriptStepArgs } from '../protocol'
import type { HookState } from '../state'
import { keepOf, openJobRemote } from '../session'
import { Engine } from '../docker/engine'
import { createExec, execStep, shellStep, type ExecSpec } from '../docker/steps'
import { newStepMarker } from '../docker/step-stop'
import { noteStep, stepEnded, stopLeftRunning } from '../docker/left-running'
import { jobShell, shellUnfit, type WarmShell } from '../docker/warm-shell'
import { pull, type SyncTarget } from '../sync/sync'
import { betweenSteps } from '../sync/early-push'
import { mb, outputTo, PUSH_ROOTS, syncTarget } from '../job'
import { rejoinArgs } from '../shlex'
import { connectionLost, failedStep } from './failed-step'

export async function runScriptStep(args: ScriptStepArgs, state: HookState | null, ctx: HookContext): Promise<HandlerResult> {
  if (!state?.container)
    throw new InputError('state: run_script_step needs the job container from prepare_job (state is missing or has no container)')
  const t0 = Date.now()
  const remote = await openJobRemote(ctx, state.host, state.localDir, { keep: keepOf(ctx, state.host) })
  const tConnect = Date.now()
  let viaShell: WarmShell | null = null
  // Set while the step runs: a failure to learn its end still brings back what it wrote.
  let running = false
  let target: SyncTarget | null = null
  const marker = newStepMarker()
  try {
    target = syncTarget(ctx, state, remote)
    const env = stepPathEnv(args, state.container.path)
    const engine = new Engine(remote, ctx.config.remote.dockerSocket)
    const spec: ExecSpec = {
      container: state.container.id,
      cmd: [args.entryPoint, ...rejoinArgs(args.entryPointArgs)],
      env,
      workdir: args.workingDirectory,
      marker
    }
    for (const line of await stopLeftRunning(engine, spec.container, state.localDir)) ctx.log.warn(line)
    // In the job's agent, a step goes through the job's step shell when it has one (warm-shell.ts).
    const warm = ctx.remote !== undefined && ctx.config.agent.warmShell
    const unfit = warm ? shellUnfit(spec) : null
    if (unfit) ctx.log.debug(`step shell not used: ${unfit}`)
    const problem = warm ? jobShell.takeProblem() : null
    if (problem) ctx.log.debug(problem)
    // Claimed now, so a step running beside this one uses an exec.
    viaShell = warm && !unfit ? jobShell.take(spec.container) : null
    // The exec is created while the files go up; it starts only once they are there.
    const created = viaShell ? null : createExec(engine, spec)
    created?.catch(() => undefined)
    const up = await betweenSteps.push(target, PUSH_ROOTS)
    if (up.bytes > 1048576)
      ctx.log.progress(`synced ${up.files} files / ${mb(up.bytes)} MB to the remote in ${(up.ms / 1000).toFixed(1)} s`)
    const out = outputTo(ctx.stdout, ctx.stderr)
    const graceMs = ctx.config.timeouts.cancelGraceSeconds * 1000
    // A shell that died during the push (a process an earlier step left behind): this step by exec.
    const usedShell = viaShell?.alive ? viaShell : null
    if (viaShell && !usedShell) ctx.log.debug('the step shell ended before the step started: step by docker exec')
    // Noted before it starts: a step lost with its connection is stopped by the job's next one.
    const unnoted = noteStep(state.localDir, marker)
    if (unnoted) ctx.log.warn(unnoted)
    running = true
    const res = usedShell
      ? await shellStep(usedShell, engine, spec, out, ctx.signal, graceMs)
      : await execStep(remote, engine, spec, out, ctx.signal, graceMs, created ?? createExec(engine, spec))
    running = false
    if (res.stop !== 'unconfirmed') stepEnded(state.localDir, marker)
    if (res.cancelled) throw Cancelled.by(ctx.signal, res.stop)
    // The next step finds the shell running (started now, after this step's exec).
    if (warm && !usedShell) jobShell.after(engine, spec.container)
    // After the step's exit, not its output's end: a process that closed its output early
    // (`exec >log 2>&1; …`) may write files up to its exit.
    const tExec = Date.now()
    const down = await pull(target, state.pullRoots)
    ctx.log.debug(
      `timing: connect ${tConnect - t0} ms, push ${up.ms} ms, exec ${tExec - tConnect - up.ms} ms, pull ${down.ms} ms (listed ${down.listed}${down.why ? `: ${down.why}` : ''}); sync: up ${up.files} files ${up.bytes} B ${up.ms} ms, down ${down.files} files ${down.bytes} B ${down.deleted} deleted ${down.ms} ms; step by ${usedShell ? 'the step shell' : 'docker exec'}`
    )
    if (down.bytes > 1048576) ctx.log.progress(`synced ${down.files} files / ${mb(down.bytes)} MB back in ${(down.ms / 1000).toFixed(1)} s`)
    // In the job's agent: the next step's files may go up before its hook has started.
    if (ctx.remote) {
      if (ctx.config.sync.earlyPush) betweenSteps.arm(target)
      else betweenSteps.disarm()
    }
    return { exitCode: res.exitCode }
  } catch (e) {
    // A claim the step never used (the push failed) frees the shell for the next step.
    viaShell?.release()
    // A step that failed leaves the watch off (an early push must not run beside a pull still going).
    if (ctx.remote) betweenSteps.disarm()
    // A step that ran but whose exit status could not be read (the VM's docker or step shell failed
    // it, the connection still up): its file commands and workspace changes come back.
    const err = await failedStep(e, remote, ctx, running && target ? { target, roots: state.pullRoots, what: 'step' } : null)
    // Failed over a working connection: execStep and shellStep stopped the step's processes before
    // they threw, so nothing of it is left for the next step to stop. A lost one keeps the note.
    if (running && !connectionLost(err)) stepEnded(state.localDir, marker)
    throw err
  } finally {
    remote.close()
  }
}

/**
 * The step's env with its PATH as the runner's own `docker exec` sets it: the job's GITHUB_PATH
 * entries in front of the container's PATH; without any, a PATH the workflow's `env:` sets stands,
 * else the container's.
 */
export function stepPathEnv(
  args: Pick<ScriptStepArgs, 'environmentVariables' | 'prependPath'>,
  containerPath: string
): Record<string, string> {
  const env = { ...args.environmentVariables }
  const prepend = args.prependPath.filter(Boolean)
  if (prepend.length || env.PATH === undefined) env.PATH = [...prepend, containerPath].filter(Boolean).join(':')
  return env
}
