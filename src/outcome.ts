// How a failure ends a hook command: one exit code per kind and `::error::` lines (one; one per
// problem for a configuration error, since the runner shows each line as its own annotation).
// Shared by the hook process and the agent (which runs steps on the hook's behalf).
import { ConfigError, Cancelled, InputError, StepFailed, TransportError, clipMessage, formatError } from './errors'
import { workflowCommand } from './workflow-commands'

export const EXIT = { input: 64, config: 78, transport: 75, internal: 70 } as const

export interface Outcome {
  code: number
  /** For stdout: the workflow command(s) the runner shows as the step's error. */
  errorLine?: string
  /** For stderr: a plain note (cancellation is not an error of ours). */
  note?: string
}

/** What a cancel's note adds about the step it stopped (StepStop). */
const STEP_STOP = {
  stopped: "; the step's processes on the remote machine were stopped",
  unconfirmed:
    "; the remote machine did not confirm that the step's processes stopped: the step was cut off, and what is left goes with the job's cleanup",
  none: ''
} as const

/** `mask` hides the secrets the command registered (Log.mask): the error line may quote what a machine printed. */
export function outcomeOf(err: unknown, mask: (s: string) => string = (s) => s): Outcome {
  const msg = clipMessage(mask(formatError(err)))
  if (err instanceof StepFailed) return { code: err.exitCode }
  if (err instanceof Cancelled)
    return { code: err.signal === 'SIGTERM' ? 143 : 130, note: `[remote-hooks] ${msg}${STEP_STOP[err.step ?? 'none']}\n` }
  const errorLine = `${workflowCommand('error', msg)}\n`
  if (err instanceof InputError) return { code: EXIT.input, errorLine }
  if (err instanceof ConfigError)
    return {
      code: EXIT.config,
      errorLine: err.issues.map((i) => `${workflowCommand('error', clipMessage(`invalid configuration: ${i}`))}\n`).join('')
    }
  if (err instanceof TransportError) return { code: EXIT.transport, errorLine }
  return { code: EXIT.internal, errorLine }
}
