// reap's judgements as pure functions: whether a job is dead, whether an instance is a candidate,
// what a mark allows, and what becomes of an unsettled reservation. The passes (reap-ec2.ts,
// reap-pool.ts, reap-static.ts) gather the facts and act; everything they decide is decided here.
import type { LedgerRecord } from '../fleet/ledger'
import { TAG_EXPIRES_AT, TAG_KEEP, TAG_LAUNCHED_AT, TAG_RESERVATION } from '../providers/ec2-plan'
import { CLAIM_SLACK_MS } from '../providers/pool-fleet'

/** What a row of reap's output says was done (or, in a dry run, would be done). */
export type Action = 'marked' | 'removed' | 'settled' | 'attached' | 'unmarked' | 'unprotected' | 'kept' | 'left alone' | 'failed'

export interface ReapRow {
  kind: 'instance' | 'reservation' | 'member' | 'slot'
  /** The instance id, reservation id, `host:port slot N`. */
  what: string
  why: string
  action: Action
}

export interface ReapTimes {
  now: number
  deadAfterMs: number
  graceMs: number
  /**
   * How long this reap host has itself seen a reservation's last sign of life (lastSign) unchanged,
   * by its own clock: the sign is written by another runner host's clock, and a skew between the
   * two must not make a live job look dead (watchedFor keeps the observation).
   */
  watched(r: LedgerRecord): number
  /**
   * How long this reap host has itself seen a reservation's attached instance unknown to EC2 (its
   * attach time is the launching host's clock, minutes off this pass's when that host is behind
   * AWS's); absent: as long as the attach time says.
   */
  unlisted?(r: LedgerRecord): number
}

/** A reservation's last sign of life, as written by the clock of the runner host that wrote it. */
export const lastSign = (r: Pick<LedgerRecord, 'heartbeatAt' | 'reservedAt'>): number => r.heartbeatAt ?? r.reservedAt

/**
 * The observation reap keeps of one reservation's last sign of life (`<sign>@<first seen>`, both ms),
 * given the one kept before: how long this host has seen `sign` unchanged, and what to keep now.
 */
export function watchedFor(kept: string | undefined, sign: number, now: number): { ms: number; keep: string } {
  const m = /^(-?\d+)@(\d+)$/.exec(kept ?? '')
  const since = m && Number(m[1]) === sign && Number(m[2]) <= now ? Number(m[2]) : now
  return { ms: now - since, keep: `${sign}@${since}` }
}

const minutes = (ms: number): string => `${Math.floor(ms / 60_000)} min`
const iso = (t: number): string => new Date(t).toISOString()

/**
 * Whether the job holding an unsettled reservation still shows signs of life: dead once its last
 * sign is over deadAfter old by its own timestamp and this reap host has also watched it unchanged
 * for deadAfter (a host first seeing it waits that long): a clock skewed on either side cannot end
 * a live job, however far off.
 */
export function jobLife(r: LedgerRecord, t: ReapTimes): { dead: boolean; why: string } {
  const age = t.now - lastSign(r)
  const what = r.heartbeatAt !== undefined ? 'last heartbeat' : 'reserved'
  const after = `fleet.reap.deadAfterMinutes ${minutes(t.deadAfterMs).split(' ')[0]}`
  // Watched on every pass, a young sign too: the watch then starts soon after the sign was written.
  const watched = t.watched(r)
  if (age <= t.deadAfterMs) return { dead: false, why: `job alive: ${what} ${Math.round(age / 1000)} s ago` }
  if (watched < t.deadAfterMs)
    return {
      dead: false,
      why: `job quiet: ${what} ${minutes(age)} ago, unchanged for the ${minutes(watched)} this host has watched it (${after} of its own)`
    }
  return {
    dead: true,
    why: `job dead: ${what} ${minutes(age)} ago, unchanged for the ${minutes(watched)} this host has watched it (${after})`
  }
}

export type Tags = Record<string, string>

/**
 * When an instance expires: its expires-at tag, or EC2's launch time plus the lifetime its tags
 * give (expires-at − launched-at, both stamped by the launching host's clock) when that is later.
 * A launching host whose clock was behind AWS's stamped an expiry that much early, and its job
 * would be ended early; one ahead only makes reap later (the instance shuts itself down anyway).
 * NaN without an expires-at tag.
 */
export function expiryOf(tags: Tags, launchTime: number | undefined): { at: number; stampedEarly: boolean } {
  const stamped = Date.parse(tags[TAG_EXPIRES_AT] ?? '')
  const launched = Date.parse(tags[TAG_LAUNCHED_AT] ?? '')
  if (!Number.isFinite(stamped) || !Number.isFinite(launched) || launchTime === undefined) return { at: stamped, stampedEarly: false }
  const byLaunch = launchTime + (stamped - launched)
  return byLaunch > stamped ? { at: byLaunch, stampedEarly: true } : { at: stamped, stampedEarly: false }
}

/**
 * Whether an instance the hook launched is a candidate for removal. `records` is the whole ledger
 * by id: an instance whose reservation is not in it belongs to another fleet, and only its expiry
 * (and the keep tag) apply.
 */
export function instanceVerdict(
  tags: Tags,
  /** Null: the ledger could not be read (an instance is then judged on its expiry, or not at all). */
  records: ReadonlyMap<string, LedgerRecord> | null,
  t: ReapTimes,
  /** EC2's launch time (AWS's clock). */
  launchTime?: number
): { candidate: boolean; keep?: true; unknown?: true; why: string } {
  if (TAG_KEEP in tags) return { candidate: false, keep: true, why: `keep tag (${TAG_KEEP})` }
  const { at: expires, stampedEarly } = expiryOf(tags, launchTime)
  if (Number.isFinite(expires) && expires <= t.now)
    return {
      candidate: true,
      why: stampedEarly
        ? `past its lifetime counted from EC2's launch time, ${iso(expires)} (its expires-at tag says ${iso(Date.parse(tags[TAG_EXPIRES_AT]))}: stamped before the launch, or by a clock behind AWS's)`
        : `past its expires-at ${iso(expires)}`
    }
  const until = Number.isFinite(expires) ? `expires ${iso(expires)}` : 'no expires-at tag'
  const id = tags[TAG_RESERVATION]
  if (!id) return { candidate: false, why: `no reservation tag: only its expiry applies (${until})` }
  if (!records) return { candidate: false, unknown: true, why: `reservation ${id}: the ledger could not be read (${until})` }
  const r = records.get(id)
  if (!r) return { candidate: false, why: `reservation ${id} is not in this ledger: only its expiry applies (${until})` }
  if (r.settledAt !== undefined) return { candidate: true, why: `job dead: its reservation was settled at ${iso(r.settledAt)}` }
  const life = jobLife(r, t)
  return { ...life, candidate: life.dead }
}

/** What a pass may do with something given whether it is a candidate now and its mark (ISO time) if any. */
export type MarkStep = 'mark' | 'wait' | 'remove' | 'unmark' | 'none'

/** How far ahead of now a mark may be (clocks of hosts that mark apart): one further ahead is no mark. */
const MARK_AHEAD_MS = 5 * 60_000

/**
 * The time of a mark as reap writes it (toISOString), or null. A static slot's mark lies on the
 * host, where a job was root: `0` or `9999` (years to Date.parse) would end the grace at once or
 * never.
 */
export function markTime(mark: string): number | null {
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$/.test(mark)) return null
  const at = Date.parse(mark)
  return Number.isFinite(at) ? at : null
}

export function markStep(candidate: boolean, mark: string | undefined, t: ReapTimes): MarkStep {
  if (!candidate) return mark === undefined ? 'none' : 'unmark'
  if (mark === undefined) return 'mark'
  const at = markTime(mark)
  // A mark that is not a time (hand-edited, damaged, forged) or lies in the future starts the grace again.
  if (at === null || at > t.now + MARK_AHEAD_MS) return 'mark'
  return t.now - at >= t.graceMs ? 'remove' : 'wait'
}

/** The row's reason for a mark still within its grace. */
export function waitWhy(why: string, mark: string, t: ReapTimes): string {
  const age = Math.max(0, Math.round((t.now - (markTime(mark) ?? t.now)) / 1000))
  return `${why}; marked ${age} s ago, removed after fleet.reap.graceMinutes ${Math.round(t.graceMs / 60_000)}`
}

/** An instance as EC2 last described it, for settling a reservation. */
export interface InstanceFact {
  id: string
  state: string
  launchedAt?: number
  /** When EC2 says it ended (from its state transition reason), if it says. */
  endedAt?: number
  /** When EC2 says a stopped instance stopped (from its state transition reason), if it says. */
  stoppedAt?: number
  /**
   * A pool member its group keeps in Standby (Auto Scaling's word, not EC2's): the group neither
   * counts nor replaces it. A member stopped while in service is replaced instead (its EC2 health check).
   */
  standby?: true
  tags: Tags
}

export { transitionTime } from '../providers/ec2-plan'

/** How long after its attach an instance EC2 does not list is taken as not visible yet, rather than gone. */
export const UNSEEN_MS = 5 * 60_000
/** How long after a pool member ended its group is given to launch one in its place before its reservation is settled. */
export const REPLACE_MS = 5 * 60_000
/** A pool member launched this recently may be the one a hook's scale-out is claiming: not taken for another reservation yet. */
export const CLAIMING_MS = 2 * 60_000

export type ReservationStep =
  | { do: 'settle'; startedAt?: number; endedAt: number; why: string }
  | { do: 'settle-unlaunched'; why: string }
  | { do: 'settle-unreplaced'; startedAt?: number; endedAt: number; why: string }
  | { do: 'attach'; instanceId: string; why: string; /** When its billing started (the instance's launch), if known. */ at?: number }
  | { do: 'move'; instanceId: string; startedAt: number; why: string }
  | { do: 'none'; why: string }

/**
 * An unsettled reservation, given its instance (attached or found by its tag; undefined: none
 * found, null: the attached id is unknown to EC2) and, for a pool's unattached one, a member it
 * may have launched. `replacement` is given for a reservation of this configuration's pool only
 * (undefined otherwise): the member its group launched in place of the reserved one, or null.
 */
/**
 * How long after its attach an EC2 job's instance is gone at the latest: it shuts itself down
 * maxLifetimeMinutes after its boot (user-data.ts), and its boot, shutdown and EC2's move to
 * terminated take minutes more.
 */
const SELF_END_SLACK_MS = 15 * 60_000

/**
 * When an instance whose end EC2 gives no time for ended at the latest: now, but for an EC2 job's
 * instance no later than its own end (a reap that was down a day must not bill that day), or its
 * job's last heartbeat if later (the job is root on its instance and can stop the timer that ends
 * it). A pool member lives on until it is replaced.
 */
function unseenEnd(r: LedgerRecord, startedAt: number | undefined, now: number): number {
  if (r.pool || startedAt === undefined) return now
  return Math.min(now, Math.max(startedAt + r.maxLifetimeMinutes * 60_000 + SELF_END_SLACK_MS, r.heartbeatAt ?? 0))
}

export function reservationStep(
  r: LedgerRecord,
  inst: InstanceFact | null | undefined,
  t: ReapTimes,
  unclaimedMember?: InstanceFact,
  replacement?: InstanceFact | null
): ReservationStep {
  // A pool member that ended outside the hook (a Spot interruption, the group's health replacement,
  // an instance refresh) left the desired capacity as it was: the group runs a member in its place,
  // untagged, and the reservation is that member's now. Settled, it would stop counting what the
  // group runs for the hook until the desired capacity dropped. Billing runs on from the first attach.
  const moveTo = (ended: string, endedAt: number | undefined, startedAt: number): ReservationStep | null =>
    replacement
      ? {
          do: 'move',
          instanceId: replacement.id,
          startedAt,
          why: `its member ${ended} ended${endedAt ? ` at ${iso(endedAt)}` : ''}; the group launched ${replacement.id} in its place, which takes the reservation over`
        }
      : null
  if (inst === null) {
    // EC2 is eventually consistent: an instance launched a moment ago may be unknown to Describe
    // yet. Settled then, its live job would count for nothing, and be judged dead by its instance's
    // next pass (its reservation settled) and terminated. An ended one stays listed for about an hour.
    const attached = t.now - (r.attachedAt ?? r.reservedAt)
    const seen = t.unlisted?.(r) ?? Infinity
    if (Math.min(attached, seen) < UNSEEN_MS)
      return {
        do: 'none',
        why: `its instance ${r.instanceId} is not listed by EC2 yet (attached ${Math.round(attached / 1000)} s ago${seen === Infinity ? '' : `; unlisted for the ${Math.round(seen / 1000)} s this host has looked`})`
      }
    return (
      moveTo(r.instanceId as string, undefined, r.attachedAt ?? r.reservedAt) ?? {
        do: 'settle',
        startedAt: r.attachedAt,
        endedAt: unseenEnd(r, r.attachedAt, t.now),
        why: `its instance ${r.instanceId} is gone (EC2 no longer knows it)`
      }
    )
  }
  if (inst) {
    if (inst.state !== 'terminated') {
      // A pool member stopped into Standby since this reservation's run began: that run is over, and
      // a stopped member bills no instance time. Left open, the reservation held the caps while it
      // stood stopped, and was billed for the whole stop when the member was started or ended later.
      // A stop from before (a member tagged with a new reservation just before its start) is not its end.
      // A member stopped in service (a shutdown from inside: its own root, or its setup failing) is
      // not: its group replaces it with an untagged member, which takes the reservation over (below);
      // settled at the stop, that replacement would run uncounted for good.
      const start = r.attachedAt ?? r.reservedAt
      if (
        inst.state === 'stopped' &&
        r.pool &&
        inst.standby &&
        inst.stoppedAt !== undefined &&
        inst.stoppedAt >= Math.floor(start / 1000) * 1000
      )
        return {
          do: 'settle',
          startedAt: r.attachedAt ?? inst.launchedAt,
          endedAt: inst.stoppedAt,
          why: `its pool member ${inst.id} stopped at ${iso(inst.stoppedAt)}`
        }
      // Its member started again under a new reservation (a stopped member restarted for a waiting
      // job): this run ended at that start. The hook settles it first, but only warns when it cannot
      // (a throttled ledger), and left open it counted, and billed, for the member's whole life.
      const now = inst.tags[TAG_RESERVATION]
      if (r.pool && now && now !== r.id && inst.launchedAt !== undefined && inst.launchedAt >= start)
        return {
          do: 'settle',
          startedAt: r.attachedAt ?? inst.launchedAt,
          endedAt: inst.launchedAt,
          why: `its pool member ${inst.id} runs for reservation ${now} since its start at ${iso(inst.launchedAt)}`
        }
      // An EC2 job's instance found by its own tag but never attached (the hook's attach failed,
      // which is only a warning): attached now, billed from its launch. Left unattached, it would be
      // settled as unlaunched, at no cost, once EC2 stopped listing the ended instance. (A pool
      // member's tag may be a claim another hook is overwriting: pools attach through their claims.)
      if (!r.instanceId && !r.pool && inst.launchedAt !== undefined && (inst.state === 'running' || inst.state === 'pending'))
        return { do: 'attach', instanceId: inst.id, at: inst.launchedAt, why: `its instance ${inst.id} carries it but was never attached` }
      return { do: 'none', why: `its instance ${inst.id} is ${inst.state}` }
    }
    const startedAt = r.attachedAt ?? inst.launchedAt
    const endedAt = inst.endedAt ?? unseenEnd(r, startedAt, t.now)
    const ended = `ended${inst.endedAt ? ` at ${iso(inst.endedAt)}` : ''}`
    if (replacement === undefined) return { do: 'settle', startedAt, endedAt, why: `its instance ${inst.id} ${ended}` }
    const moved = moveTo(inst.id, inst.endedAt, startedAt ?? r.reservedAt)
    if (moved) return moved
    // The group usually launches the replacement within a minute or two of the end; until then nothing
    // tells a lost member from one ended with the desired capacity lowered.
    if (inst.endedAt !== undefined && t.now - inst.endedAt < REPLACE_MS)
      return { do: 'none', why: `its member ${inst.id} ${ended}; the group may still launch one in its place` }
    return { do: 'settle-unreplaced', startedAt, endedAt, why: `its member ${inst.id} ${ended}, and the group launched none in its place` }
  }
  if (unclaimedMember)
    return { do: 'attach', instanceId: unclaimedMember.id, why: `member ${unclaimedMember.id} of pool ${r.pool} was launched for it` }
  if (jobLife(r, t).dead)
    return { do: 'settle-unlaunched', why: `no instance found ${minutes(t.now - r.reservedAt)} after it was reserved` }
  return { do: 'none', why: `no instance yet, reserved ${Math.round((t.now - r.reservedAt) / 1000)} s ago` }
}

/** The pool member a pool reservation whose claim failed may have launched: untagged, launched after it (less the clock slack of pool-fleet.ts). */
export function unclaimedMemberFor(
  r: LedgerRecord,
  members: readonly InstanceFact[],
  taken: ReadonlySet<string>
): InstanceFact | undefined {
  return members
    .filter(
      (m) => !m.tags[TAG_RESERVATION] && !taken.has(m.id) && m.launchedAt !== undefined && m.launchedAt >= r.reservedAt - CLAIM_SLACK_MS
    )
    .sort((a, b) => (a.launchedAt ?? 0) - (b.launchedAt ?? 0))[0]
}

/**
 * The member a pool's group launched in place of a reserved member that ended without the desired
 * capacity lowered: untagged, pending or running, launched since the reservation's attach (less
 * CLAIM_SLACK_MS: the attach time is the runner host's clock), and not in the last CLAIMING_MS (a hook's scale-out may be claiming it); the
 * oldest. Which of the untagged members carries the reservation does not change what the caps
 * count: one reservation for one member the group runs beyond the ones nobody reserved.
 */
export function replacementFor(
  r: LedgerRecord,
  members: readonly InstanceFact[],
  taken: ReadonlySet<string>,
  t: ReapTimes
): InstanceFact | undefined {
  const since = (r.attachedAt ?? r.reservedAt) - CLAIM_SLACK_MS
  return members
    .filter(
      (m) =>
        !m.tags[TAG_RESERVATION] &&
        !taken.has(m.id) &&
        (m.state === 'pending' || m.state === 'running') &&
        m.launchedAt !== undefined &&
        m.launchedAt >= since &&
        m.launchedAt <= t.now - CLAIMING_MS
    )
    .sort((a, b) => (a.launchedAt ?? 0) - (b.launchedAt ?? 0) || a.id.localeCompare(b.id))[0]
}

/**
 * An untagged member pending or running that the group launched within CLAIMING_MS: too new to take
 * a reservation over (a hook may be claiming it), but maybe the one launched in place of an ended
 * member, so that member's reservation is not settled while it is there. A group that launched late
 * (or an end EC2 gave no time for, so that nothing waited REPLACE_MS) would otherwise lose it.
 */
export function newMemberIn(members: readonly InstanceFact[], taken: ReadonlySet<string>, t: ReapTimes): InstanceFact | undefined {
  return members.find(
    (m) =>
      !m.tags[TAG_RESERVATION] &&
      !taken.has(m.id) &&
      (m.state === 'pending' || m.state === 'running') &&
      m.launchedAt !== undefined &&
      m.launchedAt > t.now - CLAIMING_MS
  )
}

/**
 * A pool member no job can still hold: the hook leases only members younger than maxVmAgeMs, and
 * no job runs longer than maxJobMs. Past that, a lease record saying "held" was written by the
 * member itself (a job was root there), so it is not believed. The reason, or null.
 */
export function heldPastAnyJob(launchedAt: number | undefined, now: number, maxVmAgeMs: number, maxJobMs: number): string | null {
  if (launchedAt === undefined || now - launchedAt < maxVmAgeMs + maxJobMs) return null
  return `launched ${minutes(now - launchedAt)} ago, past reuse.maxVmAgeMinutes ${minutes(maxVmAgeMs).split(' ')[0]} + fleet.reap.maxJobMinutes ${minutes(maxJobMs).split(' ')[0]}: no job can hold it, its lease record is not believed`
}
