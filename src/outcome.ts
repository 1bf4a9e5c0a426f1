// How a failure ends a hook command: one exit code per kind and at most one `::error::` line.
// Shared by the hook process and the agent (which runs steps on the hook's behalf).
import { ConfigError, Cancelled, InputError, StepFailed, TransportError, formatError } from './errors'

export const EXIT = { input: 64, config: 78, transport: 75, internal: 70 } as const

export interface Outcome {
  code: number
  /** For stdout: the workflow command the runner shows as the step's error. */
  errorLine?: string
  /** For stderr: a plain note (cancellation is not an error of ours). */
  note?: string
}

export function outcomeOf(err: unknown): Outcome {
  const msg = formatError(err)
  if (err instanceof StepFailed) return { code: err.exitCode }
  if (err instanceof Cancelled) return { code: err.signal === 'SIGTERM' ? 143 : 130, note: `[remote-hooks] ${msg}; the remote process was stopped\n` }
  const errorLine = `::error::${msg}\n`
  if (err instanceof InputError) return { code: EXIT.input, errorLine }
  if (err instanceof ConfigError) return { code: EXIT.config, errorLine }
  if (err instanceof TransportError) return { code: EXIT.transport, errorLine }
  return { code: EXIT.internal, errorLine }
}
