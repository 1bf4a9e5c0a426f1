// A failed prepare_job's undo, and cleanup_job, need the machine the job ran on. When what failed
// was the connection itself (a network drop, or the job's agent gone with its own), they would find
// it gone and leave the job's containers, folder and lease behind until a later cleanup. Once
// `rejoin()` is called, a channel that cannot open because the connection or the agent is lost
// opens on one new connection instead, made once for all callers. Before that a loss stays a loss:
// a dropped connection never passes for success. An agent's refusal (the lease is lost) stands.
import { TransportError } from '../errors'
import type { Duplex } from 'node:stream'
import type { ExecChannel, Remote } from './remote'

export class Rejoinable implements Remote {
  private current: Remote
  private fresh: Promise<Remote> | null = null
  private rejoining = false
  private closed = false

  constructor(
    first: Remote,
    private readonly connect: () => Promise<Remote>
  ) {
    this.current = first
  }

  /** From now on a lost connection is replaced (once). */
  rejoin(): void {
    this.rejoining = true
  }

  openExec(command: string): Promise<ExecChannel> {
    return this.open((r) => r.openExec(command))
  }

  openSocket(path: string): Promise<Duplex> {
    return this.open((r) => r.openSocket(path))
  }

  close(): void {
    this.closed = true
    this.current.close()
  }

  private async open<T>(fn: (r: Remote) => Promise<T>): Promise<T> {
    const r = this.current
    try {
      return await fn(r)
    } catch (e) {
      if (!this.rejoining || this.closed || !(e instanceof TransportError && (e.kind === 'lost' || e.kind === 'agent'))) throw e
      this.fresh ??= this.connect().then((n) => {
        r.close()
        if (this.closed) n.close()
        else this.current = n
        return n
      })
      const n = await this.fresh
      if (this.closed) throw e
      return fn(n)
    }
  }
}
