// The claim of a new member for a scale-out reservation when another hook races for the same
// member: EC2 tags have no condition, so the hook reads its tag back and moves on when it lost.
import { Ec2PoolProvider } from '../../src/providers/ec2-pool'
import type { PendingClaim } from '../../src/providers/pool-fleet'
import type { Member } from '../../src/providers/pool-plan'
import type { ProviderEnv } from '../../src/providers/provider'
import { ConfigSchema, type Ec2PoolConfig } from '../../src/config'
import { recordingFleetGate } from '../helpers/fleet-gate'

const cfg = ConfigSchema.parse({
  provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'rch-pool', identityFile: '/k' },
  remote: { workRoot: '~/rch' }
}).provider as Ec2PoolConfig

const AT = Date.UTC(2026, 11, 1, 12)
const member = (id: string, launched: number): Member => ({
  id,
  user: 'ec2-user',
  state: 'running',
  address: null,
  hostKey: null,
  jobs: 0,
  launchedAt: new Date(launched),
  recycle: null,
  reservation: null
})

/** The provider with EC2 stood in for: tags kept in `tags`; `steal` names members another hook tags right after this one. */
function harness(steal: Set<string>) {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  const tags = new Map<string, string>()
  const writes: string[] = []
  const fake = p as unknown as {
    tag(id: string, t: Record<string, string>): Promise<void>
    members(env: unknown, ids?: string[]): Promise<Member[]>
    claim(env: ProviderEnv, ms: Member[]): Promise<void>
    pending: PendingClaim[]
  }
  fake.tag = async (id, t) => {
    const v = t['remote-container-hooks:reservation']
    writes.push(`${id}=${v}`)
    tags.set(id, steal.has(id) ? 'res-other-hook' : v)
  }
  fake.members = async (_env, ids) => (ids ?? []).map((id) => ({ ...member(id, AT), reservation: tags.get(id) ?? null }))
  const fleet = recordingFleetGate()
  const log = { progress: jest.fn(), warn: jest.fn(), debug: jest.fn() }
  const env = { fleet, log, signal: new AbortController().signal } as unknown as ProviderEnv
  return { fake, tags, writes, fleet, env, log }
}

test('a member whose tag another hook overwrote is left to it: the reservation claims the next new member', async () => {
  const h = harness(new Set(['i-a']))
  h.fake.pending.push({ id: 'res-1', reservedAt: AT, before: new Set() })
  await h.fake.claim(h.env, [member('i-a', AT + 1000), member('i-b', AT + 2000)])
  expect(h.writes).toEqual(['i-a=res-1', 'i-b=res-1'])
  expect(h.fleet.calls).toEqual([{ op: 'attach', id: 'res-1', instanceId: 'i-b' }])
  expect(h.tags.get('i-a')).toBe('res-other-hook')
  expect(h.fake.pending).toEqual([])
})

test('positive control: without a race the first new member is claimed, and two reservations claim two members', async () => {
  const h = harness(new Set())
  const before = new Set(['i-old'])
  h.fake.pending.push({ id: 'res-1', reservedAt: AT, before }, { id: 'res-2', reservedAt: AT, before })
  await h.fake.claim(h.env, [member('i-old', AT), member('i-a', AT + 1000), member('i-b', AT + 2000)])
  expect(h.fleet.calls).toEqual([
    { op: 'attach', id: 'res-1', instanceId: 'i-a' },
    { op: 'attach', id: 'res-2', instanceId: 'i-b' }
  ])
  expect(h.fake.pending).toEqual([])
})

test('every new member lost to other hooks: the reservation stays pending (left for a later pass, then reap)', async () => {
  const h = harness(new Set(['i-a', 'i-b']))
  h.fake.pending.push({ id: 'res-1', reservedAt: AT, before: new Set() })
  await h.fake.claim(h.env, [member('i-a', AT + 1000), member('i-b', AT + 2000)])
  expect(h.fleet.calls).toEqual([])
  expect(h.fake.pending.map((p) => p.id)).toEqual(['res-1'])
})

// A stopped member kept in Standby is started for a waiting job under a new reservation; its old one
// is settled first. Tagged only after StartInstances, a hook killed in between left the member
// running with the old, settled reservation's tag: reap matches an open reservation to a member by
// that tag (or to an untagged new member), so it found none for the new one, settled it as
// unlaunched, and the member ran outside the fleet's caps and budget.
/** The provider with a stopped member i-stopped (tagged res-old) in Standby; `send` stands in for EC2 and Auto Scaling. */
function standby(
  send: (what: string, tags: Map<string, string>, env: ProviderEnv) => Promise<unknown>,
  signal = new AbortController().signal,
  stoppedAt?: number
) {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  const tags = new Map<string, string>([['i-stopped', 'res-old']])
  const fake = p as unknown as {
    tag(id: string, t: Record<string, string>): Promise<void>
    inStandby(env: unknown, ids: string[]): Promise<string[]>
    reserve(env: unknown): Promise<{ id: string }>
    send<T>(env: unknown, what: string, fn: () => Promise<T>): Promise<T>
    grow(env: ProviderEnv, v: unknown, waiting: number, mayStart: (() => void) | null): Promise<unknown>
  }
  fake.tag = async (id, t) => void tags.set(id, t['remote-container-hooks:reservation'])
  fake.inStandby = async (_env, ids) => ids
  fake.reserve = async () => ({ id: 'res-new' })
  fake.send = (async (env: ProviderEnv, what: string) => send(what, tags, env)) as typeof fake.send
  const fleet = recordingFleetGate()
  const env = {
    fleet,
    log: { progress: jest.fn(), warn: jest.fn(), debug: jest.fn() },
    signal
  } as unknown as ProviderEnv
  const stopped = {
    ...member('i-stopped', AT),
    state: 'stopped',
    reservation: 'res-old',
    ...(stoppedAt === undefined ? {} : { stoppedAt })
  }
  const grow = () => fake.grow(env, { ready: [], starting: [], stopped: [stopped], leaving: [] }, 1, () => undefined)
  return { grow, fleet }
}

test('a stopped member is tagged with its new reservation before it is started, not after', async () => {
  const sent: string[] = []
  // What the member's tag said when each call went out (a kill right after it leaves it so).
  const h = standby(async (what, tags) => void sent.push(`${what} (tag ${tags.get('i-stopped')})`))
  await h.grow()
  expect(sent).toEqual(['StartInstances (tag res-new)', 'ExitStandby (tag res-new)'])
  expect(h.fleet.calls).toEqual([
    { op: 'settle', id: 'res-old', opts: {} },
    { op: 'attach', id: 'res-new', instanceId: 'i-stopped' }
  ])
})

test("a stopped member's old reservation is settled at the time EC2 says it stopped, not at its restart (no bill for the stop)", async () => {
  // Stopped 14 h before this start: settled now, its run would have billed those 14 h of a stopped member.
  const stop = Date.UTC(2026, 11, 1, 22)
  const h = standby(async () => undefined, undefined, stop)
  await h.grow()
  expect(h.fleet.calls).toEqual([
    { op: 'settle', id: 'res-old', opts: { endedAt: stop } },
    { op: 'attach', id: 'res-new', instanceId: 'i-stopped' }
  ])
})

test('a start that fails settles the new reservation as unlaunched (the stopped member keeps its tag, which names a settled one)', async () => {
  const h = standby(async () => {
    throw new Error('IncorrectInstanceState')
  })
  await expect(h.grow()).rejects.toThrow('IncorrectInstanceState')
  expect(h.fleet.calls).toEqual([
    { op: 'settle', id: 'res-old', opts: {} },
    { op: 'settle', id: 'res-new', opts: { launched: false } }
  ])
})

test('a member started for a job that is cancelled meanwhile still leaves Standby (running there, the group neither counts nor replaces it)', async () => {
  const cancel = new AbortController()
  const sent: string[] = []
  const h = standby(async (what, _tags, env) => {
    // As retry() does: a call whose signal has fired is not sent.
    if (env.signal.aborted) throw new Error(`${what}: not sent (cancelled)`)
    sent.push(what)
    // The runner's SIGINT lands while the start is under way.
    if (what === 'StartInstances') cancel.abort('SIGINT')
  }, cancel.signal)
  await h.grow()
  expect(sent).toEqual(['StartInstances', 'ExitStandby'])
  expect(h.fleet.calls).toContainEqual({ op: 'attach', id: 'res-new', instanceId: 'i-stopped' })
})

// A write whose answer was lost (a server error on every attempt, the deadline) may have been
// carried out: the group may be launching the members, a stopped member may be starting. Settled
// as unlaunched, their reservations freed the caps while they ran.
const awsError = (name: string, status: number): Error =>
  Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } })

/**
 * The provider scaling out for one waiting job from a group of 1 member; `send` stands in for Auto
 * Scaling (its `failed` told of each attempt); `after` is the desired capacity read back after it.
 */
function scaling(answer: (failed: (e: unknown) => void) => Promise<unknown>, after = 1, signal = new AbortController().signal) {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  let reads = 0
  const fake = p as unknown as {
    capacity(env: unknown): Promise<{ desired: number; max: number }>
    reserve(env: unknown): Promise<{ id: string }>
    send<T>(env: unknown, what: string, fn: () => Promise<T>, deadlineMs?: number, failed?: (e: unknown) => void): Promise<T>
    grow(env: ProviderEnv, v: unknown, waiting: number, mayStart: (() => void) | null): Promise<unknown>
    pending: PendingClaim[]
  }
  // Read twice before the write (the view, then again after reserving), then after it.
  fake.capacity = async () => ({ desired: ++reads > 2 ? after : 1, max: 10 })
  fake.reserve = async () => ({ id: 'res-up' })
  fake.send = (async (_env: unknown, _what: string, _fn: unknown, _d: unknown, failed: (e: unknown) => void) =>
    answer(failed ?? (() => undefined))) as typeof fake.send
  const fleet = recordingFleetGate()
  const log = { progress: jest.fn(), warn: jest.fn(), debug: jest.fn() }
  const env = { fleet, log, signal } as unknown as ProviderEnv
  const grow = () => fake.grow(env, { ready: [], starting: [], stopped: [], leaving: [] }, 1, null)
  return { grow, fleet, log, fake }
}

const unavailable = async (failed: (e: unknown) => void): Promise<never> => {
  const e = awsError('ServiceUnavailable', 503)
  failed(e)
  throw e
}

test('a scale-out whose answer was lost but was carried out keeps its reservations for the new members', async () => {
  const h = scaling(unavailable, 2)
  await expect(h.grow()).resolves.toMatchObject({ cap: { desired: 2 } })
  expect(h.fleet.calls).toEqual([])
  expect(h.fake.pending.map((p) => p.id)).toEqual(['res-up'])
  expect(h.log.warn).toHaveBeenCalledWith(
    expect.stringMatching(
      /^SetDesiredCapacity of pool rch-pool may have been carried out \(its answer was lost: .*\): its 1 fleet reservations wait for new members$/
    )
  )
})

test('one whose answer was lost and that was not carried out settles them, so rounds of it pile nothing up; one refused settles them (controls)', async () => {
  for (const answer of [
    unavailable,
    async (failed: (e: unknown) => void) => {
      const e = awsError('ValidationError', 400)
      failed(e)
      throw e
    }
  ]) {
    const h = scaling(answer, 1)
    await expect(h.grow()).rejects.toThrow(/happened/)
    await expect(h.grow()).rejects.toThrow(/happened/)
    expect(h.fleet.calls).toEqual([
      { op: 'settle', id: 'res-up', opts: { launched: false } },
      { op: 'settle', id: 'res-up', opts: { launched: false } }
    ])
    expect(h.fake.pending).toEqual([])
  }
})

test('one whose answer was lost when the job is cancelled leaves its reservations to reap (the group may be launching)', async () => {
  const cancel = new AbortController()
  const h = scaling(
    async (failed) => {
      cancel.abort('SIGINT')
      return unavailable(failed)
    },
    1,
    cancel.signal
  )
  await expect(h.grow()).rejects.toThrow('ServiceUnavailable happened')
  expect(h.fleet.calls).toEqual([])
  expect(h.log.warn).toHaveBeenCalledWith(expect.stringMatching(/its 1 fleet reservations are left to reap$/))
})

test("a start whose answer was lost leaves the member's new reservation to reap; a throttled last attempt does not hide the lost one", async () => {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  const fake = p as unknown as {
    tag(id: string, t: Record<string, string>): Promise<void>
    inStandby(env: unknown, ids: string[]): Promise<string[]>
    reserve(env: unknown): Promise<{ id: string }>
    send<T>(env: unknown, what: string, fn: () => Promise<T>, deadlineMs?: number, failed?: (e: unknown) => void): Promise<T>
    grow(env: ProviderEnv, v: unknown, waiting: number, mayStart: (() => void) | null): Promise<unknown>
  }
  fake.tag = async () => undefined
  fake.inStandby = async (_env, ids) => ids
  fake.reserve = async () => ({ id: 'res-new' })
  fake.send = async (_env: unknown, _what: string, _fn: unknown, _d: unknown, failed: (e: unknown) => void) => {
    failed(awsError('InternalError', 500))
    const e = awsError('RequestLimitExceeded', 503)
    failed(e)
    throw e
  }
  const fleet = recordingFleetGate()
  const log = { progress: jest.fn(), warn: jest.fn(), debug: jest.fn() }
  const env = { fleet, log, signal: new AbortController().signal } as unknown as ProviderEnv
  const stopped = { ...member('i-stopped', AT), state: 'stopped', reservation: 'res-old' }
  await expect(fake.grow(env, { ready: [], starting: [], stopped: [stopped], leaving: [] }, 1, () => undefined)).rejects.toThrow(
    'RequestLimitExceeded'
  )
  expect(fleet.calls).toEqual([{ op: 'settle', id: 'res-old', opts: {} }])
  expect(log.warn).toHaveBeenCalledWith(
    'StartInstances of i-stopped may have started it (its answer was lost): fleet reservation res-new is left to reap'
  )
})

test("the pool's send tells `failed` of each failed attempt, and retries a server error", async () => {
  const p = new Ec2PoolProvider(cfg, '~/rch') as unknown as {
    send<T>(env: unknown, what: string, fn: () => Promise<T>, deadlineMs?: number, failed?: (e: unknown) => void): Promise<T>
  }
  const seen: string[] = []
  let n = 0
  const env = { log: { debug: () => undefined }, signal: new AbortController().signal }
  const got = await p.send(
    env,
    'SetDesiredCapacity',
    async () => {
      if (++n === 1) throw awsError('ServiceUnavailable', 503)
      return 'done'
    },
    undefined,
    (e) => seen.push((e as Error).name)
  )
  expect(got).toBe('done')
  expect(seen).toEqual(['ServiceUnavailable'])
})
