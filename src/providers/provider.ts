// The seam providers plug into: a per-job CLI only needs to get a machine, give it back, and find
// what a lost job left behind.
import type { HookContext } from '../context'
import type { ConnectInfo, Remote } from '../remote/remote'
import type { Config } from '../config'

export interface Lease {
  /** Static hosts: index in provider.hosts and slot; EC2: -1 and 0. */
  index: number
  slot: number
  /** EC2: the instance made for the job. */
  instanceId?: string
  connect: ConnectInfo
}

export interface Acquired {
  lease: Lease
  remote: Remote
}

export interface AcquireContext {
  jobId: string
  owner: string
  /** The job's local 0700 folder: per-job keys and known_hosts live there. */
  localDir: string
  open: (c: ConnectInfo) => Promise<Remote>
  /** Closes a connection the provider opened but does not keep. */
  discard: (c: ConnectInfo, r: Remote) => Promise<void>
}

export interface VmProvider {
  readonly kind: string
  /** Gets a machine for the job and an open connection to it; owner marks are set at creation. */
  acquire(ctx: HookContext, a: AcquireContext): Promise<Acquired>
  /** Gives the machine back. Idempotent: an unknown or already released lease is fine. */
  release(ctx: HookContext, remote: Remote | null, lease: Lease, jobId: string): Promise<void>
  /** Whether releasing the machine also destroys everything on it (no need to clean it first). */
  readonly releaseDestroys: boolean
  /** Removes what lost jobs of this runner left (cleanup with `state: null`); returns a summary. */
  cleanupOrphans(ctx: HookContext, owner: string): Promise<string>
}

export async function providerFor(config: Config): Promise<VmProvider> {
  const p = config.provider
  if (p.kind === 'ec2') return new (await import('./ec2')).Ec2Provider(p, config.remote.workRoot)
  return new (await import('./static-host')).StaticHostProvider(p, config.remote.workRoot)
}
