// reap's ledger pass over a pool reservation whose member ended outside the hook: a Spot
// interruption, the group's health replacement or an instance refresh end the member without
// lowering the desired capacity, so the group launches one in its place, untagged. Settled at once,
// the reservation stopped counting while the group ran that replacement for the hook: the caps
// under-counted until the desired capacity dropped, which nothing did (the untagged replacement is
// itself replaced without a decrement). EC2 is a fake that filters and tags as EC2 does; the
// ledger is a real local one, so the caps are what it counts.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type * as Ec2 from '@aws-sdk/client-ec2'
import { FleetSchema } from '../../src/config'
import type { ReserveRequest } from '../../src/fleet/ledger'
import { LocalLedger } from '../../src/fleet/local-ledger'
import { factOf, LIVE_STATES, type ReapEc2 } from '../../src/ops/reap-aws'
import type { ReapContext } from '../../src/ops/reap-context'
import { reapReservations, type PoolFacts } from '../../src/ops/reap-ec2'
import { RESERVE_REQ } from '../helpers/reserve-request'

const NOW = Date.UTC(2026, 11, 1, 12)
const MIN = 60_000
const GROUP = 'rch-pool'
const RES = 'remote-container-hooks:reservation'
const ASG = 'aws:autoscaling:groupName'
const REQ: ReserveRequest = { ...RESERVE_REQ, pool: GROUP, maxLifetimeMinutes: 720 }

let root: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'rch-pool-reap-'))
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

const gmt = (t: number): string => new Date(t).toISOString().replace('T', ' ').slice(0, 19)

/** An instance as DescribeInstances gives it; `endedAt` becomes EC2's state transition reason. */
function instance(
  id: string,
  o: { state?: string; launchedAt: number; endedAt?: number; tags?: Record<string, string>; group?: string | null }
): Ec2.Instance {
  const tags = { ...(o.group === null ? {} : { [ASG]: o.group ?? GROUP }), ...o.tags }
  return {
    InstanceId: id,
    State: { Name: (o.state ?? 'running') as Ec2.InstanceStateName },
    LaunchTime: new Date(o.launchedAt),
    ...(o.endedAt === undefined ? {} : { StateTransitionReason: `User initiated (${gmt(o.endedAt)} GMT)` }),
    Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value }))
  }
}

/**
 * EC2 stood in for; `steal` names instances another hook tags with its own reservation right after
 * any tag; `standby` the stopped members the group keeps in Standby (Auto Scaling's word).
 */
function fakeEc2(instances: Ec2.Instance[], steal = new Set<string>(), standby = new Set<string>()) {
  const byId = new Map(instances.map((i) => [i.InstanceId as string, i]))
  const tagOf = (i: Ec2.Instance, k: string): string | undefined => i.Tags?.find((t) => t.Key === k)?.Value
  const has = (i: Ec2.Instance, f: Ec2.Filter): boolean => {
    const values = f.Values ?? []
    if (f.Name === 'tag-key') return (i.Tags ?? []).some((t) => values.includes(t.Key ?? ''))
    if (f.Name === 'instance-state-name') return values.includes(i.State?.Name ?? '')
    if (f.Name?.startsWith('tag:')) return values.includes(tagOf(i, f.Name.slice(4)) ?? '\0')
    throw new Error(`unexpected filter ${f.Name}`)
  }
  const copy = (i: Ec2.Instance): Ec2.Instance => structuredClone(i)
  const setTag = (i: Ec2.Instance, Key: string, Value: string): void => {
    i.Tags = [...(i.Tags ?? []).filter((t) => t.Key !== Key), { Key, Value }]
  }
  const tagged: string[] = []
  const api = {
    describe: async (fs: Ec2.Filter[]) => [...byId.values()].filter((i) => fs.every((f) => has(i, f))).map(copy),
    one: async (id: string) => {
      const i = byId.get(id)
      return i ? copy(i) : null
    },
    tag: async (id: string, t: Record<string, string>) => {
      const i = byId.get(id)
      if (!i) throw new Error(`InvalidInstanceID.NotFound: ${id}`)
      for (const [k, v] of Object.entries(t)) {
        tagged.push(`${id} ${k}=${v}`)
        setTag(i, k, v)
        if (k === RES && steal.has(id)) setTag(i, k, 'res-of-another-hook')
      }
    },
    untag: async () => undefined,
    terminate: async () => undefined
  } as unknown as ReapEc2
  const poolFacts = (): PoolFacts => ({
    group: GROUP,
    members: [...byId.values()].filter((i) => tagOf(i, ASG) === GROUP && LIVE_STATES.includes(i.State?.Name ?? '')).map(factOf),
    standby
  })
  return { api, tagged, poolFacts, tag: (id: string, k: string) => tagOf(byId.get(id) as Ec2.Instance, k) }
}

function setup(fleet: object = {}) {
  const marks = new Map<string, string>()
  const ledger = new LocalLedger(FleetSchema.parse(fleet), join(root, 'ledger'), { now: () => NOW })
  const ctx = (now = NOW, dryRun = false): ReapContext => ({
    times: { now, deadAfterMs: 15 * MIN, graceMs: 2 * MIN, watched: () => Infinity },
    dryRun,
    ledger,
    clock: { now: () => now },
    marks: { get: (k) => marks.get(k), set: (k, v) => void marks.set(k, v), delete: (k) => void marks.delete(k), save: () => undefined },
    seenMarks: new Set(),
    rows: [],
    signal: new AbortController().signal,
    connectMs: 1000
  })
  const reserve = async (at: number, req: ReserveRequest = REQ): Promise<string> => {
    const r = await ledger.reserve(req, at)
    if (!r.ok) throw new Error(r.line)
    return r.id
  }
  return { ledger, ctx, reserve }
}

const rowsOf = (c: ReapContext) => c.rows.map((r) => [r.what, r.action, r.why])

test('a reserved member lost to a Spot interruption: its reservation moves to the member the group launched in its place, and the caps still count it', async () => {
  const s = setup({ caps: { instances: 1 } })
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    // Terraform's member (the group's minimum): no reservation, launched long before.
    instance('i-base', { launchedAt: NOW - 300 * MIN }),
    instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } }),
    // What the group launched in its place: its desired capacity still counts the lost member.
    instance('i-new', { state: 'pending', launchedAt: NOW - 5 * MIN })
  ])
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([
    [r, 'attached', expect.stringMatching(/^its member i-lost ended at .*; the group launched i-new in its place/)]
  ])
  const open = await s.ledger.unsettled()
  // Billing runs on from the first member's attach: the reservation is the capacity, not the machine.
  expect(open.map((x) => [x.id, x.instanceId, x.attachedAt])).toEqual([[r, 'i-new', NOW - 59 * MIN]])
  expect(ec2.tag('i-new', RES)).toBe(r)
  expect(ec2.tag('i-base', RES)).toBeUndefined()
  // The caps count what the group runs for the hook: one member, so a second is refused.
  expect(await s.ledger.reserve(REQ, NOW)).toMatchObject({ ok: false })

  // The next pass finds the reservation on its new member (the ended one still carries its tag).
  const c2 = s.ctx(NOW + 5 * MIN)
  await reapReservations(ec2.api, c2, ec2.poolFacts())
  expect(rowsOf(c2)).toEqual([[r, 'left alone', 'its instance i-new is pending']])
})

test('a member lost while the group has not launched its replacement yet: the reservation is kept, not settled', async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const ec2 = fakeEc2([instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - MIN, tags: { [RES]: r } })])
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([
    [r, 'left alone', expect.stringMatching(/^its member i-lost ended at .*; the group may still launch one in its place/)]
  ])
  expect((await s.ledger.unsettled()).map((x) => x.id)).toEqual([r])
})

test('a member that ended with the desired capacity lowered (nothing comes in its place) is still settled: in two phases, with the time EC2 gives', async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-gone', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    instance('i-base', { launchedAt: NOW - 300 * MIN }),
    instance('i-gone', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 10 * MIN, tags: { [RES]: r } })
  ])
  const c1 = s.ctx()
  await reapReservations(ec2.api, c1, ec2.poolFacts())
  expect(rowsOf(c1)).toEqual([
    [r, 'marked', expect.stringMatching(/^its member i-gone ended at .*, and the group launched none in its place/)]
  ])
  expect((await s.ledger.unsettled()).map((x) => x.id)).toEqual([r])
  const c2 = s.ctx(NOW + 3 * MIN)
  await reapReservations(ec2.api, c2, ec2.poolFacts())
  expect(rowsOf(c2)).toEqual([[r, 'settled', expect.stringMatching(/and the group launched none in its place; 2940 s billed$/)]])
  expect(await s.ledger.unsettled()).toEqual([])
})

test('a member launched in the last two minutes is left to the hook that may be claiming it; a later pass moves the reservation to it', async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } }),
    instance('i-new', { state: 'pending', launchedAt: NOW - MIN })
  ])
  const c1 = s.ctx()
  await reapReservations(ec2.api, c1, ec2.poolFacts())
  expect(rowsOf(c1)).toEqual([[r, 'marked', expect.stringMatching(/the group launched none in its place/)]])
  expect(ec2.tagged).toEqual([])
  // Phase 2 looks for a replacement again before it settles anything.
  const c2 = s.ctx(NOW + 3 * MIN)
  await reapReservations(ec2.api, c2, ec2.poolFacts())
  expect(rowsOf(c2)).toEqual([[r, 'attached', expect.stringMatching(/the group launched i-new in its place/)]])
  expect((await s.ledger.unsettled()).map((x) => x.instanceId)).toEqual(['i-new'])
})

test("a member another hook's claim tags at the same moment is not taken: the reservation stays, and the next pass looks again", async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const ec2 = fakeEc2(
    [
      instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } }),
      instance('i-new', { launchedAt: NOW - 5 * MIN })
    ],
    new Set(['i-new'])
  )
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([[r, 'left alone', expect.stringMatching(/i-new was claimed by reservation res-of-another-hook meanwhile/)]])
  expect((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId])).toEqual([[r, 'i-lost']])
})

test('a lost member and a failed claim, two new members: each reservation takes one of its own', async () => {
  const s = setup()
  const lost = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(lost, 'i-lost', NOW - 59 * MIN)
  const unclaimed = await s.reserve(NOW - 4 * MIN)
  const ec2 = fakeEc2([
    instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 9 * MIN, tags: { [RES]: lost } }),
    instance('i-a', { launchedAt: NOW - 8 * MIN }),
    instance('i-b', { launchedAt: NOW - 3.5 * MIN })
  ])
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  const open = new Map((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId]))
  expect(open).toEqual(
    new Map([
      [lost, 'i-a'],
      [unclaimed, 'i-b']
    ])
  )
  expect([ec2.tag('i-a', RES), ec2.tag('i-b', RES)]).toEqual([lost, unclaimed])
})

test("a reservation of another configuration's pool whose member ended is left to that pool's reap (which may move it)", async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN, { ...REQ, pool: 'other-pool' })
  await s.ledger.attach(r, 'i-other', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    instance('i-other', {
      state: 'terminated',
      launchedAt: NOW - 59 * MIN,
      endedAt: NOW - 30 * MIN,
      tags: { [RES]: r },
      group: 'other-pool'
    })
  ])
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([
    [r, 'left alone', expect.stringMatching(/pool other-pool is another configuration's, its own reap judges it/)]
  ])
  expect((await s.ledger.unsettled()).map((x) => x.id)).toEqual([r])
})

test('positive control: a per-job EC2 reservation whose instance ended is still settled at once', async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN, RESERVE_REQ)
  await s.ledger.attach(r, 'i-job', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    instance('i-job', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - MIN, tags: { [RES]: r }, group: null }),
    instance('i-new', { launchedAt: NOW - 5 * MIN })
  ])
  const c = s.ctx()
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([[r, 'settled', expect.stringMatching(/^its instance i-job ended at .*; 3480 s billed$/)]])
  expect(ec2.tagged).toEqual([])
})

test('a dry run says it would move the reservation and changes nothing', async () => {
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const ec2 = fakeEc2([
    instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } }),
    instance('i-new', { launchedAt: NOW - 5 * MIN })
  ])
  const c = s.ctx(NOW, true)
  await reapReservations(ec2.api, c, ec2.poolFacts())
  expect(rowsOf(c)).toEqual([[r, 'attached', expect.stringMatching(/the group launched i-new in its place/)]])
  expect(ec2.tagged).toEqual([])
  expect((await s.ledger.unsettled()).map((x) => x.instanceId)).toEqual(['i-lost'])
})

describe('a reserved member that stopped', () => {
  test('in service (a shutdown from inside: its root, or its setup failing): the reservation stays, and moves to the member the group launches in its place', async () => {
    // Settled at the stop, the group's health check then replaced the member with an untagged one:
    // the drift the move exists for, and one a job's root could cause at will with `poweroff`.
    const s = setup({ caps: { instances: 1 } })
    const r = await s.reserve(NOW - 60 * MIN)
    await s.ledger.attach(r, 'i-down', NOW - 59 * MIN)
    const down = (state: string, at: number) => instance('i-down', { state, launchedAt: NOW - 59 * MIN, endedAt: at, tags: { [RES]: r } })
    const stopped = fakeEc2([down('stopped', NOW - 3 * MIN)])
    const c1 = s.ctx()
    await reapReservations(stopped.api, c1, stopped.poolFacts())
    expect(rowsOf(c1)).toEqual([[r, 'left alone', 'its instance i-down is stopped']])
    expect((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId])).toEqual([[r, 'i-down']])
    // The cap still counts it: the group runs (or is about to run) a member for it.
    expect(await s.ledger.reserve(REQ, NOW)).toMatchObject({ ok: false })

    // The group ends it as unhealthy and launches one in its place.
    const replaced = fakeEc2([down('terminated', NOW - MIN), instance('i-new', { state: 'pending', launchedAt: NOW + MIN })])
    const c2 = s.ctx(NOW + 5 * MIN)
    await reapReservations(replaced.api, c2, replaced.poolFacts())
    expect(rowsOf(c2)).toEqual([
      [r, 'attached', expect.stringMatching(/^its member i-down ended at .*; the group launched i-new in its place/)]
    ])
    expect((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId, x.attachedAt])).toEqual([[r, 'i-new', NOW - 59 * MIN]])
  })

  test('positive control: into Standby, its run ends at the stop (settled at the time EC2 gives)', async () => {
    const s = setup()
    const r = await s.reserve(NOW - 60 * MIN)
    await s.ledger.attach(r, 'i-parked', NOW - 59 * MIN)
    const ec2 = fakeEc2(
      [instance('i-parked', { state: 'stopped', launchedAt: NOW - 59 * MIN, endedAt: NOW - 29 * MIN, tags: { [RES]: r } })],
      undefined,
      new Set(['i-parked'])
    )
    const c = s.ctx()
    await reapReservations(ec2.api, c, ec2.poolFacts())
    expect(rowsOf(c)).toEqual([[r, 'settled', expect.stringMatching(/^its pool member i-parked stopped at .*; 1800 s billed$/)]])
    expect(await s.ledger.unsettled()).toEqual([])
  })
})

test("a move cut short (tagged, the ledger's attach failed) is finished on the member that carries the tag, not handed to another", async () => {
  // Handed to another untagged member, two members would carry it and the ledger would count one of
  // them; with none, it was settled while its tag stayed on the replacement, which then ran uncounted.
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const attach = s.ledger.attach.bind(s.ledger)
  let failures = 1
  s.ledger.attach = (id, instanceId, at) => (failures-- > 0 ? Promise.reject(new Error('ledger unreachable')) : attach(id, instanceId, at))
  const ec2 = fakeEc2([
    instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } }),
    instance('i-new', { launchedAt: NOW - 5 * MIN }),
    instance('i-spare', { launchedAt: NOW - 4 * MIN })
  ])
  const c1 = s.ctx()
  await reapReservations(ec2.api, c1, ec2.poolFacts())
  expect(rowsOf(c1)).toEqual([[r, 'failed', expect.stringMatching(/i-new in its place.*ledger unreachable/)]])
  expect(ec2.tag('i-new', RES)).toBe(r)

  const c2 = s.ctx(NOW + MIN)
  await reapReservations(ec2.api, c2, ec2.poolFacts())
  expect(rowsOf(c2)).toEqual([[r, 'attached', expect.stringMatching(/the group launched i-new in its place/)]])
  expect((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId, x.attachedAt])).toEqual([[r, 'i-new', NOW - 59 * MIN]])
  expect(ec2.tag('i-spare', RES)).toBeUndefined()
})

test('a replacement the group launches late, just before the second pass, is waited for: the reservation is not settled under it', async () => {
  // Too new to take the reservation (a hook may be claiming it), it still says the group replaced the
  // member; settled then, the member it launched would run uncounted for good.
  const s = setup()
  const r = await s.reserve(NOW - 60 * MIN)
  await s.ledger.attach(r, 'i-lost', NOW - 59 * MIN)
  const lost = instance('i-lost', { state: 'terminated', launchedAt: NOW - 59 * MIN, endedAt: NOW - 6 * MIN, tags: { [RES]: r } })
  const before = fakeEc2([lost])
  const c1 = s.ctx()
  await reapReservations(before.api, c1, before.poolFacts())
  expect(rowsOf(c1)).toEqual([[r, 'marked', expect.stringMatching(/the group launched none in its place/)]])

  const after = fakeEc2([lost, instance('i-late', { state: 'pending', launchedAt: NOW + 2.5 * MIN })])
  const c2 = s.ctx(NOW + 3 * MIN)
  await reapReservations(after.api, c2, after.poolFacts())
  expect(rowsOf(c2)).toEqual([[r, 'kept', expect.stringMatching(/but i-late was launched 30 s ago and may be that one/)]])
  expect((await s.ledger.unsettled()).map((x) => [x.id, x.instanceId])).toEqual([[r, 'i-lost']])

  const c3 = s.ctx(NOW + 5 * MIN)
  await reapReservations(after.api, c3, after.poolFacts())
  expect(rowsOf(c3)).toEqual([[r, 'attached', expect.stringMatching(/the group launched i-late in its place/)]])
  expect((await s.ledger.unsettled()).map((x) => x.instanceId)).toEqual(['i-late'])
})
