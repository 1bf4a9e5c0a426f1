/**
 * A loopback HTTP proxy in front of moto's DynamoDB that forwards one request at a time.
 *
 * Real DynamoDB applies each request (a TransactWriteItems included) atomically and serialisably.
 * moto 5.2.5 does not: its threaded server checks a transaction's conditions and applies its
 * writes without a lock, and rolls a cancelled one back by restoring a copy of the whole table
 * taken before it, which can undo another request's committed write. Under a race that lets
 * reservations through that real DynamoDB refuses. Forwarding one request at a time gives back
 * per-request atomicity and nothing more: a ledger that read the counters in one request and
 * wrote them in another would still overshoot through this proxy.
 *
 * It can also answer the next requests of one target (e.g. TransactWriteItems) with an injected
 * DynamoDB error, to drive the ledger's retries.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Fault {
  target: string
  times: number
  status: number
  type: string
  extra?: Record<string, unknown>
  /** Forward the request to moto first (it takes effect), then answer with the error: a lost answer. */
  forward?: boolean
}

export interface SerialProxy {
  endpoint: string
  /** Requests seen, by X-Amz-Target operation (e.g. TransactWriteItems). */
  calls: string[]
  fail(f: Fault): void
  close(): Promise<void>
}

export async function startSerialProxy(target: string): Promise<SerialProxy> {
  const to = new URL(target)
  const calls: string[] = []
  const faults: Fault[] = []
  let queue: Promise<void> = Promise.resolve()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const op =
        String(req.headers['x-amz-target'] ?? '')
          .split('.')
          .pop() ?? ''
      calls.push(op)
      const fault = faults.find((f) => f.target === op && f.times > 0)
      if (fault) fault.times--
      const answerFault = (): void => {
        res.writeHead(fault!.status, { 'content-type': 'application/x-amz-json-1.0' })
        res.end(JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${fault!.type}`, message: 'injected', ...fault!.extra }))
      }
      if (fault && !fault.forward) return answerFault()
      queue = queue.then(
        () =>
          new Promise<void>((done) => {
            const up = http.request(
              { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
              (upRes) => {
                if (fault) {
                  upRes.resume()
                  upRes.on('end', () => (answerFault(), done()))
                } else {
                  // Read whole, never piped: a client that went away (a killed hook), before or during the
                  // answer, would leave a piped answer paused and unended, and every later request queued
                  // behind it forever.
                  const body: Buffer[] = []
                  upRes.on('data', (c: Buffer) => body.push(c))
                  upRes.on('end', () => {
                    if (!res.destroyed) {
                      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
                      res.end(Buffer.concat(body))
                    }
                    done()
                  })
                }
                upRes.on('error', done)
              }
            )
            up.setTimeout(60_000, () => up.destroy(new Error('moto did not answer within 60 s')))
            up.on('error', () => {
              res.destroy()
              done()
            })
            up.end(Buffer.concat(chunks))
          })
      )
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    fail: (f) => faults.push(f),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      })
  }
}
