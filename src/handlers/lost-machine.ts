// After a step failed for its connection (exit 75): the provider's word on what became of the job's
// machine, e.g. an EC2 instance interrupted by Spot or shut down from inside. Runs in the hook
// process, never in the agent: only the hook has the cloud credentials.
import type { HookContext } from '../context'
import type { HookInput } from '../protocol'
import { decodeState, leaseOf, stateFacts } from '../state'
import { providerFor } from '../providers/factory'

/** The lookup gives up after this: the step has failed already and the runner waits on the hook. */
export const LOSS_LOOKUP_MS = 20_000

export async function lostMachine(input: HookInput, ctx: HookContext): Promise<string | null> {
  if (input.command !== 'run_script_step' && input.command !== 'run_container_step') return null
  const state = decodeState(input.state, stateFacts(ctx))
  const provider = providerFor(ctx.config)
  if (!state || !provider.whyLost || state.host.kind !== provider.kind) return null
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(LOSS_LOOKUP_MS)])
  return provider.whyLost(leaseOf(state.host), { log: ctx.log, signal })
}
