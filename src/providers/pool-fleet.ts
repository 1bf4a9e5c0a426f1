// The fleet ledger's side of a pool: what one more member costs (the group's instance type and
// its vCPUs), and which new member a scale-out reservation belongs to. A pool reservation is
// capacity: one per instance a hook asks the group to add or starts, settled when that member ends
// with the desired capacity lowered. One the group replaces on its own (a Spot interruption, a
// health replacement, an instance refresh) hands it to the member launched in its place (reap).
import type * as Asg from '@aws-sdk/client-auto-scaling'
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2PoolConfig } from '../config'
import { HookError } from '../errors'
import type { LaunchSpec } from '../fleet/gate'
import type { Member } from './pool-plan'

/**
 * A scale-out member may have been launched this long before its reservation: the reservation's
 * time is the runner host's clock, the launch time EC2's, and a runner host whose clock is off
 * AWS's by up to ~15 minutes still has its requests signed. Narrower, a host a couple of minutes
 * ahead never claimed its members, which then ran uncounted by the caps. The hook's claim also
 * skips every member the group had when asked; which untagged member carries a reservation does
 * not change the count.
 */
export const CLAIM_SLACK_MS = 15 * 60_000

/** The instance types the group may launch: its mixed-instances overrides, else its launch template's type. */
export function groupTypes(
  g: Asg.AutoScalingGroup
): { types: string[] } | { template: Asg.LaunchTemplateSpecification } | { none: string } {
  const mixed = g.MixedInstancesPolicy?.LaunchTemplate
  const overrides = (mixed?.Overrides ?? []).map((o) => o.InstanceType).filter((t): t is string => !!t)
  if (overrides.length) return { types: [...new Set(overrides)] }
  const template = mixed?.LaunchTemplateSpecification ?? g.LaunchTemplate
  if (template && (template.LaunchTemplateId || template.LaunchTemplateName)) return { template }
  return { none: g.LaunchConfigurationName ? 'it launches from a launch configuration' : 'it names no launch template' }
}

/**
 * What one more member is reserved as. The group picks the type of each launch, so a group of
 * several types is reserved as its largest (most vCPUs; by name on a tie): the vCPU cap then holds
 * whichever it launches, and the price is that of its largest type.
 */
export function launchSpecOf(cfg: Pick<Ec2PoolConfig, 'reuse' | 'autoScalingGroup'>, vcpus: Map<string, number>): LaunchSpec {
  const largest = [...vcpus].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]
  if (!largest) throw new HookError(`provider.autoScalingGroup: no instance type with a vCPU count found for pool ${cfg.autoScalingGroup}`)
  return { instanceType: largest[0], vcpus: largest[1], maxLifetimeMinutes: cfg.reuse.maxVmAgeMinutes, pool: cfg.autoScalingGroup }
}

/** The instance type a launch template version names (null: it chooses by attributes, or names none). */
export function templateType(res: Ec2.DescribeLaunchTemplateVersionsCommandOutput): string | null {
  return res.LaunchTemplateVersions?.[0]?.LaunchTemplateData?.InstanceType ?? null
}

/** A reservation made for a scale-out, waiting for the member it paid for. */
export interface PendingClaim {
  id: string
  reservedAt: number
  /** The members the group had running when it was asked for more: none of them is the new one. */
  before: ReadonlySet<string>
}

/**
 * Members a scale-out reservation may claim: ones the group did not have when asked, unclaimed,
 * not leaving, launched since the reservation (less a slack for clock skew); oldest first.
 */
export function claimable(members: Member[], p: PendingClaim, skip: ReadonlySet<string>): Member[] {
  return members
    .filter(
      (m) =>
        !m.reservation &&
        !m.recycle &&
        !skip.has(m.id) &&
        !p.before.has(m.id) &&
        (m.state === 'pending' || m.state === 'running') &&
        m.launchedAt !== null &&
        m.launchedAt.getTime() >= p.reservedAt - CLAIM_SLACK_MS
    )
    .sort((a, b) => (a.launchedAt as Date).getTime() - (b.launchedAt as Date).getTime() || a.id.localeCompare(b.id))
}
