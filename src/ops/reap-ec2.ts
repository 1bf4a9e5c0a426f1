// reap's passes over EC2: instances the hook launched (kind ec2) whose job is dead or that are past
// their expiry, and the ledger's unsettled reservations whose instance ended or never came.
import type { LedgerRecord } from '../fleet/ledger'
import { launchedScope, TAG_OWNER, TAG_REAP_CANDIDATE, TAG_RESERVATION } from '../providers/ec2-plan'
import { act, addRow, type ReapContext } from './reap-context'
import { factOf, LIVE_STATES, tagsOf, type ReapEc2 } from './reap-aws'
import { instanceVerdict, markStep, reservationStep, unclaimedMemberFor, waitWhy, type InstanceFact } from './reap-plan'

/** Reservations this old are past any instance's lifetime: an instance naming one is judged on its expiry alone. */
const RECORDS_WINDOW_MS = 8 * 24 * 3600_000

async function ledgerById(ctx: ReapContext): Promise<Map<string, LedgerRecord>> {
  const all = await ctx.ledger.records({ since: ctx.times.now - RECORDS_WINDOW_MS })
  return new Map(all.map((r) => [r.id, r]))
}

/**
 * Kind ec2: every instance with the owner tag that is not terminated, and that carries the
 * configured provider.tags (what this configuration launches; other setups in the account differ
 * there) as a launch sets them: `tags` is provider.tags, read through launchedScope.
 */
export async function reapInstances(api: ReapEc2, ctx: ReapContext, tags: Readonly<Record<string, string>>): Promise<void> {
  const t = ctx.times
  const records = await ledgerById(ctx)
  const instances = await api.describe([
    { Name: 'tag-key', Values: [TAG_OWNER] },
    { Name: 'instance-state-name', Values: LIVE_STATES },
    ...Object.entries(launchedScope(tags)).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] }))
  ])
  for (const inst of instances) {
    const id = inst.InstanceId as string
    const tags = tagsOf(inst)
    const v = instanceVerdict(tags, records, t)
    const mark = tags[TAG_REAP_CANDIDATE]
    const step = markStep(v.candidate, mark, t)
    if (step === 'none') addRow(ctx, 'instance', id, 'left alone', v.why)
    else if (step === 'unmark')
      await act(ctx, 'instance', id, 'unmarked', `no longer a candidate: ${v.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE]))
    else if (step === 'mark')
      await act(ctx, 'instance', id, 'marked', v.why, () => api.tag(id, { [TAG_REAP_CANDIDATE]: new Date(t.now).toISOString() }))
    else if (step === 'wait') addRow(ctx, 'instance', id, 'kept', waitWhy(v.why, mark, t))
    else await removeInstance(api, ctx, id)
  }
}

/** Phase 2 for one instance: everything re-read (tags, keep, the ledger) before it is terminated. */
async function removeInstance(api: ReapEc2, ctx: ReapContext, id: string): Promise<void> {
  const t = ctx.times
  const now = await api.one(id)
  if (!now || !LIVE_STATES.includes(now.State?.Name ?? '')) return addRow(ctx, 'instance', id, 'left alone', 'ended meanwhile')
  const tags = tagsOf(now)
  const r = await ledgerById(ctx)
  const v = instanceVerdict(tags, r, t)
  if (!v.candidate)
    return void (await act(ctx, 'instance', id, 'unmarked', `came back to life: ${v.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE])))
  const res = r.get(tags[TAG_RESERVATION] ?? '')
  await act(ctx, 'instance', id, 'removed', v.why, async () => {
    await api.terminate(id)
    if (!res || res.settledAt !== undefined) return 'terminated'
    const s = await ctx.ledger.settle(res.id, {
      startedAt: now.LaunchTime ? new Date(now.LaunchTime).getTime() : res.attachedAt,
      endedAt: ctx.clock.now()
    })
    return `terminated; reservation ${res.id} settled (${s.billedSeconds} s)`
  })
}

/** A pool's members, for pool reservations whose claim failed. */
export interface PoolFacts {
  group: string
  members: InstanceFact[]
}

/** Every unsettled reservation: settled when its instance ended, or when none ever came. */
export async function reapReservations(api: ReapEc2, ctx: ReapContext, pool?: PoolFacts): Promise<void> {
  const t = ctx.times
  const open = await ctx.ledger.unsettled()
  if (!open.length) return
  const byReservation = new Map<string, InstanceFact>()
  for (const i of await api.describe([{ Name: 'tag-key', Values: [TAG_RESERVATION] }])) {
    const f = factOf(i)
    const had = byReservation.get(f.tags[TAG_RESERVATION])
    // One reservation, one instance; should two carry it, the live one speaks.
    if (!had || had.state === 'terminated') byReservation.set(f.tags[TAG_RESERVATION], f)
  }
  const claimed = new Set([...byReservation.values()].map((f) => f.id))
  for (const r of open) {
    let inst: InstanceFact | null | undefined = byReservation.get(r.id)
    if (r.instanceId && inst?.id !== r.instanceId) {
      const one = await api.one(r.instanceId)
      inst = one ? factOf(one) : null
    }
    if (!inst && r.pool && r.pool !== pool?.group) {
      addRow(ctx, 'reservation', r.id, 'left alone', `no member found; pool ${r.pool} is another configuration's, its own reap judges it`)
      continue
    }
    const unclaimed = !inst && r.pool && pool ? unclaimedMemberFor(r, pool.members, claimed) : undefined
    const step = reservationStep(r, inst, t, unclaimed)
    const key = `reservation:${r.id}`
    if (step.do === 'none') addRow(ctx, 'reservation', r.id, 'left alone', step.why)
    else if (step.do === 'settle')
      await act(ctx, 'reservation', r.id, 'settled', step.why, async () => {
        const s = await ctx.ledger.settle(r.id, { startedAt: step.startedAt, endedAt: step.endedAt })
        return `${s.billedSeconds} s billed`
      })
    else if (step.do === 'attach') {
      claimed.add(step.instanceId)
      await act(ctx, 'reservation', r.id, 'attached', step.why, async () => {
        await api.tag(step.instanceId, { [TAG_RESERVATION]: r.id })
        await ctx.ledger.attach(r.id, step.instanceId, unclaimed?.launchedAt)
      })
    } else {
      // No tag to mark: the mark is kept on this runner host.
      ctx.seenMarks.add(key)
      const mark = ctx.marks.get(key)
      const m = markStep(true, mark, t)
      if (m === 'mark')
        await act(ctx, 'reservation', r.id, 'marked', step.why, () =>
          Promise.resolve(void ctx.marks.set(key, new Date(t.now).toISOString()))
        )
      else if (m === 'wait') addRow(ctx, 'reservation', r.id, 'kept', waitWhy(step.why, mark as string, t))
      else await settleUnlaunched(api, ctx, r, step.why)
    }
  }
}

/** Phase 2 for a reservation no instance came for: the ledger and EC2 asked again first. */
async function settleUnlaunched(api: ReapEc2, ctx: ReapContext, r: LedgerRecord, why: string): Promise<void> {
  const key = `reservation:${r.id}`
  const fresh = (await ctx.ledger.unsettled()).find((x) => x.id === r.id)
  const found = fresh && !fresh.instanceId ? await api.describe([{ Name: `tag:${TAG_RESERVATION}`, Values: [r.id] }]) : []
  const step = fresh && !fresh.instanceId && !found.length ? reservationStep(fresh, undefined, ctx.times) : null
  if (step?.do !== 'settle-unlaunched') {
    ctx.marks.delete(key)
    return addRow(ctx, 'reservation', r.id, 'unmarked', fresh ? 'came back to life: it has an instance now' : 'settled meanwhile')
  }
  await act(ctx, 'reservation', r.id, 'settled', `${why}: nothing ran for it`, async () => {
    await ctx.ledger.settle(r.id, { endedAt: ctx.clock.now(), launched: false })
    ctx.marks.delete(key)
    return 'zero cost'
  })
}
