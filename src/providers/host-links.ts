// Connections to a static provider's hosts while a job waits for a slot. Each host's connect runs
// in the background, one at a time per host, and outlives the round that started it: a host that
// does not answer (packets dropped: timeouts.connectSeconds, 20 s by default) no longer holds the
// round, and with it every job, until its connect fails; the next host is tried after a short grace.
import { Cancelled, TransportError } from '../errors'
import { settlesWithin, unlessCancelled } from '../retry'
import type { ConnectInfo, Remote } from '../remote/remote'
import type { ProviderEnv } from './provider'

/**
 * How long a round waits for a host's connection before it goes on to the next host: well over an
 * SSH handshake to a host that answers (tens to hundreds of milliseconds, a WAN included), so list
 * order still decides between hosts that answer.
 */
export const CONNECT_GRACE_MS = 1000

/** A wait for a connect until it settles (its own bound ends it): the longest a timer takes. */
export const CONNECT_WHOLE_MS = 2_147_483_647

export class HostLinks {
  private readonly open = new Map<number, Remote>()
  private readonly connecting = new Map<number, Promise<void>>()
  /** Hosts a round went past while they connected: not waited for again, tried once up. */
  private readonly late = new Set<number>()
  /** A failure on this side of a connect (the job's agent could not be started): it ends the acquire. */
  private failure: { e: unknown } | null = null
  private closed = false

  /**
   * `failed` hears each host's failed connect (a TransportError; the caller tells a host that waiting
   * cannot mend from one that may come back).
   */
  constructor(
    private readonly hosts: ConnectInfo[],
    private readonly env: Pick<ProviderEnv, 'connect' | 'discard' | 'signal'>,
    private readonly failed: (index: number, e: TransportError) => void
  ) {}

  /** How many hosts are connected now. */
  get size(): number {
    return this.open.size
  }

  /**
   * Host `i`'s connection if it is up or comes up within `graceMs` (no wait for one a round went
   * past while it connected); undefined if not: its connect goes on, or failed and was reported.
   */
  async ready(i: number, graceMs: number): Promise<Remote | undefined> {
    this.rethrow()
    const up = this.open.get(i)
    if (up) return up
    const flight = this.connecting.get(i) ?? this.start(i)
    // A zero wait still lets a connect that has already settled be seen.
    await unlessCancelled(settlesWithin(flight, this.late.has(i) ? 0 : graceMs), this.env.signal)
    this.rethrow()
    // A connect that came in after the cancel: no lease call goes out on it (it closes with the rest).
    if (this.env.signal.aborted) throw Cancelled.by(this.env.signal)
    const now = this.open.get(i)
    if (!now && this.connecting.has(i)) this.late.add(i)
    return now
  }

  /** Closes host `i`'s connection (its answer went wrong): the next round connects again. */
  async drop(i: number): Promise<void> {
    const r = this.open.get(i)
    this.open.delete(i)
    if (r) await this.env.discard(this.hosts[i], r).catch(() => undefined)
  }

  /** Hands host `keep`'s connection to the caller and closes the others, now or when their connect ends. */
  async close(keep?: number): Promise<Remote | undefined> {
    this.closed = true
    const kept = keep === undefined ? undefined : this.open.get(keep)
    if (keep !== undefined) this.open.delete(keep)
    const others = [...this.open]
    this.open.clear()
    for (const [i, r] of others) await this.env.discard(this.hosts[i], r).catch(() => undefined)
    return kept
  }

  private start(i: number): Promise<void> {
    const flight = this.env.connect(this.hosts[i]).then(
      (r) => {
        this.connecting.delete(i)
        if (this.closed) return void this.env.discard(this.hosts[i], r).catch(() => undefined)
        this.late.delete(i)
        this.open.set(i, r)
      },
      (e: unknown) => {
        this.connecting.delete(i)
        if (this.closed) return
        if (e instanceof TransportError && !this.env.signal.aborted) this.failed(i, e)
        else this.failure ??= { e }
      }
    )
    this.connecting.set(i, flight)
    return flight
  }

  private rethrow(): void {
    if (this.failure) throw this.failure.e
  }
}
