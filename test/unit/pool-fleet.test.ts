import type * as Asg from '@aws-sdk/client-auto-scaling'
import { claimable, CLAIM_SLACK_MS, groupTypes, launchSpecOf, templateType } from '../../src/providers/pool-fleet'
import type { Member } from '../../src/providers/pool-plan'

const cfg = { autoScalingGroup: 'rch-pool', reuse: { maxJobsPerVm: 20, maxVmAgeMinutes: 720, maxDiskPercent: 90 } }

test("groupTypes: a mixed-instances group's overrides, else its launch template, else why not", () => {
  const lt = { LaunchTemplateId: 'lt-1', Version: '$Latest' }
  const g = (x: Partial<Asg.AutoScalingGroup>): Asg.AutoScalingGroup => x as Asg.AutoScalingGroup
  expect(
    groupTypes(
      g({
        MixedInstancesPolicy: {
          LaunchTemplate: { LaunchTemplateSpecification: lt, Overrides: [{ InstanceType: 'm5.large' }, { InstanceType: 't3.large' }, {}] }
        }
      })
    )
  ).toEqual({ types: ['m5.large', 't3.large'] })
  expect(groupTypes(g({ MixedInstancesPolicy: { LaunchTemplate: { LaunchTemplateSpecification: lt } } }))).toEqual({ template: lt })
  expect(groupTypes(g({ LaunchTemplate: { LaunchTemplateName: 'rch' } }))).toEqual({ template: { LaunchTemplateName: 'rch' } })
  expect(groupTypes(g({ LaunchConfigurationName: 'old' }))).toEqual({ none: 'it launches from a launch configuration' })
  expect(groupTypes(g({}))).toEqual({ none: 'it names no launch template' })
})

test('launchSpecOf: reserved as the largest type, for the longest a member may live', () => {
  const vcpus = new Map([
    ['t3.large', 2],
    ['m5.xlarge', 4],
    ['c5.xlarge', 4]
  ])
  expect(launchSpecOf(cfg, vcpus)).toEqual({ instanceType: 'c5.xlarge', vcpus: 4, maxLifetimeMinutes: 720, pool: 'rch-pool' })
  expect(() => launchSpecOf(cfg, new Map())).toThrow(/^provider\.autoScalingGroup: no instance type with a vCPU count/)
  expect(templateType({ LaunchTemplateVersions: [{ LaunchTemplateData: { InstanceType: 't3.micro' } }], $metadata: {} })).toBe('t3.micro')
  expect(templateType({ LaunchTemplateVersions: [{ LaunchTemplateData: {} }], $metadata: {} })).toBeNull()
})

test('claimable: members the group did not have, without a reservation, launched since the reservation (less the slack), oldest first', () => {
  const at = Date.UTC(2026, 11, 1, 12)
  const m = (id: string, launched: number, over: Partial<Member> = {}): Member => ({
    id,
    user: 'ec2-user',
    state: 'pending',
    address: null,
    hostKey: null,
    jobs: 0,
    launchedAt: new Date(launched),
    recycle: null,
    reservation: null,
    ...over
  })
  const members = [
    m('i-late', at + 5_000),
    m('i-early', at - CLAIM_SLACK_MS + 1_000, { state: 'running' }),
    m('i-old', at - CLAIM_SLACK_MS - 1),
    m('i-owned', at + 1_000, { reservation: 'r-other' }),
    m('i-leaving', at + 1_000, { recycle: 'worn' }),
    m('i-stopped', at + 1_000, { state: 'stopped' }),
    m('i-taken', at + 1_000),
    m('i-there-before', at + 1_000)
  ]
  const p = { id: 'r-1', reservedAt: at, before: new Set(['i-there-before']) }
  expect(claimable(members, p, new Set(['i-taken'])).map((x) => x.id)).toEqual(['i-early', 'i-late'])
  // A runner host 3 minutes ahead of AWS reserves "after" EC2 launched its member: still claimable.
  expect(claimable([m('i-skewed', at - 2.5 * 60_000)], p, new Set()).map((x) => x.id)).toEqual(['i-skewed'])
})
