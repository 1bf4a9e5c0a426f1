// One deadline for every command a hook command runs on the remote. The job can make the VM's
// commands hang (it is root there); cleanup_job must still end, or the runner waits for it forever.
import { HookError } from '../errors'
import type { ExecChannel, Remote } from './remote'

export interface Bounded {
  remote: Remote
  /** Stops the clock (call when the work is over). */
  clear(): void
}

/** `remote`, whose channels are closed and whose calls fail with `message` once `ms` have passed. */
export function withDeadline(remote: Remote, ms: number, message: string): Bounded {
  const open = new Set<ExecChannel>()
  let fail!: (e: Error) => void
  const expired = new Promise<never>((_, reject) => (fail = reject))
  expired.catch(() => undefined)
  const timer = setTimeout(() => {
    // Closing the channel ends the remote command (for the agent's channels, its socket).
    for (const ch of open) {
      ch.stdout.destroy()
      ch.stdin.destroy()
    }
    fail(new HookError(message))
  }, ms)
  return {
    remote: {
      async openExec(command) {
        const ch = await Promise.race([remote.openExec(command), expired])
        open.add(ch)
        const done = Promise.race([ch.done, expired]).finally(() => open.delete(ch))
        return { ...ch, done }
      },
      openSocket: (path) => Promise.race([remote.openSocket(path), expired]),
      close: () => remote.close()
    },
    clear: () => clearTimeout(timer)
  }
}
