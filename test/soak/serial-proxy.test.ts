/**
 * The serialising DynamoDB proxy the soak's ledger goes through (test/integration/ledger-serial-proxy.ts):
 * a client that goes away while its answer streams (a hook SIGKILLed mid-request) must not hold up
 * every later request. Found by the soak: its first 200-job run stalled for good after such a kill.
 * The upstream here is a local HTTP server, so the test needs no moto. The first test fails against
 * the proxy as it was (piped answers); the second is a regression check that passed against it too.
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

test('a client that leaves while its request waits in the queue does not stall the ones behind it', async () => {
  let served = 0
  const upstream = http.createServer((req, res) => {
    served++
    // the first answer takes a while: the second request waits in the proxy's queue meanwhile
    setTimeout(() => res.end(`{"n":${served}}`), served === 1 ? 500 : 0)
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const proxy = await startSerialProxy(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`)
  const post = (leaveAfterMs?: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        `${proxy.endpoint}/`,
        { method: 'POST', headers: { 'x-amz-target': 'DynamoDB_20120810.GetItem' } },
        (res) => {
          let body = ''
          res.on('data', (c: Buffer) => (body += c.toString()))
          res.on('end', () => resolve(body))
          res.on('error', () => resolve('(left)'))
        }
      )
      req.on('error', () => resolve('(left)'))
      req.setTimeout(10_000, () => reject(new Error('no answer within 10 s: the proxy queue is stuck')))
      req.end('{}')
      if (leaveAfterMs !== undefined) setTimeout(() => req.destroy(), leaveAfterMs)
    })
  try {
    const first = post()
    const second = post(100)
    expect(await second).toBe('(left)')
    expect(await first).toBe('{"n":1}')
    await expect(post()).resolves.toBe('{"n":3}')
    // positive control: the second request did reach the upstream (it was forwarded after the client left)
    expect(served).toBe(3)
  } finally {
    await proxy.close()
    upstream.closeAllConnections()
    await new Promise((r) => upstream.close(r))
  }
})
