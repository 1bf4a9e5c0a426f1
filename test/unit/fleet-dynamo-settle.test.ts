// Two settlements of one reservation at once (a hook's release and reap): the second must see the
// first's, not fail. DynamoDB answers a ClientRequestToken reused within 10 minutes with other
// parameters by IdempotentParameterMismatchException; the stand-in below does the same.
import type { Server } from 'node:http'
import {
  closeStandIn,
  dynamoError as error,
  dynamoStandIn,
  fixedReservation,
  loopbackLedger,
  NOON,
  RESERVATION_ID
} from './loopback-dynamo'

const ID = RESERVATION_ID
const FIXED = fixedReservation()

let server: Server
let settled: Record<string, { N: string }> | null = null
/** GetItems that still answer "unsettled" (a reader that looked a moment before the settlement). */
let stale = 0
const tokens = new Map<string, string>()
const transactions: string[] = []

beforeAll(async () => {
  server = await dynamoStandIn<{ ClientRequestToken?: string; TransactItems?: unknown[] }>((op, input, send) => {
    if (op === 'GetItem')
      return send(
        200,
        JSON.stringify({
          Item: {
            pk: { S: `res#${ID}` },
            fixed: { S: JSON.stringify(FIXED) },
            timings: { M: {} },
            ...((stale-- > 0 ? null : settled) ?? {})
          }
        })
      )
    if (op !== 'TransactWriteItems') return send(400, error('ValidationException'))
    const token = input.ClientRequestToken ?? ''
    const params = JSON.stringify(input.TransactItems)
    transactions.push(token)
    const seen = tokens.get(token)
    if (seen !== undefined && seen !== params) return send(400, error('IdempotentParameterMismatchException'))
    if (seen !== undefined) return send(200, '{}')
    tokens.set(token, params)
    if (settled)
      return send(
        400,
        error('TransactionCanceledException', {
          CancellationReasons: [{ Code: 'ConditionalCheckFailed' }, { Code: 'None' }, { Code: 'None' }, { Code: 'None' }, { Code: 'None' }]
        })
      )
    const set = (input.TransactItems as { Update: { ExpressionAttributeValues: Record<string, { N: string }> } }[])[0].Update
      .ExpressionAttributeValues
    settled = { settledAt: set[':s'], endedAt: set[':e'], billedSeconds: set[':b'], actualMicro: set[':a'] }
    send(200, '{}')
  })
})
afterAll(() => closeStandIn(server))

test("a second settlement with other times (reap's, after the hook's) returns the first one instead of failing", async () => {
  const hook = loopbackLedger(server, { table: 'rch-settle', now: () => NOON, attemptMs: 2000, callMs: 5000 })
  const reap = loopbackLedger(server, { table: 'rch-settle', now: () => NOON + 1000, attemptMs: 2000, callMs: 5000 })
  const first = await hook.settle(ID, { endedAt: NOON - 1000 })
  expect(first).toMatchObject({ settledAt: NOON, endedAt: NOON - 1000, billedSeconds: 3599 })
  // reap read it as unsettled just before, and settles it from EC2's facts: the hook's settlement stands
  stale = 1
  await expect(reap.settle(ID, { endedAt: NOON - 500 })).resolves.toMatchObject({
    settledAt: NOON,
    endedAt: NOON - 1000,
    billedSeconds: 3599
  })
  expect(transactions).toHaveLength(2)
  hook.close()
  reap.close()
})
