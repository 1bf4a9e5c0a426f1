// After a step failed for its connection (exit 75): the provider's word on what became of the job's
// machine, e.g. an EC2 instance interrupted by Spot or shut down from inside, and its cause on the
// job's ledger record. Runs in the hook process, never in the agent: only the hook has the cloud
// credentials.
import type { HookContext } from '../context'
import type { HookInput } from '../protocol'
import { formatError } from '../errors'
import { whenAborted } from '../retry'
import { decodeState, leaseOf, stateFacts } from '../state'
import { providerFor } from '../providers/factory'
import { jobFleet } from '../fleet/job-fleet'
import { recordLost } from '../fleet/job-ledger-writes'

/** The step has failed already and the runner waits on the hook: the lookup and the record are bounded. */
export const LOSS_LIMITS = { lookupMs: 20_000, recordMs: 5_000 }

export interface FoundLoss {
  /** The step log's line. */
  says: string
  /** Puts the cause on the job's ledger record (for `report`); never throws, a failure is a warning. */
  record(): Promise<void>
}

export async function lostMachine(input: HookInput, ctx: HookContext, limits = LOSS_LIMITS): Promise<FoundLoss | null> {
  if (input.command !== 'run_script_step' && input.command !== 'run_container_step') return null
  const state = decodeState(input.state, stateFacts(ctx))
  const provider = providerFor(ctx.config)
  if (!state || !provider.whyLost || state.host.kind !== provider.kind) return null
  const lost = await within(ctx.signal, limits.lookupMs, (signal) => provider.whyLost!(leaseOf(state.host), { log: ctx.log, signal }))
  if (!lost) return null
  const warn = (m: string): void => ctx.log.warn(m)
  return {
    says: lost.says,
    record: () =>
      within(ctx.signal, limits.recordMs, () => recordLost(jobFleet(ctx, state.jobId), warn, lost.cause, state.host.kind)).catch(
        (e: unknown) => warn(`fleet.ledger: could not record the lost machine: ${formatError(e)}`)
      )
  }
}

/**
 * `work` raced against a plain timer and the job's cancel. Not AbortSignal.any([.., AbortSignal.timeout()]):
 * `any` holds its sources weakly, and a timeout signal nothing else references is collected with its
 * timer (it then never fires). Raced as well as signalled: the AWS SDK heeds its signal in the HTTP
 * call only, not while it resolves credentials, and a ledger may wait on a lock.
 */
async function within<T>(cancel: AbortSignal, limitMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController()
  const reason = (r: unknown): Error => (r instanceof Error ? r : new Error(`stopped (${String(r)})`))
  const end = (r: unknown): void => void (stop.signal.aborted || stop.abort(reason(r)))
  const onCancel = (): void => end(cancel.reason)
  const timer = setTimeout(() => end(new Error(`no answer within ${limitMs / 1000} s`)), limitMs)
  if (cancel.aborted) onCancel()
  else cancel.addEventListener('abort', onCancel, { once: true })
  // Before the work's own listeners: at the bound the race ends with its reason, not the work's.
  const stopped = whenAborted(stop.signal)
  try {
    return await Promise.race([work(stop.signal), stopped])
  } finally {
    clearTimeout(timer)
    cancel.removeEventListener('abort', onCancel)
    end('done')
  }
}
