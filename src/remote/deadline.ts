// One deadline for every command a hook command runs on the remote. The job can make the VM's
// commands hang (it is root there); cleanup_job must still end, or the runner waits for it forever.
import { HookError } from '../errors'
import type { Duplex } from 'node:stream'
import type { ExecChannel, Remote } from './remote'

export interface Bounded {
  remote: Remote
  /** Stops the clock (call when the work is over). */
  clear(): void
}

/** `remote`, whose channels are closed and whose calls fail with `message` once `ms` have passed. */
export function withDeadline(remote: Remote, ms: number, message: string): Bounded {
  const open = new Set<ExecChannel>()
  const sockets = new Set<Duplex>()
  let fail!: (e: Error) => void
  const expired = new Promise<never>((_, reject) => (fail = reject))
  expired.catch(() => undefined)
  let expiredNow = false
  const timer = setTimeout(() => {
    expiredNow = true
    // Closing the channel ends the remote command (for the agent's channels, its socket).
    for (const ch of open) {
      ch.stdout.destroy()
      ch.stdin.destroy()
    }
    // The Engine API's sockets too: a docker socket that never answers must not hold cleanup.
    for (const s of sockets) s.destroy(new HookError(message))
    fail(new HookError(message))
  }, ms)
  return {
    remote: {
      async openExec(command) {
        const opening = remote.openExec(command)
        // One that opens after the deadline gave up on it is closed at once, as a socket is below.
        opening.then(
          (ch) => {
            if (!expiredNow) return
            ch.stdout.destroy()
            ch.stdin.destroy()
          },
          () => undefined
        )
        const ch = await Promise.race([opening, expired])
        open.add(ch)
        const done = Promise.race([ch.done, expired]).finally(() => open.delete(ch))
        return { ...ch, done }
      },
      async openSocket(path) {
        const opening = remote.openSocket(path)
        // One that opens after the deadline gave up on it is closed at once, not left to the end.
        opening.then(
          (s) => {
            if (expiredNow) s.destroy()
          },
          () => undefined
        )
        const s = await Promise.race([opening, expired])
        sockets.add(s)
        s.once('close', () => sockets.delete(s))
        return s
      },
      close: () => remote.close()
    },
    clear: () => clearTimeout(timer)
  }
}

/** withDeadline for cleanup work bounded by `timeouts.cleanupSeconds` (`seconds`): its failure names the key and `what`. */
export function cleanupDeadline(remote: Remote, seconds: number, what: string, after = ''): Bounded {
  return withDeadline(remote, seconds * 1000, `timeouts.cleanupSeconds: ${what} took longer than ${seconds} s and was stopped${after}`)
}
