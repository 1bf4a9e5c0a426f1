// What both step handlers do when a step fails: word the error as the connection check finds it,
// and bring back what the step wrote, as the runner reads a failed step's file commands too.
import type { HookContext } from '../context'
import { Cancelled, TransportError, formatError } from '../errors'
import { blameOf, type Remote } from '../remote/remote'
import { pull, type SyncTarget } from '../sync/sync'
import { StepShellFailed } from '../docker/warm-shell'

/**
 * Whether a step's failure is its connection's loss (not a stream the VM broke on a working one):
 * then nothing is known of its processes, which may run on, nor can what it wrote come back.
 */
export const connectionLost = (err: unknown): boolean => err instanceof TransportError && err.kind !== 'stream'

/**
 * The error of a step that failed, as `blameOf` words it (a lost stream on a connection that still
 * runs a command is the VM's doing: kind `stream`). When the step may have run and its end could not
 * be learned (`ran`), and the connection still works, what it wrote (file commands, the workspace)
 * is pulled back first; never after a cancel. A pull-back that fails too is logged: the step's own
 * error stands.
 */
export async function failedStep(
  e: unknown,
  remote: Remote,
  ctx: Pick<HookContext, 'signal' | 'log'>,
  ran: { target: SyncTarget; roots: string[]; what: string } | null
): Promise<unknown> {
  const blamed = await blameOf(e, remote, ctx.signal)
  // The step shell's end on a connection that does not answer either: the connection was lost,
  // which the shell's words ("the step shell ended …") would put on the job.
  const err =
    blamed instanceof StepShellFailed
      ? new TransportError(`the connection to the machine was lost during the step (${blamed.message})`, blamed.kind, { cause: blamed })
      : blamed
  if (ran && !connectionLost(err) && !ctx.signal.aborted && !(err instanceof Cancelled))
    await pull(ran.target, ran.roots).catch((p: unknown) => ctx.log.debug(`pull-back after the failed ${ran.what}: ${formatError(p)}`))
  return err
}
