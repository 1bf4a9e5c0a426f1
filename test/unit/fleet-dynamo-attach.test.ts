// An attach to a settled reservation is refused in DynamoDB as in the local ledger: reap's move of a
// pool reservation (to the member launched in place of an ended one) can race the hook that settles
// it, and the settled record must keep the instance it was settled with. The stand-in evaluates the
// condition expressions the ledger sends on one item, as DynamoDB would.
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
const FIXED = fixedReservation({ pool: 'rch-pool' })

type Attr = { S?: string; N?: string }
let item: Record<string, Attr>
let server: Server

/** The few conditions the ledger's updates use, evaluated on `item`. */
function holds(cond: string, names: Record<string, string>, values: Record<string, Attr>): boolean {
  const has = (a: string): boolean => item[names[a] ?? a] !== undefined
  const js = cond
    .replace(/attribute_exists\(([#\w]+)\)/g, (_m, a: string) => String(has(a)))
    .replace(/attribute_not_exists\(([#\w]+)\)/g, (_m, a: string) => String(!has(a)))
    .replace(/(\w+) <> (:\w+)/g, (_m, a: string, v: string) => String(JSON.stringify(item[a]) !== JSON.stringify(values[v])))
    .replace(/(\w+) < (:\w+)/g, (_m, a: string, v: string) => String(Number(item[a]?.N) < Number(values[v].N)))
    .replace(/\bAND\b/g, '&&')
    .replace(/\bOR\b/g, '||')
  return reduce(js, cond)
}

/** `true && (false || true)` and the like, reduced step by step (AND before OR). */
function reduce(js: string, cond: string): boolean {
  const steps: [RegExp, (a: boolean, b: boolean) => boolean][] = [
    [/(true|false) && (true|false)/, (a, b) => a && b],
    [/(?<!&& )(true|false) \|\| (true|false)(?! &&)/, (a, b) => a || b]
  ]
  for (;;) {
    if (js === 'true' || js === 'false') return js === 'true'
    const before = js
    js = js.replace(/\((true|false)\)/, '$1')
    for (const [re, op] of steps)
      if (js === before) js = js.replace(re, (_m, a: string, b: string) => String(op(a === 'true', b === 'true')))
    if (js === before) throw new Error(`stand-in cannot evaluate ${cond}`)
  }
}

beforeAll(async () => {
  server = await dynamoStandIn<{
    UpdateExpression?: string
    ConditionExpression?: string
    ExpressionAttributeNames?: Record<string, string>
    ExpressionAttributeValues?: Record<string, Attr>
  }>((op, input, send) => {
    if (op === 'GetItem') return send(200, JSON.stringify({ Item: item }))
    if (op !== 'UpdateItem') return send(400, error('ValidationException'))
    const values = input.ExpressionAttributeValues ?? {}
    if (!holds(input.ConditionExpression ?? '', input.ExpressionAttributeNames ?? {}, values))
      return send(400, error('ConditionalCheckFailedException'))
    const set = /^SET (.*)$/.exec(input.UpdateExpression ?? '')
    if (!set) return send(400, error('ValidationException'))
    for (const part of set[1].split(',')) {
      const [a, v] = part.split('=').map((x) => x.trim())
      item[a] = values[v]
    }
    send(200, '{}')
  })
})
afterAll(() => closeStandIn(server))

const base = (): Record<string, Attr> => ({
  pk: { S: `res#${ID}` },
  fixed: { S: JSON.stringify(FIXED) },
  instanceId: { S: 'i-lost' },
  attachedAt: { N: String(NOON - 3_500_000) }
})

test('a settled reservation is not attached to another instance (its record keeps the one it was settled with)', async () => {
  item = { ...base(), settledAt: { N: String(NOON - 1000) }, endedAt: { N: String(NOON - 1000) } }
  const l = loopbackLedger(server, { table: 'rch-attach', now: () => NOON, attemptMs: 2000, callMs: 5000 })
  try {
    await expect(l.attach(ID, 'i-new', NOON - 3_500_000)).rejects.toThrow(`fleet ledger: reservation ${ID} cannot be attached`)
    expect(item.instanceId).toEqual({ S: 'i-lost' })
    // the same instance again: nothing to do, as in the local ledger
    await expect(l.attach(ID, 'i-lost')).resolves.toBeUndefined()
  } finally {
    l.close()
  }
})

test('control: an open reservation moves to another instance, with the attach time given', async () => {
  item = base()
  const l = loopbackLedger(server, { table: 'rch-attach', now: () => NOON, attemptMs: 2000, callMs: 5000 })
  try {
    await l.attach(ID, 'i-new', NOON - 3_500_000)
    expect(item.instanceId).toEqual({ S: 'i-new' })
    expect(item.attachedAt).toEqual({ N: String(NOON - 3_500_000) })
  } finally {
    l.close()
  }
})
