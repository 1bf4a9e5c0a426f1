// Pure parts of the pool provider: what DescribeInstances says about the members, which may be
// leased, and the lines a waiting job prints. Unit tested without AWS or SSH.
import type * as Asg from '@aws-sdk/client-auto-scaling'
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2PoolConfig } from '../config'
import { EC2_INSTANCE_ID, isUserName } from '../input-rules'
import { addressOf, TAG_RESERVATION, transitionTime } from './ec2-plan'

/** Written by the member itself, once, through its instance role (docs/security.md): the key pinned per lease. */
export const TAG_HOST_KEY = 'remote-container-hooks:host-key'
/** Jobs a member served, written by runner hosts at release. */
export const TAG_JOBS = 'remote-container-hooks:jobs'
/** Why a member is being replaced; a member with it is never leased again. */
export const TAG_RECYCLE = 'remote-container-hooks:recycle'
/**
 * The recycle tag a member gets at its lease with reuse.maxJobsPerVm 1, before the job runs: any
 * later grant replaces it, so no other job may use it. Any other value was set once it was to go.
 */
export const SERVED_ONE_JOB = 'served its one job'

/**
 * Whether a recycle value says the member was leased for one job: SERVED_ONE_JOB itself, or a
 * later reason that carries it (`… (served its one job)`). A fact of the member, not of the
 * reader's config: runner hosts of one pool may be set differently (an upgrade under way), and
 * with reuse another job may legitimately hold a member whose lapsed lease it took over.
 */
export const leasedForOneJob = (recycle: string | null): boolean =>
  recycle !== null && (recycle === SERVED_ONE_JOB || recycle.endsWith(`(${SERVED_ONE_JOB})`))
/** Set by the Auto Scaling group on its members. */
export const TAG_GROUP = 'aws:autoscaling:groupName'

/** Host key types ssh2 verifies; the tag holds `type base64` and nothing else. */
const HOST_KEY = /^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/]{20,400}={0,2}$/

export interface Member {
  id: string
  /** The SSH user (provider.user, or the member's own from the tag it names); null: none usable. */
  user: string | null
  /** EC2 state: pending, running, stopping, stopped. */
  state: string
  address: { host: string; port: number } | null
  hostKey: string | null
  jobs: number
  launchedAt: Date | null
  /** A stopped member: when EC2 says it stopped (its state transition reason), if it says. */
  stoppedAt?: number
  recycle: string | null
  /** The fleet ledger reservation the member runs under (a scale-out or start by a hook), or null. */
  reservation: string | null
}

const tag = (i: Ec2.Instance, key: string): string | undefined => i.Tags?.find((t) => t.Key === key)?.Value

/** The member's SSH user: the configured one, or the value of the tag it names (never root). */
function userOf(i: Ec2.Instance, user: string): string | null {
  const u = user.startsWith('tag:') ? tag(i, user.slice(4)) : user
  return u && isUserName(u) && u !== 'root' ? u : null
}

export function membersOf(
  res: Ec2.DescribeInstancesCommandOutput,
  cfg: Pick<Ec2PoolConfig, 'connect' | 'sshPort' | 'autoScalingGroup' | 'user'>
): Member[] {
  return (res.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .filter((i) => i.InstanceId && EC2_INSTANCE_ID.test(i.InstanceId) && tag(i, TAG_GROUP) === cfg.autoScalingGroup)
    .map((i) => {
      const key = tag(i, TAG_HOST_KEY)?.trim()
      const jobs = Number(tag(i, TAG_JOBS) ?? '0')
      const stoppedAt = i.State?.Name === 'stopped' ? transitionTime(i.StateTransitionReason) : undefined
      return {
        id: i.InstanceId as string,
        user: userOf(i, cfg.user),
        state: i.State?.Name ?? 'unknown',
        address: addressOf(i, cfg),
        hostKey: key && HOST_KEY.test(key) ? key : null,
        jobs: Number.isSafeInteger(jobs) && jobs >= 0 ? jobs : 0,
        launchedAt: i.LaunchTime ? new Date(i.LaunchTime) : null,
        recycle: tag(i, TAG_RECYCLE) ?? null,
        reservation: tag(i, TAG_RESERVATION) || null,
        ...(stoppedAt === undefined ? {} : { stoppedAt })
      }
    })
    .sort((a, b) => (a.id < b.id ? -1 : 1))
}

/** Why a member must be replaced rather than serve another job, or null. */
export function wornOut(m: Member, cfg: Pick<Ec2PoolConfig, 'reuse'>, now: number, jobsAfter = m.jobs): string | null {
  if (jobsAfter >= cfg.reuse.maxJobsPerVm) return `served ${jobsAfter} jobs (reuse.maxJobsPerVm ${cfg.reuse.maxJobsPerVm})`
  if (m.launchedAt && now - m.launchedAt.getTime() >= cfg.reuse.maxVmAgeMinutes * 60_000)
    return `older than reuse.maxVmAgeMinutes (${cfg.reuse.maxVmAgeMinutes})`
  return null
}

/**
 * A member running this long without its host key tag never finished its setup (the pool module's
 * setup powers off after 30 minutes; a hung one of another image may not): no job will get it.
 */
export const SETUP_LIMIT_MS = 60 * 60_000

/** Running past SETUP_LIMIT_MS (EC2's launch time, its latest start) without a host key: its setup never finished. */
export function setupStuck(m: Member, now: number): boolean {
  return m.state === 'running' && !m.hostKey && !m.recycle && m.launchedAt !== null && now - m.launchedAt.getTime() >= SETUP_LIMIT_MS
}

export interface PoolView {
  /** Running, booted (host key published), reachable with a usable user, not being replaced. */
  ready: Member[]
  /** Launched or started but not ready yet. */
  starting: Member[]
  /** Running without a host key past SETUP_LIMIT_MS (with `now` given): never coming, so not counted as starting. */
  stuck: Member[]
  stopped: Member[]
  /** Being replaced or stopping. */
  leaving: Member[]
}

/** The members by what they can do; with `now`, those whose setup never finished are told apart from the starting. */
export function viewOf(members: Member[], now?: number): PoolView {
  const v: PoolView = { ready: [], starting: [], stuck: [], stopped: [], leaving: [] }
  for (const m of members) {
    if (m.recycle || m.state === 'stopping' || m.state === 'shutting-down' || m.state === 'terminated') v.leaving.push(m)
    else if (m.state === 'stopped') v.stopped.push(m)
    else if (m.state === 'running' && m.address && m.hostKey && m.user) v.ready.push(m)
    else if (now !== undefined && setupStuck(m, now)) v.stuck.push(m)
    else v.starting.push(m)
  }
  return v
}

/** Fisher–Yates with an injectable source: concurrent jobs try members in different orders. */
export function shuffled<T>(xs: readonly T[], random: () => number = Math.random): T[] {
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

export interface Capacity {
  desired: number
  max: number
}

/** The pool's state in one clause, for progress lines and the final error. */
export function describePool(name: string, v: PoolView, busy: number, cap: Capacity | null, scaleOut: boolean): string {
  const parts = [`${busy} of ${v.ready.length} busy`, `${v.starting.length} starting`]
  if (v.stuck.length) parts.push(`${v.stuck.length} running without a host key for an hour (setup never finished)`)
  if (v.stopped.length) parts.push(`${v.stopped.length} stopped`)
  if (v.leaving.length) parts.push(`${v.leaving.length} being replaced`)
  if (cap) parts.push(`desired ${cap.desired} of max ${cap.max}`)
  if (!scaleOut) parts.push('scale-out off')
  return `pool ${name}: ${parts.join(', ')}`
}

/** How many more members to ask for: enough for who waits, within MaxSize. */
export function scaleOutTo(cap: Capacity, v: PoolView, waiting: number): number | null {
  const coming = v.starting.length
  if (waiting <= coming || cap.desired >= cap.max) return null
  return Math.min(cap.max, cap.desired + Math.min(waiting - coming, cap.max - cap.desired))
}

/** DescribeAutoScalingInstances takes at most 50 ids a call. */
export const STANDBY_BATCH = 50

/** A member as its group sees it. */
export interface GroupRow {
  /** Its lifecycle state ('unknown' when the answer names none). */
  state: string
  /** Set by SetInstanceProtection: the group's scale-in does not end it. */
  protected: boolean
}

/**
 * Each of these instances that is in `group`, as the group sees it. `describe` sends one call of
 * at most STANDBY_BATCH ids.
 */
export async function lifecyclesIn(
  group: string,
  ids: readonly string[],
  describe: (batch: string[]) => Promise<Asg.DescribeAutoScalingInstancesCommandOutput>
): Promise<Map<string, GroupRow>> {
  const out = new Map<string, GroupRow>()
  for (let i = 0; i < ids.length; i += STANDBY_BATCH) {
    const batch = ids.slice(i, i + STANDBY_BATCH)
    const asked = new Set(batch)
    for (const a of (await describe(batch)).AutoScalingInstances ?? [])
      if (a.AutoScalingGroupName === group && a.InstanceId && asked.has(a.InstanceId))
        out.set(a.InstanceId, { state: a.LifecycleState ?? 'unknown', protected: a.ProtectedFromScaleIn === true })
  }
  return out
}
