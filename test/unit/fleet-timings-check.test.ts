// Phase timings are checked once (check-timings.ts) for both ledger kinds and both ways in:
// a reservation's recordTimings and a job record's recordJob.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FleetSchema } from '../../src/config'
import { checkTimings } from '../../src/fleet/check-timings'
import type { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import { newLocalLedger } from '../../src/fleet/local-ledger'
import { loopbackLedger } from './loopback-dynamo'
import { RESERVE_REQ as REQ } from '../helpers/reserve-request'

const NOON = Date.UTC(2026, 11, 1, 12)

// Each with the message it must give.
const BAD: [string, Record<string, number>, RegExp][] = [
  ['NaN', { boot: NaN }, /^fleet ledger: timing "boot" is not a number of milliseconds$/],
  ['Infinity', { boot: Infinity }, /timing "boot" is not a number of milliseconds/],
  ['a negative time', { boot: -1 }, /timing "boot" is not a number of milliseconds/],
  ['a string', { boot: '5' as unknown as number }, /timing "boot" is not a number of milliseconds/],
  ['a name with a space', { 'a b': 1 }, /^fleet ledger: timing "a b" is not a phase name$/],
  ['an upper-case name', { Boot: 1 }, /timing "Boot" is not a phase name/],
  ['an empty name', { '': 1 }, /timing "" is not a phase name/],
  ['a name of 41 characters', { ['x'.repeat(41)]: 1 }, /is not a phase name/],
  ['a name with a newline', { 'boot\n::error::x': 1 }, /^fleet ledger: timing "boot\\n::error::x" is not a phase name$/],
  ['a good phase beside a bad one', { acquire: 1, boot: -5 }, /timing "boot"/]
]

describe('checkTimings', () => {
  test('accepts plain phase words with finite non-negative ms, and no phases at all', () => {
    expect(() => checkTimings({ acquire: 1200, boot: 0, ssh: 3.5, release_2: 10, ['x'.repeat(40)]: 1 })).not.toThrow()
    expect(() => checkTimings({})).not.toThrow()
  })
  test.each(BAD)('refuses %s', (_, timings, message) => {
    expect(() => checkTimings(timings)).toThrow(message)
  })
})

describe('the local ledger', () => {
  let root: string
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'fleet-timings-'))
  })
  afterEach(() => rmSync(root, { recursive: true, force: true }))

  test.each(BAD)('recordTimings refuses %s and records nothing; recordJob refuses it too', async (_, timings, message) => {
    const l = newLocalLedger(FleetSchema.parse({}), root, { now: () => NOON })
    const r = await l.reserve(REQ, NOON)
    if (!r.ok) throw new Error(r.line)
    // Positive control: a good timing is recorded on the same reservation.
    await l.recordTimings(r.id, { acquire: 7 })
    await expect(l.recordTimings(r.id, timings)).rejects.toThrow(message)
    expect((await l.records()).map((x) => x.timings)).toEqual([{ acquire: 7 }])
    await expect(l.recordJob({ jobId: 'j1', timings })).rejects.toThrow(message)
    expect(await l.jobs()).toEqual([])
  })
})

describe('the DynamoDB ledger', () => {
  // A stand-in endpoint that answers every request like a successful UpdateItem.
  let server: Server
  let bodies: string[] = []
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        bodies.push(body)
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' }).end('{}')
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  })
  beforeEach(() => {
    bodies = []
  })

  const ledger = (): DynamoLedger => loopbackLedger(server, { table: 'rch-timings', now: () => NOON, attemptMs: 2000, callMs: 5000 })

  test('control: a good timing is sent, its phase and ms in the update', async () => {
    const l = ledger()
    await l.recordTimings('res-1', { acquire: 1200 })
    expect(bodies).toHaveLength(1)
    expect(bodies[0]).toContain('"acquire"')
    expect(bodies[0]).toContain('"1200"')
    l.close()
  })

  test.each(BAD)('recordTimings refuses %s before sending anything; recordJob too', async (_, timings, message) => {
    const l = ledger()
    await expect(l.recordTimings('res-1', timings)).rejects.toThrow(message)
    await expect(l.recordJob({ jobId: 'j1', timings })).rejects.toThrow(message)
    expect(bodies).toEqual([])
    l.close()
  })
})
