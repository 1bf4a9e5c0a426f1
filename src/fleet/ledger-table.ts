// The DynamoDB table the ledger needs, as data: the hook's doctor checks a table against it, the
// tests create theirs from it, and the Terraform module's offline check compares with it.
// `pk` is every item's key. The open reservations also carry `open` = "1", which puts them (and only
// them: settling removes it) into the sparse index OPEN_INDEX, so listing them reads a few items
// instead of the whole table's history. Reservations and job records also carry `span` (their kind
// and UTC month, e.g. "res#2026-12") and `at` (their reservation or start time): TIME_INDEX finds
// those of a time range with one Query per month, where a Scan would read (and bill) every item
// the table ever held. Items written before a ledger had it are indexed by `index-ledger`.
import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb'

export const LEDGER_KEY = 'pk'
export const OPEN_INDEX = 'open-index'
export const OPEN_ATTR = 'open'
export const TIME_INDEX = 'time-index'
export const SPAN_ATTR = 'span'
export const AT_ATTR = 'at'

export function ledgerTableShape(): Pick<CreateTableCommandInput, 'AttributeDefinitions' | 'KeySchema' | 'GlobalSecondaryIndexes'> {
  return {
    AttributeDefinitions: [
      { AttributeName: LEDGER_KEY, AttributeType: 'S' },
      { AttributeName: OPEN_ATTR, AttributeType: 'S' },
      { AttributeName: SPAN_ATTR, AttributeType: 'S' },
      { AttributeName: AT_ATTR, AttributeType: 'N' }
    ],
    KeySchema: [{ AttributeName: LEDGER_KEY, KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      { IndexName: OPEN_INDEX, KeySchema: [{ AttributeName: OPEN_ATTR, KeyType: 'HASH' }], Projection: { ProjectionType: 'ALL' } },
      {
        IndexName: TIME_INDEX,
        KeySchema: [
          { AttributeName: SPAN_ATTR, KeyType: 'HASH' },
          { AttributeName: AT_ATTR, KeyType: 'RANGE' }
        ],
        Projection: { ProjectionType: 'ALL' }
      }
    ]
  }
}

/** The time index's partition of an item of `kind` ("res" or "job") at `ms`: its kind and UTC month. */
export function spanOf(kind: 'res' | 'job', ms: number): string {
  return `${kind}#${new Date(ms).toISOString().slice(0, 7)}`
}

/** The partitions a time range [since, until) touches, oldest first. */
export function spansOf(kind: 'res' | 'job', since: number, until: number): string[] {
  const out: string[] = []
  const d = new Date(since)
  let y = d.getUTCFullYear()
  let m = d.getUTCMonth()
  for (;;) {
    const start = Date.UTC(y, m, 1)
    if (start >= until && out.length) return out
    out.push(spanOf(kind, start))
    if (++m === 12) {
      m = 0
      y++
    }
  }
}
