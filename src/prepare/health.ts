// Waiting until the started containers run and, where they have a HEALTHCHECK, report healthy. A
// container that stops or turns unhealthy fails at once with its log shown; the inspections that
// ended the wait are returned, so the response needs no further inspect.
import type { HookContext } from '../context'
import { formatError, HookError } from '../errors'
import { waitUntil, type Clock } from '../retry'
import type { Inspect } from '../docker/steps'
import type { RemoteDocker } from '../docker/remote-docker'

export interface Started {
  id: string
  image: string
  what: string
}

class NotHealthyInTime extends HookError {}

export async function waitHealthy(
  ctx: Pick<HookContext, 'config' | 'log' | 'signal'>,
  docker: RemoteDocker,
  containers: Started[],
  clock?: Clock
): Promise<Map<string, Inspect>> {
  const ready = new Map<string, Inspect>()
  const pending = new Set(containers)
  const names = (): string => [...pending].map((p) => p.what).join(', ')
  // The failure that asked for the log stays the failure: a log that cannot be read is said in its place.
  const showLogs = async (c: Started): Promise<void> =>
    ctx.log.foreign(
      `${c.what} (${c.image}) logs`,
      await docker.logs(c.id).catch((e: unknown) => `(its log could not be read: ${formatError(e)})`)
    )
  const seconds = ctx.config.timeouts.healthSeconds
  try {
    return await waitUntil(
      async () => {
        const infos = await Promise.all([...pending].map(async (c) => [c, await docker.inspect(c.id)] as const))
        for (const [c, info] of infos) {
          const health = info.State.Health?.Status
          if (!info.State.Running) {
            await showLogs(c)
            throw new HookError(`${c.what} (${c.image}) stopped during start-up with exit code ${info.State.ExitCode}`)
          }
          if (health === 'unhealthy') {
            await showLogs(c)
            throw new HookError(`${c.what} (${c.image}) is unhealthy`)
          }
          if (!health || health === 'healthy') {
            pending.delete(c)
            ready.set(c.id, info)
          }
        }
        return pending.size ? undefined : ready
      },
      {
        timeoutMs: seconds * 1000,
        minDelayMs: 100,
        factor: 2,
        maxDelayMs: 2000,
        jitter: false,
        signal: ctx.signal,
        clock,
        progressEveryMs: 5000,
        onProgress: (p) => ctx.log.progress(`waiting for health: ${names()} (${Math.round(p.elapsedMs / 1000)} s)`),
        onTimeout: () => new NotHealthyInTime(`${names()} not healthy after ${seconds} s (timeouts.healthSeconds)`)
      }
    )
  } catch (e) {
    if (e instanceof NotHealthyInTime) await showLogs([...pending][0])
    throw e
  }
}
