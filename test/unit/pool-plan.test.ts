// What DescribeInstances says about a pool's members, which are ready, and the lines a waiting job prints.
import type * as Asg from '@aws-sdk/client-auto-scaling'
import type * as Ec2 from '@aws-sdk/client-ec2'
import {
  describePool,
  membersOf,
  scaleOutTo,
  shuffled,
  STANDBY_BATCH,
  lifecyclesIn,
  TAG_GROUP,
  TAG_HOST_KEY,
  TAG_JOBS,
  viewOf,
  setupStuck,
  wornOut,
  type Member
} from '../../src/providers/pool-plan'

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'
const cfg = {
  autoScalingGroup: 'ci-pool',
  user: 'ec2-user',
  sshPort: 22,
  connect: { address: 'tag:rch-endpoint' },
  reuse: { maxJobsPerVm: 3, maxVmAgeMinutes: 60, maxDiskPercent: 90 }
}

const inst = (id: string, state: string, tags: Record<string, string>, launched = new Date('2026-12-01T10:00:00Z')): Ec2.Instance => ({
  InstanceId: id,
  State: { Name: state as Ec2.InstanceStateName },
  LaunchTime: launched,
  PrivateIpAddress: '10.0.0.9',
  Tags: Object.entries({ [TAG_GROUP]: 'ci-pool', ...tags }).map(([Key, Value]) => ({ Key, Value }))
})
const described = (...i: Ec2.Instance[]): Ec2.DescribeInstancesCommandOutput => ({ Reservations: [{ Instances: i }], $metadata: {} })

describe('membersOf', () => {
  it('reads address, host key, job count and recycle mark; only this group, only instance ids', () => {
    const ms = membersOf(
      described(
        inst('i-0000000000000000b', 'running', { 'rch-endpoint': '127.0.0.1:2300', [TAG_HOST_KEY]: KEY, [TAG_JOBS]: '2' }),
        inst('i-0000000000000000a', 'pending', {}),
        inst('i-0000000000000000c', 'running', { [TAG_GROUP]: 'other-pool', [TAG_HOST_KEY]: KEY }),
        inst('not-an-id', 'running', { [TAG_HOST_KEY]: KEY })
      ),
      cfg
    )
    expect(ms.map((m) => m.id)).toEqual(['i-0000000000000000a', 'i-0000000000000000b'])
    expect(ms[1]).toEqual({
      id: 'i-0000000000000000b',
      user: 'ec2-user',
      state: 'running',
      address: { host: '127.0.0.1', port: 2300 },
      hostKey: KEY,
      jobs: 2,
      launchedAt: new Date('2026-12-01T10:00:00Z'),
      recycle: null,
      reservation: null
    })
  })

  it('refuses host keys that are not one plain key (a member is only ready with a usable one)', () => {
    for (const bad of [
      `${KEY}\nssh-rsa AAAA`,
      `ssh-rsa ${KEY.split(' ')[1]}`,
      'ssh-ed25519 short',
      `${KEY} comment`,
      `@cert-authority * ${KEY}`
    ]) {
      const [m] = membersOf(described(inst('i-0000000000000000b', 'running', { 'rch-endpoint': '127.0.0.1', [TAG_HOST_KEY]: bad })), cfg)
      expect(m.hostKey).toBeNull()
      expect(viewOf([m]).ready).toHaveLength(0)
    }
  })

  it("user tag:<Name> takes each member's own user; a member without a usable one is not ready", () => {
    const ms = membersOf(
      described(
        inst('i-0000000000000000a', 'running', { 'rch-endpoint': '127.0.0.1', [TAG_HOST_KEY]: KEY, 'rch-user': 'ubuntu' }),
        inst('i-0000000000000000b', 'running', { 'rch-endpoint': '127.0.0.1', [TAG_HOST_KEY]: KEY, 'rch-user': 'root' }),
        inst('i-0000000000000000c', 'running', { 'rch-endpoint': '127.0.0.1', [TAG_HOST_KEY]: KEY, 'rch-user': 'a b' }),
        inst('i-0000000000000000d', 'running', { 'rch-endpoint': '127.0.0.1', [TAG_HOST_KEY]: KEY })
      ),
      { ...cfg, user: 'tag:rch-user' }
    )
    expect(ms.map((m) => m.user)).toEqual(['ubuntu', null, null, null])
    expect(viewOf(ms).ready.map((m) => m.id)).toEqual(['i-0000000000000000a'])
  })

  it('a stopped member carries the time EC2 says it stopped (its fleet reservation ends then); a running one none', () => {
    const stopped = { ...inst('i-0000000000000000a', 'stopped', {}), StateTransitionReason: 'User initiated (2026-12-01 18:30:05 GMT)' }
    const running = { ...inst('i-0000000000000000b', 'running', {}), StateTransitionReason: 'User initiated (2026-12-01 18:30:05 GMT)' }
    const unsaid = inst('i-0000000000000000c', 'stopped', {})
    const [a, b, c] = membersOf(described(stopped, running, unsaid), cfg)
    expect(a.stoppedAt).toBe(Date.UTC(2026, 11, 1, 18, 30, 5))
    expect(b).not.toHaveProperty('stoppedAt')
    expect(c).not.toHaveProperty('stoppedAt')
  })

  it('a job count that is not a count reads as 0', () => {
    for (const jobs of ['-1', 'x', '1e99', '9007199254740993']) {
      const [m] = membersOf(described(inst('i-0000000000000000b', 'running', { [TAG_JOBS]: jobs })), cfg)
      expect(m.jobs).toBe(0)
    }
  })
})

const member = (over: Partial<Member>): Member => ({
  id: 'i-0000000000000000a',
  user: 'ec2-user',
  state: 'running',
  address: { host: '127.0.0.1', port: 22 },
  hostKey: KEY,
  jobs: 0,
  launchedAt: new Date(0),
  recycle: null,
  reservation: null,
  ...over
})

test('viewOf sorts members into ready, starting, stopped and leaving', () => {
  const v = viewOf([
    member({ id: 'i-1' }),
    member({ id: 'i-2', hostKey: null }),
    member({ id: 'i-3', state: 'pending' }),
    member({ id: 'i-4', state: 'stopped' }),
    member({ id: 'i-5', recycle: 'old' }),
    member({ id: 'i-6', state: 'stopping' }),
    member({ id: 'i-7', address: null }),
    member({ id: 'i-8', user: null })
  ])
  expect({
    ready: v.ready.map((m) => m.id),
    starting: v.starting.map((m) => m.id),
    stopped: v.stopped.map((m) => m.id),
    leaving: v.leaving.map((m) => m.id)
  }).toEqual({ ready: ['i-1'], starting: ['i-2', 'i-3', 'i-7', 'i-8'], stopped: ['i-4'], leaving: ['i-5', 'i-6'] })
})

test('a member running an hour without its host key never finished its setup: not counted as coming, so a waiting job scales out', () => {
  const now = Date.UTC(2026, 11, 7, 12)
  const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000)
  const hung = member({ id: 'i-2', hostKey: null, launchedAt: at(61) })
  const v = viewOf([member({ id: 'i-1' }), hung], now)
  expect([v.starting, v.stuck.map((m) => m.id)]).toEqual([[], ['i-2']])
  expect(scaleOutTo({ desired: 2, max: 10 }, v, 1)).toBe(3)
  expect(describePool('ci', v, 1, null, true)).toBe(
    'pool ci: 1 of 1 busy, 0 starting, 1 running without a host key for an hour (setup never finished)'
  )
  // Controls: 59 minutes in it is still coming; without a time nothing is told apart; a pending
  // one, one marked for replacement, and one with its key but no address (a configuration problem) are not it.
  const young = viewOf([member({ id: 'i-1' }), member({ id: 'i-2', hostKey: null, launchedAt: at(59) })], now)
  expect([young.starting.map((m) => m.id), scaleOutTo({ desired: 2, max: 10 }, young, 1)]).toEqual([['i-2'], null])
  expect(viewOf([hung]).starting.map((m) => m.id)).toEqual(['i-2'])
  expect(setupStuck(member({ state: 'pending', hostKey: null, launchedAt: at(90) }), now)).toBe(false)
  expect(setupStuck(member({ hostKey: null, recycle: 'x', launchedAt: at(90) }), now)).toBe(false)
  expect(setupStuck(member({ address: null, launchedAt: at(90) }), now)).toBe(false)
  // Without its key it is stuck, address or not: the key is what the setup publishes last.
  expect(setupStuck(member({ address: null, hostKey: null, launchedAt: at(90) }), now)).toBe(true)
})

test('wornOut: by jobs served, then by age', () => {
  const now = 30 * 60_000
  expect(wornOut(member({ jobs: 2 }), cfg, now)).toBeNull()
  expect(wornOut(member({ jobs: 2 }), cfg, now, 3)).toBe('served 3 jobs (reuse.maxJobsPerVm 3)')
  expect(wornOut(member({}), cfg, 60 * 60_000)).toBe('older than reuse.maxVmAgeMinutes (60)')
  expect(wornOut(member({ launchedAt: null }), cfg, 10 ** 12)).toBeNull()
})

test('scaleOutTo asks for what waits beyond what is coming, within MaxSize', () => {
  const v = viewOf([member({ id: 'i-1' }), member({ id: 'i-2', state: 'pending' })])
  expect(scaleOutTo({ desired: 2, max: 10 }, v, 1)).toBeNull() // one coming for one waiting
  expect(scaleOutTo({ desired: 2, max: 10 }, v, 4)).toBe(5)
  expect(scaleOutTo({ desired: 2, max: 3 }, v, 9)).toBe(3)
  expect(scaleOutTo({ desired: 3, max: 3 }, v, 9)).toBeNull()
})

test('describePool states the pool in one clause', () => {
  const v = viewOf([
    member({ id: 'i-1' }),
    member({ id: 'i-2' }),
    member({ id: 'i-3', state: 'pending' }),
    member({ id: 'i-4', state: 'stopped' })
  ])
  expect(describePool('ci-pool', v, 2, { desired: 3, max: 3 }, false)).toBe(
    'pool ci-pool: 2 of 2 busy, 1 starting, 1 stopped, desired 3 of max 3, scale-out off'
  )
  expect(describePool('ci-pool', viewOf([]), 0, null, true)).toBe('pool ci-pool: 0 of 0 busy, 0 starting')
})

test('shuffled keeps every member once, in an order from its random source', () => {
  const xs = ['a', 'b', 'c', 'd']
  expect(shuffled(xs, () => 0)).toEqual(['b', 'c', 'd', 'a'])
  expect(shuffled(xs, () => 0.999).sort()).toEqual(xs)
  expect(xs).toEqual(['a', 'b', 'c', 'd'])
})

describe('lifecyclesIn', () => {
  const answer = (rows: [string, string, string][]): Asg.DescribeAutoScalingInstancesCommandOutput => ({
    $metadata: {},
    AutoScalingInstances: rows.map(([InstanceId, AutoScalingGroupName, LifecycleState]) => ({
      InstanceId,
      AutoScalingGroupName,
      LifecycleState,
      AvailabilityZone: 'us-east-1a',
      HealthStatus: 'HEALTHY',
      ProtectedFromScaleIn: false
    }))
  })

  it("asks in calls of at most 50 ids and keeps only this group's members, with their states", async () => {
    const ids = Array.from({ length: 2 * STANDBY_BATCH + 1 }, (_, i) => `i-${String(i).padStart(17, '0')}`)
    const calls: string[][] = []
    const rows = await lifecyclesIn('ci-pool', ids, async (batch) => {
      calls.push(batch)
      // AWS refuses a call of over 50 ids (ValidationError).
      if (batch.length > STANDBY_BATCH) throw new Error('ValidationError: too many ids')
      return answer(
        batch.map((id, i) => [id, i % 3 === 2 ? 'other-pool' : 'ci-pool', i % 2 ? 'InService' : 'Standby'] as [string, string, string])
      )
    })
    expect(calls.map((c) => c.length)).toEqual([50, 50, 1])
    expect(calls.flat()).toEqual(ids)
    const got = new Set([...rows].filter(([, r]) => r.state === 'Standby').map(([id]) => id))
    const want = calls.flatMap((batch) => batch.filter((_, i) => i % 2 === 0 && i % 3 !== 2))
    expect([...got].sort()).toEqual(want.sort())
    // Control: the filter kept some and dropped some.
    expect(got.size).toBeGreaterThan(0)
    expect(got.size).toBeLessThan(ids.length)
  })

  it('takes no id the call was not asked about', async () => {
    const got = await lifecyclesIn('ci-pool', ['i-0000000000000000a'], async () =>
      answer([
        ['i-0000000000000000a', 'ci-pool', 'Standby'],
        ['i-0000000000000000b', 'ci-pool', 'Standby']
      ])
    )
    expect([...got.keys()]).toEqual(['i-0000000000000000a'])
  })

  it('makes no call for no ids', async () => {
    const describe = jest.fn()
    expect((await lifecyclesIn('ci-pool', [], describe)).size).toBe(0)
    expect(describe).not.toHaveBeenCalled()
  })
  it("each asked member's state and protection in this group; another group's, or one not named, is absent", async () => {
    const rows = answer([
      ['i-0000000000000000a', 'ci-pool', 'Pending'],
      ['i-0000000000000000b', 'other-pool', 'InService']
    ])
    // A row without a state is kept as 'unknown'.
    rows.AutoScalingInstances!.push({
      InstanceId: 'i-0000000000000000c',
      AutoScalingGroupName: 'ci-pool'
    } as Asg.AutoScalingInstanceDetails)
    const got = await lifecyclesIn('ci-pool', ['i-0000000000000000a', 'i-0000000000000000b', 'i-0000000000000000c'], async () => rows)
    expect([...got]).toEqual([
      ['i-0000000000000000a', { state: 'Pending', protected: false }],
      ['i-0000000000000000c', { state: 'unknown', protected: false }]
    ])
    // Protection is read as the group reports it, and only a plain true counts.
    rows.AutoScalingInstances![0].ProtectedFromScaleIn = true
    rows.AutoScalingInstances![2].ProtectedFromScaleIn = 'true' as unknown as boolean
    const again = await lifecyclesIn('ci-pool', ['i-0000000000000000a', 'i-0000000000000000c'], async () => rows)
    expect([...again].map(([id, r]) => [id, r.protected])).toEqual([
      ['i-0000000000000000a', true],
      ['i-0000000000000000c', false]
    ])
  })
})
