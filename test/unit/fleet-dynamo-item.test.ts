// A reservation item of the DynamoDB ledger whose fixed fields are missing or unreadable (written by
// hand, or cut): every report and every cap check reads it, so the error must name the item an
// operator has to repair, not be a TypeError that names nothing.
import { toRecord } from '../../src/fleet/dynamodb-ledger'
import { LEDGER_KEY } from '../../src/fleet/ledger-table'

const item = (fixed?: string) => ({ [LEDGER_KEY]: { S: 'res#2f1c' }, ...(fixed === undefined ? {} : { fixed: { S: fixed } }) })

test.each([
  ['without its "fixed" attribute', undefined],
  ['with one that is not JSON', '{"instanceType":'],
  ['with one that is not an object', '[1,2]']
])('an item %s is refused naming its key', (_what, fixed) => {
  expect(() => toRecord(item(fixed))).toThrow(
    'fleet ledger: item "res#2f1c" has no readable "fixed" attribute (a JSON object of the reservation\'s fields): repair or delete that item'
  )
})

test('control: a readable item is a record', () => {
  const r = toRecord({ ...item('{"id":"2f1c","instanceType":"m7i.large"}'), settledAt: { N: '5' } })
  expect(r).toMatchObject({ id: '2f1c', instanceType: 'm7i.large', settledAt: 5, timings: {} })
})
