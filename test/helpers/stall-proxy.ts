// A TCP proxy whose connections can go silent without closing: a half-open link, as when a NAT
// forgets a connection or a network is cut, where neither end is told and only a timeout finds it.
import { connect, createServer, type Socket } from 'node:net'

export interface StallProxy {
  port: number
  /** Connections opened so far. */
  connections: () => number
  /** Connections still open at both ends. */
  open: () => number
  /** Bytes that crossed the proxy, either way, since it was made. */
  forwarded: () => number
  /** From now on, every connection open now passes nothing either way and stays open; new ones pass. */
  stall: () => number
  close: () => Promise<void>
}

/** A proxy to `port` on loopback. */
export async function stallProxy(port: number): Promise<StallProxy> {
  let connections = 0
  let forwarded = 0
  const pairs = new Set<{ c: Socket; u: Socket; stalled: boolean }>()
  const sockets = new Set<Socket>()
  const server = createServer((c) => {
    connections++
    const u = connect(port, '127.0.0.1')
    const pair = { c, u, stalled: false }
    pairs.add(pair)
    for (const s of [c, u]) {
      sockets.add(s)
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        pairs.delete(pair)
        // A stalled link tells neither end: only a live one passes a close on.
        if (!pair.stalled) (s === c ? u : c).destroy()
      })
    }
    const relay = (from: Socket, to: Socket): void => {
      from.on('data', (d: Buffer) => {
        if (pair.stalled) return
        forwarded += d.length
        if (!to.write(d)) {
          from.pause()
          to.once('drain', () => from.resume())
        }
      })
    }
    relay(c, u)
    relay(u, c)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    open: () => pairs.size,
    forwarded: () => forwarded,
    stall() {
      let n = 0
      for (const p of pairs) {
        p.stalled = true
        // Not read any more: what the peers send waits in the kernel, unanswered.
        p.c.pause()
        p.u.pause()
        n++
      }
      return n
    },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    }
  }
}
