// An HTTP proxy in front of the loopback registry that answers the first `n` manifest requests
// with 503 (a registry's passing failure), and passes everything else through.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'

export async function registryFaults(
  registryHost: string,
  n: number
): Promise<{ port: number; failed: () => number; manifests: () => number; close: () => Promise<void> }> {
  const [host, port] = registryHost.split(':')
  let failed = 0
  let manifests = 0
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (/\/manifests\//.test(req.url ?? '')) {
      manifests++
      if (failed < n) {
        failed++
        res.writeHead(503, { 'Content-Type': 'text/plain' })
        return void res.end('Service Unavailable\n')
      }
    }
    const up = request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as { port: number }).port,
    failed: () => failed,
    manifests: () => manifests,
    close: () => new Promise<void>((r) => server.close(() => r()))
  }
}
