// After a step failed for its connection (exit 75): the provider's word on what became of the job's
// machine, e.g. an EC2 instance interrupted by Spot or shut down from inside. Runs in the hook
// process, never in the agent: only the hook has the cloud credentials.
import type { HookContext } from '../context'
import type { HookInput } from '../protocol'
import { decodeState, leaseOf, stateFacts } from '../state'
import { providerFor } from '../providers/factory'
import type { LostMachine } from '../providers/provider'
import { jobFleet } from '../fleet/job-fleet'
import { recordLost } from '../fleet/job-ledger-writes'

/** The lookup gives up after this: the step has failed already and the runner waits on the hook. */
export const LOSS_LOOKUP_MS = 20_000

export async function lostMachine(input: HookInput, ctx: HookContext, limitMs = LOSS_LOOKUP_MS): Promise<string | null> {
  if (input.command !== 'run_script_step' && input.command !== 'run_container_step') return null
  const state = decodeState(input.state, stateFacts(ctx))
  const provider = providerFor(ctx.config)
  if (!state || !provider.whyLost || state.host.kind !== provider.kind) return null
  // A plain timer, not AbortSignal.any([.., AbortSignal.timeout()]): `any` holds its sources weakly,
  // and a timeout signal nothing else references is collected with its timer (it then never fires).
  const stop = new AbortController()
  const reason = (r: unknown): Error => (r instanceof Error ? r : new Error(`stopped (${String(r)})`))
  const end = (r: unknown): void => void (stop.signal.aborted || stop.abort(reason(r)))
  const onCancel = (): void => end(ctx.signal.reason)
  const timer = setTimeout(() => end(new Error(`no answer within ${limitMs / 1000} s`)), limitMs)
  if (ctx.signal.aborted) onCancel()
  else ctx.signal.addEventListener('abort', onCancel, { once: true })
  // Raced here as well: the SDK heeds the signal in its HTTP call only, not while it resolves
  // credentials (a credential_process, STS, SSO), so the bound and a cancel hold whatever it waits on.
  const stopped = new Promise<never>((_resolve, reject) => {
    if (stop.signal.aborted) reject(stop.signal.reason)
    else stop.signal.addEventListener('abort', () => reject(stop.signal.reason), { once: true })
  })
  let lost: LostMachine | null
  try {
    lost = await Promise.race([provider.whyLost(leaseOf(state.host), { log: ctx.log, signal: stop.signal }), stopped])
  } finally {
    clearTimeout(timer)
    ctx.signal.removeEventListener('abort', onCancel)
    end('done')
  }
  if (!lost) return null
  // For `report`: how often machines go away under steps, and why (Spot interruptions above all).
  await recordLost(jobFleet(ctx, state.jobId), (m) => ctx.log.warn(m), lost.cause)
  return lost.says
}
