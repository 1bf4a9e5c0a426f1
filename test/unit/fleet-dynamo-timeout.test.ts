// A DynamoDB endpoint that accepts connections and never answers must not hold a launch (or reap)
// without end: each request has a limit, the whole call a deadline.
import { createServer, type Server } from 'node:http'
import type { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import { closeStandIn, loopbackLedger } from './loopback-dynamo'

let server: Server
let requests = 0
let answer = false
beforeAll(async () => {
  server = createServer((req, res) => {
    requests++
    req.resume()
    // Positive control mode: answer like DynamoDB does for a GetItem of a missing item.
    if (answer) res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' }).end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
})
afterAll(() => closeStandIn(server))

const ledger = (): DynamoLedger => loopbackLedger(server, { table: 'rch-timeout', now: () => Date.now(), attemptMs: 1000, callMs: 4000 })

test('a ledger endpoint that never answers fails the call within its deadline, after retries, naming the timeout', async () => {
  const l = ledger()
  requests = 0
  const started = Date.now()
  await expect(l.attach('x', 'i-0123456789abcdef0')).rejects.toThrow(/DynamoDB did not answer within 1 s/)
  expect(Date.now() - started).toBeLessThan(10_000)
  expect(requests).toBeGreaterThan(1)
  l.close()
})

test('control: the same endpoint answering is read (the requests reach it and the ledger acts on the answer)', async () => {
  answer = true
  const l = ledger()
  requests = 0
  // {} is a successful UpdateItem: the attach is done, in one request.
  await expect(l.attach('x', 'i-0123456789abcdef0')).resolves.toBeUndefined()
  expect(requests).toBe(1)
  answer = false
  l.close()
})
