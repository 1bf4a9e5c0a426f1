// A TCP proxy that holds connections, to stop a pull half-way (the registry's answer waits on the test).
import { connect, createServer, type Socket } from 'node:net'

/** A TCP proxy to `port` on loopback that holds every connection until `release()`. */
export async function holdingProxy(
  port: number
): Promise<{ port: number; connections: () => number; release: () => void; close: () => Promise<void> }> {
  let held = true
  let connections = 0
  const waiting: Array<() => void> = []
  const sockets = new Set<Socket>()
  const server = createServer((c) => {
    connections++
    sockets.add(c)
    c.on('error', () => undefined)
    c.on('close', () => sockets.delete(c))
    const pipe = (): void => {
      const u = connect(port, '127.0.0.1')
      sockets.add(u)
      u.on('error', () => c.destroy())
      u.on('close', () => sockets.delete(u))
      c.pipe(u).pipe(c)
    }
    if (held) waiting.push(pipe)
    else pipe()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    release() {
      held = false
      for (const go of waiting.splice(0)) go()
    },
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    }
  }
}
