// reap's passes over EC2: instances the hook launched (kind ec2) whose job is dead or that are past
// their expiry, and the ledger's unsettled reservations whose instance ended or never came (or, for
// a pool's, whose member the group replaced: the replacement takes the reservation over).
import type { Ec2Config } from '../config'
import type { LedgerRecord } from '../fleet/ledger'
import { formatError } from '../errors'
import { launchedScope, TAG_OWNER, TAG_REAP_CANDIDATE, TAG_RESERVATION } from '../providers/ec2-plan'
import { TAG_GROUP } from '../providers/pool-plan'
import { act, addRow, alignToAws, passNow, step, type ReapContext } from './reap-context'
import { factOf, LIVE_STATES, ReapEc2, tagsOf } from './reap-aws'
import {
  instanceVerdict,
  markStep,
  newMemberIn,
  replacementFor,
  reservationStep,
  unclaimedMemberFor,
  waitWhy,
  type InstanceFact,
  type ReservationStep
} from './reap-plan'

/** Reservations this old are past any instance's lifetime: an instance naming one is judged on its expiry alone. */
const RECORDS_WINDOW_MS = 8 * 24 * 3600_000

/**
 * The ledger's reservations of the window by id; null, with a failed row, when it cannot be read:
 * expiry needs no ledger, and an instance past its expires-at must still go.
 */
async function ledgerById(ctx: ReapContext): Promise<Map<string, LedgerRecord> | null> {
  try {
    const all = await ctx.ledger.records({ since: ctx.times.now - RECORDS_WINDOW_MS })
    // Open ones a ranged read misses (an earlier version's, written after the table was indexed) too.
    return new Map([...(await ctx.ledger.unsettled()), ...all].map((r) => [r.id, r]))
  } catch (e) {
    addRow(ctx, 'reservation', 'ledger', 'failed', `cannot read the ledger: ${formatError(e)}; instances are judged on their expiry alone`)
    return null
  }
}

/** Kind ec2: its instances, then the ledger's open reservations. */
export async function reapEc2Pass(cfg: Ec2Config, ctx: ReapContext): Promise<void> {
  const api = new ReapEc2(cfg, ctx.signal, (ms) => alignToAws(ctx, ms))
  await step(ctx, 'instance', 'EC2 instances', () => reapInstances(api, ctx, cfg.tags))
  await step(ctx, 'reservation', 'ledger', () => reapReservations(api, ctx))
}

/**
 * Every instance with the owner tag that is not terminated, and that carries the
 * configured provider.tags (what this configuration launches; other setups in the account differ
 * there) as a launch sets them: `tags` is provider.tags, read through launchedScope.
 */
export async function reapInstances(api: ReapEc2, ctx: ReapContext, tags: Readonly<Record<string, string>>): Promise<void> {
  const records = await ledgerById(ctx)
  const instances = await api.describe([
    { Name: 'tag-key', Values: [TAG_OWNER] },
    { Name: 'instance-state-name', Values: LIVE_STATES },
    ...Object.entries(launchedScope(tags)).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] }))
  ])
  // After EC2's first answer: the pass's clock may be AWS's now.
  const t = ctx.times
  for (const inst of instances) {
    const id = inst.InstanceId as string
    const tags = tagsOf(inst)
    const v = instanceVerdict(tags, records, t, factOf(inst).launchedAt)
    // Not known without the ledger: neither marked nor unmarked.
    if (v.unknown) {
      addRow(ctx, 'instance', id, 'left alone', v.why)
      continue
    }
    const mark = tags[TAG_REAP_CANDIDATE]
    const step = markStep(v.candidate, mark, t)
    if (step === 'none') addRow(ctx, 'instance', id, 'left alone', v.why)
    else if (step === 'unmark')
      await act(ctx, 'instance', id, 'unmarked', `no longer a candidate: ${v.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE]))
    else if (step === 'mark')
      await act(ctx, 'instance', id, 'marked', v.why, () => api.tag(id, { [TAG_REAP_CANDIDATE]: new Date(t.now).toISOString() }))
    else if (step === 'wait') addRow(ctx, 'instance', id, 'kept', waitWhy(v.why, mark, t))
    else await removeInstance(api, ctx, id, records)
  }
}

/**
 * Phase 2 for one instance: its tags and keep read again, and its reservation if still open (the
 * open ones only: the whole history once per pass is enough), before it is terminated.
 */
async function removeInstance(
  api: ReapEc2,
  ctx: ReapContext,
  id: string,
  records: ReadonlyMap<string, LedgerRecord> | null
): Promise<void> {
  const t = ctx.times
  const now = await api.one(id)
  if (!now || !LIVE_STATES.includes(now.State?.Name ?? '')) return addRow(ctx, 'instance', id, 'left alone', 'ended meanwhile')
  const tags = tagsOf(now)
  let r: Map<string, LedgerRecord> | null = null
  if (records) {
    try {
      r = new Map(records)
      for (const open of await ctx.ledger.unsettled()) r.set(open.id, open)
    } catch (e) {
      r = null
      addRow(ctx, 'reservation', 'ledger', 'failed', `cannot read the open reservations: ${formatError(e)}`)
    }
  }
  const v = instanceVerdict(tags, r, t, factOf(now).launchedAt)
  if (v.unknown) return addRow(ctx, 'instance', id, 'left alone', v.why)
  if (!v.candidate)
    return void (await act(ctx, 'instance', id, 'unmarked', `came back to life: ${v.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE])))
  const res = r?.get(tags[TAG_RESERVATION] ?? '')
  await act(ctx, 'instance', id, 'removed', v.why, async () => {
    await api.terminate(id)
    if (!res || res.settledAt !== undefined) return 'terminated'
    const s = await ctx.ledger.settle(res.id, {
      startedAt: now.LaunchTime ? new Date(now.LaunchTime).getTime() : res.attachedAt,
      endedAt: passNow(ctx)
    })
    return `terminated; reservation ${res.id} settled (${s.billedSeconds} s)`
  })
}

/** A pool's members, for pool reservations whose claim failed or whose member ended or stopped. */
export interface PoolFacts {
  group: string
  members: InstanceFact[]
  /** The stopped members the group keeps in Standby: only their stop ends a reservation's run. */
  standby: ReadonlySet<string>
}

/**
 * Every unsettled reservation: settled when its instance ended, or when none ever came. A pool
 * reservation whose member ended is moved to the member the group launched in its place, if any.
 */
export async function reapReservations(api: ReapEc2, ctx: ReapContext, pool?: PoolFacts): Promise<void> {
  const open = await ctx.ledger.unsettled()
  if (!open.length) return
  const byReservation = new Map<string, InstanceFact>()
  const tagged = await api.describe([{ Name: 'tag-key', Values: [TAG_RESERVATION] }])
  // After EC2's first answer: the pass's clock may be AWS's now.
  const t = ctx.times
  for (const i of tagged) {
    const f = factOf(i)
    const had = byReservation.get(f.tags[TAG_RESERVATION])
    // One reservation, one instance; should two carry it, the live one speaks.
    if (!had || had.state === 'terminated') byReservation.set(f.tags[TAG_RESERVATION], f)
  }
  const claimed = new Set([...byReservation.values()].map((f) => f.id))
  for (const r of open) {
    const carrier = byReservation.get(r.id)
    let inst: InstanceFact | null | undefined = carrier
    if (r.instanceId && inst?.id !== r.instanceId) {
      const one = await api.one(r.instanceId)
      inst = one ? factOf(one) : null
    }
    // Another pool's reservation: its own reap knows the members its group launched in place of an ended one.
    if (r.pool && r.pool !== pool?.group && (!inst || inst.state === 'terminated')) {
      const seen = inst ? `its member ${inst.id} ended` : 'no member found'
      addRow(ctx, 'reservation', r.id, 'left alone', `${seen}; pool ${r.pool} is another configuration's, its own reap judges it`)
      continue
    }
    const members = r.pool !== undefined && r.pool === pool?.group ? pool.members : undefined
    if (inst?.state === 'stopped' && members && pool?.standby.has(inst.id)) inst = { ...inst, standby: true }
    const unclaimed = !inst && members ? unclaimedMemberFor(r, members, claimed) : undefined
    const ended = inst === null || inst?.state === 'terminated'
    // A move cut short (tagged, not attached: the ledger failed, the pass was killed) is finished on
    // the member that carries the tag; another replacement would leave that one counted by nothing.
    const halfMoved =
      carrier && carrier.id !== r.instanceId && ['pending', 'running'].includes(carrier.state) && members?.some((m) => m.id === carrier.id)
        ? carrier
        : undefined
    const replacement = ended && members ? (halfMoved ?? replacementFor(r, members, claimed, t) ?? null) : undefined
    const step = reservationStep(r, inst, t, unclaimed, replacement)
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
        if (inst?.id !== step.instanceId) await api.tag(step.instanceId, { [TAG_RESERVATION]: r.id })
        await ctx.ledger.attach(r.id, step.instanceId, step.at ?? unclaimed?.launchedAt)
      })
    } else if (step.do === 'move') await moveReservation(api, ctx, r, step, claimed)
    else {
      // No tag to mark: the mark is kept on this runner host.
      ctx.seenMarks.add(key)
      const mark = ctx.marks.get(key)
      const m = markStep(true, mark, t)
      if (m === 'mark')
        await act(ctx, 'reservation', r.id, 'marked', step.why, () =>
          Promise.resolve(void ctx.marks.set(key, new Date(t.now).toISOString()))
        )
      else if (m === 'wait') addRow(ctx, 'reservation', r.id, 'kept', waitWhy(step.why, mark as string, t))
      else if (step.do === 'settle-unreplaced') await settleUnreplaced(api, ctx, r, inst as InstanceFact, pool as PoolFacts, claimed)
      else await settleUnlaunched(api, ctx, r, step.why)
    }
  }
}

/**
 * A pool reservation taken over by the member its group launched in place of the ended one: tagged
 * and read back (EC2 has no conditional tagging: a hook's claim of the same member at that moment
 * wins, and the next pass looks again), then attached with the first member's billing start.
 */
async function moveReservation(
  api: ReapEc2,
  ctx: ReapContext,
  r: LedgerRecord,
  step: Extract<ReservationStep, { do: 'move' }>,
  claimed: Set<string>
): Promise<void> {
  const id = step.instanceId
  claimed.add(id)
  if (ctx.dryRun) return addRow(ctx, 'reservation', r.id, 'attached', step.why)
  try {
    const now = await api.one(id)
    const f = now ? factOf(now) : null
    const holds = f?.tags[TAG_RESERVATION]
    if (!f || !['pending', 'running'].includes(f.state) || (holds && holds !== r.id)) {
      const is = !f ? 'gone' : holds ? `claimed by reservation ${holds}` : f.state
      return addRow(ctx, 'reservation', r.id, 'left alone', `${step.why}; but ${id} is ${is} now: the next pass looks again`)
    }
    // Carrying this reservation already: an earlier move that did not reach the ledger.
    if (holds !== r.id) await api.tag(id, { [TAG_RESERVATION]: r.id })
    const back = await api.one(id)
    const holder = back ? tagsOf(back)[TAG_RESERVATION] : undefined
    if (holder !== r.id)
      return addRow(
        ctx,
        'reservation',
        r.id,
        'left alone',
        `${step.why}; but ${id} was claimed by reservation ${holder} meanwhile: the next pass looks again`
      )
    await ctx.ledger.attach(r.id, id, step.startedAt)
    addRow(ctx, 'reservation', r.id, 'attached', step.why)
  } catch (e) {
    addRow(ctx, 'reservation', r.id, 'failed', `${step.why}; attached: ${(e as Error).message}`)
  }
}

/**
 * Phase 2 for a pool reservation whose member ended with nothing in its place: the ledger and the
 * group's members read again; a member launched in its place meanwhile takes it over, else it is settled.
 */
async function settleUnreplaced(
  api: ReapEc2,
  ctx: ReapContext,
  r: LedgerRecord,
  inst: InstanceFact,
  pool: PoolFacts,
  claimed: Set<string>
): Promise<void> {
  const key = `reservation:${r.id}`
  const fresh = (await ctx.ledger.unsettled()).find((x) => x.id === r.id)
  if (!fresh || fresh.instanceId !== r.instanceId) {
    ctx.marks.delete(key)
    return addRow(
      ctx,
      'reservation',
      r.id,
      'unmarked',
      fresh ? `came back to life: attached to ${fresh.instanceId} now` : 'settled meanwhile'
    )
  }
  const members = (
    await api.describe([
      { Name: `tag:${TAG_GROUP}`, Values: [pool.group] },
      { Name: 'instance-state-name', Values: ['pending', 'running'] }
    ])
  ).map(factOf)
  const step = reservationStep(fresh, inst, ctx.times, undefined, replacementFor(fresh, members, claimed, ctx.times) ?? null)
  if (step.do === 'move') {
    ctx.marks.delete(key)
    return moveReservation(api, ctx, fresh, step, claimed)
  }
  if (step.do !== 'settle-unreplaced') return addRow(ctx, 'reservation', r.id, 'left alone', step.why)
  // Marked, it waits on: a later pass settles it once no new member may be its replacement.
  const young = newMemberIn(members, claimed, ctx.times)
  if (young)
    return addRow(
      ctx,
      'reservation',
      r.id,
      'kept',
      `${step.why}; but ${young.id} was launched ${Math.round((ctx.times.now - (young.launchedAt as number)) / 1000)} s ago and may be that one: the next pass looks again`
    )
  await act(ctx, 'reservation', r.id, 'settled', step.why, async () => {
    const s = await ctx.ledger.settle(r.id, { startedAt: step.startedAt, endedAt: step.endedAt })
    ctx.marks.delete(key)
    return `${s.billedSeconds} s billed`
  })
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
    await ctx.ledger.settle(r.id, { endedAt: passNow(ctx), launched: false })
    ctx.marks.delete(key)
    return 'zero cost'
  })
}
