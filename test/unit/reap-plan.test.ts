import type { LedgerRecord } from '../../src/fleet/ledger'
import {
  expiryOf,
  heldPastAnyJob,
  instanceVerdict,
  jobLife,
  lastSign,
  watchedFor,
  markStep,
  replacementFor,
  reservationStep,
  transitionTime,
  unclaimedMemberFor,
  type InstanceFact,
  type ReapTimes
} from '../../src/ops/reap-plan'
import { reapTable } from '../../src/ops/reap'
import { factOf } from '../../src/ops/reap-aws'
import { alignToAws, passNow } from '../../src/ops/reap-context'
import { reapContext } from './_reap-context'
import { leaseMark, parseLeaseMark } from '../../src/providers/static-host'
import { hostField, thisRunnerHost } from '../../src/runner-host'

const NOW = Date.UTC(2026, 11, 1, 12)
const MIN = 60_000
const H = 60 * MIN
// This reap host has watched every sign of life for longer than deadAfter (the 'watched' tests below vary it).
const T: ReapTimes = { now: NOW, deadAfterMs: 15 * MIN, graceMs: 2 * MIN, watched: () => 20 * MIN }
const iso = (t: number): string => new Date(t).toISOString()

const rec = (over: Partial<LedgerRecord> = {}): LedgerRecord => ({
  id: 'r1',
  repository: 'acme/widgets',
  workflow: 'ci',
  runId: '1',
  job: 'build',
  runner: 'r',
  instanceType: 't3.medium',
  vcpus: 2,
  maxLifetimeMinutes: 60,
  day: '2026-12-01',
  reservedAt: NOW - 60 * MIN,
  priceMicroPerHour: 41_600,
  reservedMicro: 41_600,
  timings: {},
  ...over
})
const ledger = (...rs: LedgerRecord[]): Map<string, LedgerRecord> => new Map(rs.map((r) => [r.id, r]))
const RES = 'remote-container-hooks:reservation'
const EXPIRES = 'remote-container-hooks:expires-at'
const KEEP = 'remote-container-hooks:keep'

describe('jobLife', () => {
  test('the last heartbeat decides, else the reservation time', () => {
    expect(jobLife(rec({ heartbeatAt: NOW - 30_000 }), T)).toMatchObject({ dead: false, why: 'job alive: last heartbeat 30 s ago' })
    expect(jobLife(rec({ heartbeatAt: NOW - 16 * MIN }), T)).toMatchObject({
      dead: true,
      why: expect.stringMatching(/last heartbeat 16 min ago/)
    })
    expect(jobLife(rec({ reservedAt: NOW - 10 * MIN }), T).dead).toBe(false)
    expect(jobLife(rec({ reservedAt: NOW - 20 * MIN }), T)).toMatchObject({ dead: true, why: expect.stringMatching(/reserved 20 min ago/) })
  })

  test('a sign of life old by its timestamp is dead only once this reap host has watched it unchanged for deadAfter', () => {
    const quiet = jobLife(rec({ heartbeatAt: NOW - 16 * MIN }), { ...T, watched: () => 14 * MIN })
    expect(quiet).toMatchObject({
      dead: false,
      why: expect.stringMatching(/^job quiet: last heartbeat 16 min ago, unchanged for the 14 min/)
    })
    expect(jobLife(rec({ heartbeatAt: NOW - 16 * MIN }), { ...T, watched: () => 15 * MIN }).dead).toBe(true)
    // A young sign is alive whatever the watch says.
    expect(jobLife(rec({ heartbeatAt: NOW - MIN }), { ...T, watched: () => 60 * MIN }).dead).toBe(false)
  })

  test('a reap host 14 minutes ahead of the runner host that beats: a 12-minute pause between steps is not death', () => {
    // reap passes every 5 minutes, its clock 14 minutes ahead; the job beats at the start, then pauses.
    const SKEW = 14 * MIN
    const beat = NOW
    let kept: string | undefined
    const verdicts: boolean[] = []
    for (let real = NOW + 2 * MIN; real <= NOW + 12 * MIN; real += 5 * MIN) {
      const now = real + SKEW
      const t: ReapTimes = {
        ...T,
        now,
        watched: (r) => {
          const w = watchedFor(kept, lastSign(r), now)
          kept = w.keep
          return w.ms
        }
      }
      verdicts.push(jobLife(rec({ heartbeatAt: beat }), t).dead)
    }
    expect(verdicts).toEqual([false, false, false])
    // Control: judged by the timestamp alone (a watch as long as the age), the same passes end it.
    const byStamp = [2, 7, 12].map(
      (m) => jobLife(rec({ heartbeatAt: beat }), { ...T, now: NOW + m * MIN + SKEW, watched: () => Infinity }).dead
    )
    expect(byStamp).toEqual([true, true, true])
  })
})

describe('watchedFor', () => {
  test('the same sign keeps the time it was first seen; another sign, or a kept value that is not one, starts again', () => {
    const first = watchedFor(undefined, 1000, NOW)
    expect(first).toEqual({ ms: 0, keep: `1000@${NOW}` })
    expect(watchedFor(first.keep, 1000, NOW + 5 * MIN)).toEqual({ ms: 5 * MIN, keep: `1000@${NOW}` })
    expect(watchedFor(first.keep, 2000, NOW + 5 * MIN)).toEqual({ ms: 0, keep: `2000@${NOW + 5 * MIN}` })
    expect(watchedFor('garbage', 1000, NOW).ms).toBe(0)
    // First seen after now (this host's clock was set back since): starts again rather than counting back.
    expect(watchedFor(`1000@${NOW + H}`, 1000, NOW)).toEqual({ ms: 0, keep: `1000@${NOW}` })
  })
})

describe('instanceVerdict', () => {
  const future = iso(NOW + 60 * MIN)
  test('the keep tag protects even an expired instance of a dead job', () => {
    const tags = { [KEEP]: '', [EXPIRES]: iso(NOW - MIN), [RES]: 'r1' }
    expect(instanceVerdict(tags, ledger(rec({ settledAt: NOW - MIN })), T)).toMatchObject({ candidate: false, keep: true })
    delete (tags as Record<string, string>)[KEEP]
    expect(instanceVerdict(tags, ledger(rec({ settledAt: NOW - MIN })), T).candidate).toBe(true)
  })
  test('past expires-at: a candidate whatever its job', () => {
    expect(instanceVerdict({ [EXPIRES]: iso(NOW - 1) }, ledger(), T)).toMatchObject({
      candidate: true,
      why: expect.stringMatching(/past its expires-at/)
    })
    expect(instanceVerdict({ [EXPIRES]: iso(NOW - 1), [RES]: 'r1' }, ledger(rec({ heartbeatAt: NOW })), T).candidate).toBe(true)
  })
  test("expiry: EC2's launch time plus the lifetime the tags give, when the launching host's clock was behind AWS's; never earlier than the tag", () => {
    const LAUNCHED = 'remote-container-hooks:launched-at'
    // Stamped by a host 10 minutes behind: a 15-minute lifetime, its tag 10 minutes early.
    const behind = { [LAUNCHED]: iso(NOW - 20 * MIN), [EXPIRES]: iso(NOW - 5 * MIN) }
    expect(expiryOf(behind, NOW - 10 * MIN)).toEqual({ at: NOW + 5 * MIN, stampedEarly: true })
    expect(instanceVerdict(behind, ledger(), T, NOW - 10 * MIN)).toMatchObject({
      candidate: false,
      why: `no reservation tag: only its expiry applies (expires ${iso(NOW + 5 * MIN)})`
    })
    expect(instanceVerdict(behind, ledger(), T, NOW - 16 * MIN)).toMatchObject({
      candidate: true,
      why: `past its lifetime counted from EC2's launch time, ${iso(NOW - MIN)} (its expires-at tag says ${iso(NOW - 5 * MIN)}: stamped before the launch, or by a clock behind AWS's)`
    })
    // Stamped by a host ahead: the tag, later than launch time + lifetime, stands.
    const ahead = { [LAUNCHED]: iso(NOW), [EXPIRES]: iso(NOW + 15 * MIN) }
    expect(expiryOf(ahead, NOW - 10 * MIN)).toEqual({ at: NOW + 15 * MIN, stampedEarly: false })
    // Without launched-at, or without EC2's launch time: the tag alone.
    expect(expiryOf({ [EXPIRES]: iso(NOW - 5 * MIN) }, NOW)).toEqual({ at: NOW - 5 * MIN, stampedEarly: false })
    expect(expiryOf(behind, undefined)).toEqual({ at: NOW - 5 * MIN, stampedEarly: false })
    expect(instanceVerdict(behind, ledger(), T)).toMatchObject({ candidate: true, why: `past its expires-at ${iso(NOW - 5 * MIN)}` })
    expect(expiryOf({ [LAUNCHED]: iso(NOW) }, NOW).at).toBeNaN()
  })
  test('without a reservation tag, or with one of another ledger, only its expiry applies', () => {
    expect(instanceVerdict({ [EXPIRES]: future }, ledger(), T)).toMatchObject({
      candidate: false,
      why: expect.stringMatching(/no reservation tag/)
    })
    expect(instanceVerdict({ [EXPIRES]: future, [RES]: 'elsewhere' }, ledger(rec()), T)).toMatchObject({
      candidate: false,
      why: expect.stringMatching(/not in this ledger/)
    })
  })
  test('its reservation settled while it lives, or its job silent past deadAfterMinutes: a candidate; a fresh heartbeat: not', () => {
    const tags = { [EXPIRES]: future, [RES]: 'r1' }
    expect(instanceVerdict(tags, ledger(rec({ settledAt: NOW - MIN })), T)).toMatchObject({
      candidate: true,
      why: expect.stringMatching(/settled/)
    })
    expect(instanceVerdict(tags, ledger(rec({ heartbeatAt: NOW - 16 * MIN })), T).candidate).toBe(true)
    expect(instanceVerdict(tags, ledger(rec({ heartbeatAt: NOW - MIN })), T).candidate).toBe(false)
  })
})

describe('markStep', () => {
  test('mark, wait out the grace, remove; unmark what came back to life', () => {
    expect(markStep(true, undefined, T)).toBe('mark')
    expect(markStep(true, iso(NOW - MIN), T)).toBe('wait')
    expect(markStep(true, iso(NOW - 2 * MIN), T)).toBe('remove')
    expect(markStep(false, iso(NOW - 10 * MIN), T)).toBe('unmark')
    expect(markStep(false, undefined, T)).toBe('none')
  })
  test('a mark that is not a time starts the grace again; grace 0 removes on the next pass', () => {
    expect(markStep(true, 'soon', T)).toBe('mark')
    expect(markStep(true, iso(NOW), { ...T, graceMs: 0 })).toBe('remove')
  })
  // A static slot's mark lies on the host, where a job was root: Date.parse reads `0` as 2000 and
  // `9999` as the year 9999, so the grace ended at once or never.
  test('a mark in another form than reap writes, or far in the future, starts the grace again (control: a minute ahead waits)', () => {
    for (const forged of ['0', '9999', '2026', '+275760-09-13T00:00:00.000Z', 'Tue, 01 Dec 2026 11:00:00 GMT', `${iso(NOW - 10 * MIN)} `])
      expect([forged, markStep(true, forged, T)]).toEqual([forged, 'mark'])
    expect(markStep(true, iso(NOW + 365 * 24 * 60 * MIN), T)).toBe('mark')
    expect(markStep(true, iso(NOW + MIN), T)).toBe('wait')
    expect(markStep(true, iso(NOW - 10 * MIN).replace('.000Z', 'Z'), T)).toBe('remove')
  })
})

describe('reservationStep', () => {
  const inst = (over: Partial<InstanceFact>): InstanceFact => ({
    id: 'i-0abc',
    state: 'running',
    launchedAt: NOW - 50 * MIN,
    tags: {},
    ...over
  })
  test('an ended instance settles it with the time EC2 gives', () => {
    expect(reservationStep(rec({ attachedAt: NOW - 55 * MIN }), inst({ state: 'terminated', endedAt: NOW - 5 * MIN }), T)).toEqual({
      do: 'settle',
      startedAt: NOW - 55 * MIN,
      endedAt: NOW - 5 * MIN,
      why: expect.stringMatching(/ended at/)
    })
    // found by its tag only (the hook died before attach): billed from the launch time, until now when EC2 gives no time
    expect(reservationStep(rec(), inst({ state: 'terminated' }), T)).toMatchObject({
      do: 'settle',
      startedAt: NOW - 50 * MIN,
      endedAt: NOW
    })
  })
  test('an instance attached a moment ago that EC2 does not list yet (eventual consistency): left alone, not settled', () => {
    expect(reservationStep(rec({ instanceId: 'i-0abc', attachedAt: NOW - 20_000 }), null, T)).toEqual({
      do: 'none',
      why: 'its instance i-0abc is not listed by EC2 yet (attached 20 s ago)'
    })
  })
  test("attached by a host behind AWS's clock (9 min ago by this pass's): left alone until this host has itself seen it unlisted for 5 minutes", () => {
    const r = rec({ instanceId: 'i-0abc', attachedAt: NOW - 9 * MIN })
    const watch = (ms: number): ReapTimes => ({ ...T, unlisted: () => ms })
    expect(reservationStep(r, null, watch(0))).toEqual({
      do: 'none',
      why: 'its instance i-0abc is not listed by EC2 yet (attached 540 s ago; unlisted for the 0 s this host has looked)'
    })
    expect(reservationStep(r, null, watch(4 * MIN)).do).toBe('none')
    // Control: unlisted for 5 minutes of this host's own looking, it is gone.
    expect(reservationStep(r, null, watch(5 * MIN))).toMatchObject({ do: 'settle', endedAt: NOW })
  })
  test('an attached instance EC2 no longer knows: settled now', () => {
    expect(reservationStep(rec({ instanceId: 'i-0abc', attachedAt: NOW - 9 * MIN }), null, T)).toMatchObject({
      do: 'settle',
      startedAt: NOW - 9 * MIN,
      endedAt: NOW
    })
  })
  test('a pool member stopped into Standby since its reservation began: settled at the stop (a stopped member bills no instance time)', () => {
    const r = rec({ pool: 'p', instanceId: 'i-0abc', reservedAt: NOW - 10 * H, attachedAt: NOW - 10 * H + 30_000 })
    const stop = Math.floor((NOW - 2 * H) / 1000) * 1000
    // Stopped in service (a shutdown from inside), the group replaces it: the replacement takes the reservation over.
    expect(reservationStep(r, inst({ state: 'stopped', stoppedAt: stop }), T)).toMatchObject({ do: 'none' })
    expect(reservationStep(r, inst({ state: 'stopped', stoppedAt: stop, standby: true }), T)).toEqual({
      do: 'settle',
      startedAt: NOW - 10 * H + 30_000,
      endedAt: stop,
      why: `its pool member i-0abc stopped at ${iso(stop)}`
    })
    // a stop from before the reservation: the member was tagged with a new one just before its start
    expect(
      reservationStep(rec({ pool: 'p', reservedAt: NOW - 10_000 }), inst({ state: 'stopped', stoppedAt: NOW - H, standby: true }), T)
    ).toMatchObject({ do: 'none' })
    // EC2 gives no time, or not a pool's (a per-job instance is ended by its job or reap, never started again): left alone
    expect(reservationStep(r, inst({ state: 'stopped', standby: true }), T)).toMatchObject({ do: 'none' })
    expect(reservationStep({ ...r, pool: undefined }, inst({ state: 'stopped', stoppedAt: stop, standby: true }), T)).toMatchObject({
      do: 'none'
    })
  })
  // The instance ends itself maxLifetimeMinutes after its boot: a reap that was down a day, then
  // found it gone or ended without a time, billed the whole day (the budget day refused launches).
  test("an EC2 job's instance that ended unseen is billed no further than its own end; a pool member up to now (control)", () => {
    const r = rec({ instanceId: 'i-0abc', attachedAt: NOW - 24 * H, maxLifetimeMinutes: 360 })
    const own = NOW - 24 * H + 360 * MIN + 15 * MIN
    expect(reservationStep(r, null, T)).toMatchObject({ do: 'settle', endedAt: own })
    expect(reservationStep(r, inst({ state: 'terminated' }), T)).toMatchObject({ do: 'settle', endedAt: own })
    // EC2's own end time stands when it gives one.
    expect(reservationStep(r, inst({ state: 'terminated', endedAt: NOW - 23 * H }), T)).toMatchObject({ endedAt: NOW - 23 * H })
    expect(reservationStep({ ...r, pool: 'p' }, null, T)).toMatchObject({ do: 'settle', endedAt: NOW })
    // Its job beat later than that (its root stopped the timer): billed to the last heartbeat.
    expect(reservationStep({ ...r, heartbeatAt: NOW - 2 * H }, null, T)).toMatchObject({ do: 'settle', endedAt: NOW - 2 * H })
  })
  // The hook settles a restarted member's old reservation, but only warns when it cannot: left
  // open, it counted against the caps (and billed) for the member's whole life.
  test('a pool member started again under another reservation ends this one at that start; one still carrying it is left alone (control)', () => {
    const r = rec({ pool: 'p', instanceId: 'i-0abc', reservedAt: NOW - 10 * H, attachedAt: NOW - 10 * H + 30_000 })
    const restarted = inst({ state: 'running', launchedAt: NOW - H, tags: { [RES]: 'res-new' } })
    expect(reservationStep(r, restarted, T)).toEqual({
      do: 'settle',
      startedAt: NOW - 10 * H + 30_000,
      endedAt: NOW - H,
      why: `its pool member i-0abc runs for reservation res-new since its start at ${iso(NOW - H)}`
    })
    expect(reservationStep(r, inst({ state: 'running', launchedAt: NOW - 10 * H, tags: { [RES]: 'r1' } }), T)).toMatchObject({ do: 'none' })
    // Not a pool's, or the other tag from before this run: nothing here.
    expect(reservationStep({ ...r, pool: undefined }, restarted, T)).toMatchObject({ do: 'none' })
    expect(reservationStep(r, { ...restarted, launchedAt: NOW - 11 * H }, T)).toMatchObject({ do: 'none' })
  })
  // The hook's attach is only a warning when the ledger fails it: the instance carries the tag.
  test("an EC2 job's running instance found by its tag, never attached, is attached from its launch; a pool member's is not (control)", () => {
    expect(reservationStep(rec(), inst({ state: 'running', launchedAt: NOW - 50 * MIN }), T)).toEqual({
      do: 'attach',
      instanceId: 'i-0abc',
      at: NOW - 50 * MIN,
      why: 'its instance i-0abc carries it but was never attached'
    })
    expect(reservationStep(rec({ pool: 'p' }), inst({ state: 'running' }), T)).toMatchObject({ do: 'none' })
    expect(reservationStep(rec({ instanceId: 'i-0abc', attachedAt: NOW - 50 * MIN }), inst({ state: 'running' }), T)).toMatchObject({
      do: 'none'
    })
  })
  test('a live instance: nothing here', () => {
    expect(reservationStep(rec({ instanceId: 'i-0abc', attachedAt: NOW - 50 * MIN }), inst({}), T)).toMatchObject({ do: 'none' })
  })
  test('no instance: settled at zero cost only past deadAfterMinutes', () => {
    expect(reservationStep(rec({ reservedAt: NOW - 16 * MIN }), undefined, T)).toMatchObject({ do: 'settle-unlaunched' })
    expect(reservationStep(rec({ reservedAt: NOW - 5 * MIN }), undefined, T)).toMatchObject({ do: 'none' })
  })
  test('a pool reservation whose claim failed is attached to the untagged member launched for it', () => {
    const r = rec({ pool: 'p', reservedAt: NOW - 10 * MIN })
    const members = [
      inst({ id: 'i-old', launchedAt: NOW - 30 * MIN }),
      inst({ id: 'i-tagged', launchedAt: NOW - 9 * MIN, tags: { [RES]: 'other' } }),
      inst({ id: 'i-new', launchedAt: NOW - 10.5 * MIN })
    ]
    const m = unclaimedMemberFor(r, members, new Set())
    expect(m?.id).toBe('i-new')
    expect(unclaimedMemberFor(r, members, new Set(['i-new']))).toBeUndefined()
    expect(reservationStep(r, undefined, T, m)).toMatchObject({ do: 'attach', instanceId: 'i-new' })
  })
  test("a runner host whose clock is 3 minutes ahead of AWS's: the member launched for its reservation is still found", () => {
    // Reserved at 12:03 by the runner host's clock; EC2 launched the member at 12:00:30 by its own.
    const r = rec({ pool: 'p', reservedAt: NOW + 3 * MIN })
    const member = inst({ id: 'i-new', launchedAt: NOW + 30_000 })
    expect(unclaimedMemberFor(r, [member], new Set())?.id).toBe('i-new')
    // Control: a member launched long before the reservation is not its.
    expect(unclaimedMemberFor(r, [inst({ id: 'i-old', launchedAt: NOW - H })], new Set())).toBeUndefined()
  })
  test("a pool member that ended: its group's replacement takes the reservation over; without one it waits, then settles in two phases", () => {
    const r = rec({ pool: 'p', instanceId: 'i-lost', attachedAt: NOW - 50 * MIN })
    const lost = inst({ id: 'i-lost', state: 'terminated', endedAt: NOW - 6 * MIN })
    const members = [
      inst({ id: 'i-base', launchedAt: NOW - 300 * MIN }),
      inst({ id: 'i-claimed', launchedAt: NOW - 5 * MIN, tags: { [RES]: 'other' } }),
      inst({ id: 'i-stopped', state: 'stopped', launchedAt: NOW - 5 * MIN }),
      inst({ id: 'i-claiming', launchedAt: NOW - MIN }),
      inst({ id: 'i-new', state: 'pending', launchedAt: NOW - 4 * MIN })
    ]
    // Untagged, live, launched since the attach and not in the last two minutes.
    const m = replacementFor(r, members, new Set(), T)
    expect(m?.id).toBe('i-new')
    expect(replacementFor(r, members, new Set(['i-new']), T)).toBeUndefined()
    expect(reservationStep(r, lost, T, undefined, m)).toEqual({
      do: 'move',
      instanceId: 'i-new',
      startedAt: NOW - 50 * MIN,
      why: `its member i-lost ended at ${iso(NOW - 6 * MIN)}; the group launched i-new in its place, which takes the reservation over`
    })
    // EC2 forgot the ended member: the same.
    expect(reservationStep(r, null, T, undefined, m)).toMatchObject({ do: 'move', instanceId: 'i-new', startedAt: NOW - 50 * MIN })
    // No replacement yet: the group is given five minutes from the end, then two phases settle it.
    expect(reservationStep(r, { ...lost, endedAt: NOW - 4 * MIN }, T, undefined, null)).toMatchObject({ do: 'none' })
    expect(reservationStep(r, lost, T, undefined, null)).toEqual({
      do: 'settle-unreplaced',
      startedAt: NOW - 50 * MIN,
      endedAt: NOW - 6 * MIN,
      why: `its member i-lost ended at ${iso(NOW - 6 * MIN)}, and the group launched none in its place`
    })
    // Not this configuration's pool (or no pool): settled at once, as any ended instance.
    expect(reservationStep(r, lost, T)).toMatchObject({ do: 'settle', endedAt: NOW - 6 * MIN })
  })
})

test("EC2's state transition reason gives the time an instance ended, or stopped", () => {
  expect(transitionTime('User initiated (2026-12-01 10:00:07 GMT)')).toBe(Date.UTC(2026, 11, 1, 10, 0, 7))
  expect(transitionTime('')).toBeUndefined()
  expect(transitionTime(undefined)).toBeUndefined()
  const reason = 'User initiated (2026-12-01 10:00:07 GMT)'
  const fact = (state: string) => factOf({ InstanceId: 'i-0abc', State: { Name: state as 'stopped' }, StateTransitionReason: reason })
  expect(fact('stopped')).toMatchObject({ stoppedAt: Date.UTC(2026, 11, 1, 10, 0, 7) })
  expect(fact('stopped').endedAt).toBeUndefined()
  expect(fact('terminated')).toMatchObject({ endedAt: Date.UTC(2026, 11, 1, 10, 0, 7) })
  expect(fact('terminated')).not.toHaveProperty('stoppedAt')
})

test('a static slot lease names the runner host (hostname and key) and its worker process, and reads back', () => {
  const me = thisRunnerHost()
  expect(me.key).toMatch(/^[0-9a-f]{16}$/)
  const line = leaseMark('0123456789abcdef', 'fedcba9876543210', 'my runner', { pid: 4242, start: '12345' }, me)
  expect(line).toMatch(/^0123456789abcdef fedcba9876543210 my_runner \S+\/[0-9a-f]{16} \S+Z 4242 12345$/)
  expect(parseLeaseMark(line)).toEqual({
    owner: '0123456789abcdef',
    jobId: 'fedcba9876543210',
    runnerHost: me.name,
    runnerHostKey: me.key,
    worker: { pid: 4242, start: '12345' }
  })
  expect(parseLeaseMark(leaseMark('0123456789abcdef', 'fedcba9876543210', 'r', null, me))?.worker).toBeNull()
  // A line of an older build: the hostname alone, no key.
  expect(parseLeaseMark('0123456789abcdef fedcba9876543210 r host-1 2026-12-01T00:00:00Z 4242 12345')).toMatchObject({
    runnerHost: 'host-1',
    runnerHostKey: null
  })
  // A lease of an older hook (no worker fields) is never judged dead.
  expect(parseLeaseMark('0123456789abcdef fedcba9876543210 r host 2026-12-01T00:00:00Z')?.worker).toBeNull()
  expect(parseLeaseMark('garbage')).toBeNull()
  // A pid only as the hook writes it: decimal, no sign or exponent (control: 4242 above is one).
  for (const pid of ['1e3', '0x10', '+5', '04242', '4242.0', '99999999999'])
    expect([pid, parseLeaseMark(`0123456789abcdef fedcba9876543210 r host 2026-12-01T00:00:00Z ${pid} 12345`)?.worker]).toEqual([pid, null])
  // The hostname as a field: white space and the key's separator replaced.
  expect(hostField('a b/c\td')).toBe('a_b_c_d')
  expect(hostField('')).toBe('-')
})

test('the table says "would" in a dry run, and sums up', () => {
  const rows = [
    { kind: 'instance' as const, what: 'i-1', action: 'marked' as const, why: 'past its expires-at' },
    { kind: 'instance' as const, what: 'i-2', action: 'left alone' as const, why: 'job alive' }
  ]
  expect(reapTable(rows, true)).toMatch(
    /i-1 +would mark +past its expires-at\n[\s\S]*dry run, nothing changed: 1 would mark; 1 left alone\n$/
  )
  expect(reapTable(rows, false)).toMatch(/i-1 +marked[\s\S]*\n1 marked; 1 left alone\n$/)
  expect(reapTable([], false)).toBe('nothing found\n')
})

test('a pool member older than maxVmAge plus the longest job is held by no job, whatever its lease record says', () => {
  const age = 720 * MIN
  const job = 120 * MIN
  // Positive control: a member within the bound keeps the word of its lease record.
  expect(heldPastAnyJob(NOW - (age + job - MIN), NOW, age, job)).toBeNull()
  expect(heldPastAnyJob(undefined, NOW, age, job)).toBeNull()
  expect(heldPastAnyJob(NOW - (age + job), NOW, age, job)).toBe(
    'launched 840 min ago, past reuse.maxVmAgeMinutes 720 + fleet.reap.maxJobMinutes 120: no job can hold it, its lease record is not believed'
  )
})

describe("the pass's clock (alignToAws)", () => {
  const ctxAt = (now: number) => ({ ...reapContext(now), clock: { now: () => now } })
  test("within 2 s of AWS's, this host's clock is taken as it is; past that, the pass goes by AWS's, from the first answer only", () => {
    const near = ctxAt(NOW)
    alignToAws(near, 1_900)
    expect([near.times.now, passNow(near), near.awsOffsetMs]).toEqual([NOW, NOW, 1_900])
    const off = ctxAt(NOW)
    alignToAws(off, -600_000.4)
    alignToAws(off, 5_000)
    expect([off.times.now, passNow(off), off.awsOffsetMs]).toEqual([NOW - 600_000, NOW - 600_000, -600_000.4])
    expect(off.times.deadAfterMs).toBe(15 * MIN)
  })
})
