// A failed prepare_job's undo, and cleanup_job, need the machine the job ran on. When what failed
// was the connection itself (a network drop, or the job's agent gone with its own), they would find
// it gone and leave the job's containers, folder and lease behind until a later cleanup. Once
// `rejoin()` is called, a channel that cannot open because the connection or the agent is lost
// opens on one new connection instead, made once for all callers. Before that a loss stays a loss:
// a dropped connection never passes for success. An agent's refusal (the lease is lost) stands.
import { TransportError } from '../errors'
import type { Duplex } from 'node:stream'
import type { ExecChannel, Remote } from './remote'

const isLoss = (e: unknown): boolean => e instanceof TransportError && (e.kind === 'lost' || e.kind === 'agent')

export class Rejoinable implements Remote {
  private current: Remote
  private fresh: Promise<Remote> | null = null
  private rejoining = false
  private closed = false
  /** The connection a command's end found lost (see openExec). */
  private broken: Remote | null = null

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
    return this.open(async (r) => {
      const ch = await r.openExec(command)
      // Through the job's agent a channel opens before the agent opens it on the machine: its loss
      // then comes with its end. That command has failed; the next one goes to a new connection.
      ch.done.catch((e: unknown) => {
        if (isLoss(e) && this.current === r) this.broken = r
      })
      return ch
    })
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
      if (this.broken === r && this.rejoining) throw new TransportError('the connection was lost during an earlier command', 'lost')
      return await fn(r)
    } catch (e) {
      if (!this.rejoining || this.closed || !isLoss(e)) throw e
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
