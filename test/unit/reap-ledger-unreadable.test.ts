// reap over EC2 when the ledger cannot be read: expiry needs no ledger, so an instance past its
// expires-at is still marked and removed; one whose fate needs its reservation is left as it is
// (neither marked nor unmarked) with a failed row naming the ledger. And the ledger's history is
// read once per pass, whatever the number of instances removed.
import type * as Ec2 from '@aws-sdk/client-ec2'
import { TAG_EXPIRES_AT, TAG_OWNER, TAG_REAP_CANDIDATE, TAG_RESERVATION } from '../../src/providers/ec2-plan'
import { reapInstances } from '../../src/ops/reap-ec2'
import type { ReapEc2 } from '../../src/ops/reap-aws'
import type { ReapContext } from '../../src/ops/reap-context'
import { reapContext } from './_reap-context'
import type { Ledger, LedgerRecord } from '../../src/fleet/ledger'

const NOW = Date.UTC(2026, 11, 1, 12)
const MIN = 60_000
const iso = (t: number): string => new Date(t).toISOString()

const instance = (id: string, tags: Record<string, string>): Ec2.Instance => ({
  InstanceId: id,
  State: { Name: 'running' },
  Tags: Object.entries({ [TAG_OWNER]: 'fedcba9876543210', ...tags }).map(([Key, Value]) => ({ Key, Value }))
})

function fakeEc2(instances: Ec2.Instance[]): { api: ReapEc2; calls: string[] } {
  const calls: string[] = []
  const api = {
    describe: async () => instances,
    tag: async (id: string) => void calls.push(`tag ${id}`),
    untag: async (id: string) => void calls.push(`untag ${id}`),
    one: async (id: string) => instances.find((i) => i.InstanceId === id),
    terminate: async (id: string) => void calls.push(`terminate ${id}`)
  } as unknown as ReapEc2
  return { api, calls }
}

const ctxWith = (ledger: Partial<Ledger>): ReapContext => reapContext(NOW, ledger)

const expired = (id: string, mark?: number): Ec2.Instance =>
  instance(id, { [TAG_EXPIRES_AT]: iso(NOW - MIN), [TAG_RESERVATION]: `r-${id}`, ...(mark ? { [TAG_REAP_CANDIDATE]: iso(mark) } : {}) })
const markedLive = instance('i-live', {
  [TAG_EXPIRES_AT]: iso(NOW + 60 * MIN),
  [TAG_RESERVATION]: 'r-live',
  [TAG_REAP_CANDIDATE]: iso(NOW - 5 * MIN)
})

test('a ledger that cannot be read: instances past their expiry are still marked and removed; one that needs its reservation is left as it is; the failure is a row', async () => {
  const ec2 = fakeEc2([expired('i-new'), expired('i-old', NOW - 5 * MIN), markedLive])
  const ctx = ctxWith({
    records: async () => {
      throw new Error('ERR_STRING_TOO_LONG')
    },
    unsettled: async () => []
  })
  await reapInstances(ec2.api, ctx, {})
  expect(ctx.rows.map((r) => [r.kind, r.what, r.action])).toEqual([
    ['reservation', 'ledger', 'failed'],
    ['instance', 'i-new', 'marked'],
    ['instance', 'i-old', 'removed'],
    ['instance', 'i-live', 'left alone']
  ])
  expect(ctx.rows[0].why).toMatch(/cannot read the ledger: .*ERR_STRING_TOO_LONG; instances are judged on their expiry alone/)
  expect(ec2.calls).toEqual(['tag i-new', 'terminate i-old'])
})

test('control: a ledger that reads: the marked instance whose reservation still beats comes back to life; the history is read once for the pass', async () => {
  const ec2 = fakeEc2([expired('i-a', NOW - 5 * MIN), expired('i-b', NOW - 5 * MIN), markedLive])
  let reads = 0
  const live: LedgerRecord = { id: 'r-live', reservedAt: NOW - 30 * MIN, heartbeatAt: NOW - MIN } as LedgerRecord
  const ctx = ctxWith({
    records: async () => (reads++, [live]),
    unsettled: async () => [live],
    settle: async (id: string) => ({ id, billedSeconds: 60 }) as LedgerRecord
  })
  await reapInstances(ec2.api, ctx, {})
  expect(ctx.rows.map((r) => [r.what, r.action])).toEqual([
    ['i-a', 'removed'],
    ['i-b', 'removed'],
    ['i-live', 'unmarked']
  ])
  expect(reads).toBe(1)
})

test('phase 2 reads the open reservations again: a heartbeat that came since the pass began brings the instance back to life (control: none came, it is removed)', async () => {
  const marked = instance('i-x', {
    [TAG_EXPIRES_AT]: iso(NOW + 60 * MIN),
    [TAG_RESERVATION]: 'r-x',
    [TAG_REAP_CANDIDATE]: iso(NOW - 5 * MIN)
  })
  const stale = { id: 'r-x', reservedAt: NOW - 60 * MIN, heartbeatAt: NOW - 30 * MIN } as LedgerRecord
  const pass = async (open: LedgerRecord[]): Promise<string[]> => {
    const ec2 = fakeEc2([marked])
    const ctx = ctxWith({
      records: async () => [stale],
      unsettled: async () => open,
      settle: async (id: string) => ({ id, billedSeconds: 60 }) as LedgerRecord
    })
    await reapInstances(ec2.api, ctx, {})
    return ctx.rows.map((r) => `${r.what} ${r.action}: ${r.why}`)
  }
  const [alive] = await pass([{ ...stale, heartbeatAt: NOW - 10_000 }])
  expect(alive).toMatch(/^i-x unmarked: came back to life/)
  const [dead] = await pass([stale])
  expect(dead).toMatch(/^i-x removed: /)
})
