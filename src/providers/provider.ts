// The seam providers plug into: a per-job CLI only needs to get a machine, give it back, and find
// what a lost job left behind.
import type { HookContext } from '../context'
import type { ConnectInfo, Remote } from '../remote/remote'

export interface Lease {
  index: number
  slot: number
  connect: ConnectInfo
}

export interface Acquired {
  lease: Lease
  remote: Remote
}

export interface VmProvider {
  readonly kind: string
  /** Gets a machine for the job and an open connection to it; owner marks are set at creation. */
  acquire(ctx: HookContext, jobId: string, open: (c: ConnectInfo) => Promise<Remote>, discard: (c: ConnectInfo, r: Remote) => Promise<void>): Promise<Acquired>
  /** Gives the machine back. Idempotent: an unknown or already released lease is fine. */
  release(ctx: HookContext, remote: Remote, lease: Lease, jobId: string): Promise<void>
  /** Every machine a lost job of this runner might have used (cleanup with `state: null`). */
  candidates(): Lease[]
}
