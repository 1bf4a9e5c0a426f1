/**
 * The serialising DynamoDB proxy the soak's ledger goes through (test/integration/ledger-serial-proxy.ts):
 * a client that goes away while its answer streams (a hook SIGKILLed mid-request) must not hold up
 * every later request. Found by the soak: its first 200-job run stalled for good after such a kill.
 * The upstream here is a local HTTP server, so the test needs no moto.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { startSerialProxy } from '../integration/ledger-serial-proxy'

test('a client that leaves mid-answer does not stall the requests queued behind it', async () => {
  let served = 0
  // The first answer comes in two parts a while apart; the client leaves after the first.
  const upstream = http.createServer((req, res) => {
    served++
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' })
    if (served === 1) {
      res.write('{"part":1,')
      setTimeout(() => res.end(`"pad":"${'x'.repeat(1 << 20)}"}`), 300)
    } else res.end('{"ok":true}')
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const proxy = await startSerialProxy(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`)
  const post = (onFirstChunk?: (req: http.ClientRequest) => void): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        `${proxy.endpoint}/`,
        { method: 'POST', headers: { 'x-amz-target': 'DynamoDB_20120810.GetItem' } },
        (res) => {
          let body = ''
          res.on('data', (c: Buffer) => {
            body += c.toString()
            onFirstChunk?.(req)
          })
          res.on('end', () => resolve(body))
          res.on('error', () => resolve('(left)'))
        }
      )
      req.on('error', () => resolve('(left)'))
      req.setTimeout(10_000, () => reject(new Error('no answer within 10 s: the proxy queue is stuck')))
      req.end('{}')
    })
  try {
    // positive control: the first client really left before its answer ended
    const first = await post((req) => req.destroy())
    expect(first).toBe('(left)')
    await expect(post()).resolves.toBe('{"ok":true}')
    expect(served).toBe(2)
  } finally {
    await proxy.close()
    upstream.closeAllConnections()
    await new Promise((r) => upstream.close(r))
  }
})
