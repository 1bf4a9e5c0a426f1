// Command → handler. Handlers are loaded on demand so each command pays only for what it uses.
import type { HandlerResult, HookContext } from './context'
import type { HookInput } from './protocol'
import { decodeState, onJobMachine, stateFacts } from './state'
import { workRootOf } from './providers/factory'

export async function dispatch(input: HookInput, ctx: HookContext): Promise<HandlerResult> {
  // cleanup_job checks the state itself: a state it cannot trust still gets this runner cleaned up.
  if (input.command === 'cleanup_job') return (await import('./handlers/cleanup-job')).cleanupJob(input.state, ctx)
  const state = decodeState(input.state, stateFacts(ctx))
  if (state) ctx = onJobMachine(ctx, workRootOf(ctx.config, state.host))
  switch (input.command) {
    case 'prepare_job':
      return (await import('./handlers/prepare-job')).prepareJob(input.args, ctx)
    case 'run_script_step':
      return (await import('./handlers/run-script-step')).runScriptStep(input.args, state, ctx)
    case 'run_container_step':
      return (await import('./handlers/run-container-step')).runContainerStep(input.args, state, ctx)
  }
}
