/**
 * A loopback HTTP proxy in front of moto whose answers carry a Date moved by `shiftMs`: to a client,
 * AWS's clock is that far from this host's (a runner host whose clock is off, seen from the host).
 * Everything else is forwarded as it is.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DateShiftProxy {
  endpoint: string
  /** Answers forwarded so far. */
  answered(): number
  close(): Promise<void>
}

export async function startDateShiftProxy(target: string, shiftMs: number): Promise<DateShiftProxy> {
  const to = new URL(target)
  let answered = 0
  const server = http.createServer((req, res) => {
    const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      const body: Buffer[] = []
      upRes.on('data', (c: Buffer) => body.push(c))
      upRes.on('end', () => {
        answered++
        if (res.destroyed) return
        res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, date: new Date(Date.now() + shiftMs).toUTCString() })
        res.end(Buffer.concat(body))
      })
      upRes.on('error', () => res.destroy())
    })
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    answered: () => answered,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      })
  }
}
