// reap on one runner host, over pool members whose lease it cannot read. reap runs on every runner
// host; one that lost its way to the pool (a network cut, its copy of the key out of date during a
// rotation) judged every member "unreachable" and, a grace later, replaced them all, the members
// other hosts' live jobs were using included (with maxJobsPerVm 1 a held member also carries the
// recycle tag, which counted as "nobody holds it"). Now a member whose lease cannot be read is
// replaced only when its group says it is not protected from scale-in (no job holds it), and this
// host's own login failing (key refused or unreadable) is a failed row, not a mark. The SSH
// connection and the group's answers are stand-ins; the judging and marking are the real code.
import type * as Ec2 from '@aws-sdk/client-ec2'
import { ConfigSchema, type Config, type Ec2PoolConfig } from '../../src/config'
import { TransportError, type TransportKind } from '../../src/errors'
import type { GroupRow } from '../../src/providers/pool-plan'
import { reapContext } from './_reap-context'

/** How each member's connection fails, by its address; how the group answers for protection. */
const failBy = new Map<string, TransportKind>()
/** Addresses whose login succeeds (the lease read after it then fails: the member says nothing). */
const letIn = new Set<string>()
/** Addresses whose lease reads as these records (state, seconds left). */
const leaseAt = new Map<string, [string, string]>()
let rows: (ids: string[]) => Promise<Map<string, GroupRow>>
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async (info: { host: string; port: number }) => {
      const lease = leaseAt.get(info.host)
      if (lease)
        return {
          openExec: async (command: string) => {
            const { PassThrough } = jest.requireActual<typeof import('node:stream')>('node:stream')
            const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(command)?.[1]
            const out = new PassThrough()
            const err = new PassThrough()
            const stdin = new PassThrough()
            stdin.resume()
            out.end(`RCH-BEGIN-${nonce}\0${lease[0]}\0${lease[1]}\0RCH-END-${nonce}\0`)
            err.end()
            return { stdin, stdout: out, stderr: err, done: new Promise((r) => setImmediate(() => r({ code: 0, signal: null }))) }
          },
          openSocket: async () => {
            throw new Error('no sockets')
          },
          close: () => undefined
        }
      if (letIn.has(info.host))
        return {
          openExec: async () => {
            throw new TransportError('the channel was refused', 'lost')
          },
          openSocket: async () => {
            throw new Error('no sockets')
          },
          close: () => undefined
        }
      throw new TransportError(`cannot connect to ${info.host}`, failBy.get(info.host) ?? 'network')
    }
  }
}))
jest.mock('../../src/providers/ec2-pool', () => ({
  Ec2PoolProvider: class {
    lifecycles(_env: unknown, ids: string[]): Promise<Map<string, GroupRow>> {
      return rows(ids)
    }
  }
}))

import { reapPool } from '../../src/ops/reap-pool'
import type { ReapEc2 } from '../../src/ops/reap-aws'
import { alignToAws } from '../../src/ops/reap-context'

const NOW = Date.UTC(2026, 11, 7, 12)
const MIN = 60_000
const GROUP = 'rch-pool'
const CANDIDATE = 'remote-container-hooks:reap-candidate'
const config: Config = ConfigSchema.parse({
  provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: GROUP, identityFile: '/k/pool', endpoint: 'http://127.0.0.1:1' },
  remote: { workRoot: '~/rch' }
})
const cfg = config.provider as Ec2PoolConfig

function member(id: string, ip: string, tags: Record<string, string> = {}): Ec2.Instance {
  const all: Record<string, string> = {
    'aws:autoscaling:groupName': GROUP,
    'remote-container-hooks:host-key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKbm',
    ...tags
  }
  return {
    InstanceId: id,
    State: { Name: 'running' },
    PrivateIpAddress: ip,
    LaunchTime: new Date(NOW - 30 * MIN),
    Tags: Object.entries(all).map(([Key, Value]) => ({ Key, Value }))
  }
}

/** EC2 stood in for: tags kept; a removal through the group would be a terminate (recorded, never reached here). */
function fakeEc2(instances: Ec2.Instance[]) {
  const byId = new Map(instances.map((i) => [i.InstanceId as string, i]))
  const calls: string[] = []
  const api = {
    describe: async () => [...byId.values()].map((i) => structuredClone(i)),
    one: async (id: string) => structuredClone(byId.get(id) ?? null),
    tag: async (id: string, t: Record<string, string>) => {
      calls.push(`tag ${id} ${Object.keys(t).join(',')}`)
      const i = byId.get(id)!
      for (const [Key, Value] of Object.entries(t)) i.Tags = [...(i.Tags ?? []).filter((x) => x.Key !== Key), { Key, Value }]
    },
    untag: async (id: string, keys: string[]) => {
      calls.push(`untag ${id} ${keys.join(',')}`)
      const i = byId.get(id)!
      i.Tags = (i.Tags ?? []).filter((x) => !keys.includes(x.Key ?? ''))
    }
  }
  return { api: api as unknown as ReapEc2, calls }
}

const row = (protectedFromScaleIn: boolean): GroupRow => ({ state: 'InService', protected: protectedFromScaleIn })
const markedAgo = (ms: number): Record<string, string> => ({ [CANDIDATE]: new Date(NOW - ms).toISOString() })

/** One pass at `now` by this host's clock; `awsOffsetMs`: AWS's clock against it, as EC2's answers would tell ReapEc2. */
async function pass(instances: Ec2.Instance[], o: { now?: number; awsOffsetMs?: number } = {}) {
  const { api, calls } = fakeEc2(instances)
  const ctx = reapContext(o.now ?? NOW)
  const describe = api.describe.bind(api)
  api.describe = async (f) => {
    if (o.awsOffsetMs !== undefined) alignToAws(ctx, o.awsOffsetMs)
    return describe(f)
  }
  await reapPool(cfg, config, api, ctx)
  const rowOf = (id: string) => ctx.rows.find((r) => r.what === id)
  return { rowOf, calls }
}

beforeEach(() => {
  failBy.clear()
  letIn.clear()
  leaseAt.clear()
  rows = async (ids) => new Map(ids.map((id) => [id, row(false)]))
})

test('control: an unreachable member its group does not protect (no job holds it) is marked, and replaced after the grace', async () => {
  const first = await pass([member('i-00000000000000001', '127.0.0.2')])
  expect(first.rowOf('i-00000000000000001')).toMatchObject({ action: 'marked', why: expect.stringMatching(/^unreachable: /) })
  // After the grace: it is removed (the terminate through the group is the AWS call this stand-in lacks).
  const second = await pass([member('i-00000000000000001', '127.0.0.2', markedAgo(3 * MIN))])
  expect(second.rowOf('i-00000000000000001')).toMatchObject({ action: 'failed' })
  expect(second.calls).toContain('tag i-00000000000000001 remote-container-hooks:recycle')
})

test('an unreachable member protected from scale-in (a job may hold it) is left alone, recycle tag or not', async () => {
  rows = async (ids) => new Map(ids.map((id) => [id, row(true)]))
  const r = await pass([
    member('i-00000000000000001', '127.0.0.2'),
    member('i-00000000000000002', '127.0.0.3', { 'remote-container-hooks:recycle': 'served 1 jobs (reuse.maxJobsPerVm 1)' })
  ])
  for (const id of ['i-00000000000000001', 'i-00000000000000002'])
    expect(r.rowOf(id)).toMatchObject({
      action: 'left alone',
      why: expect.stringMatching(/^unreachable from this host \(.*\), but protected from scale-in: a job may hold it$/)
    })
  expect(r.calls).toEqual([])
})

test('an unreachable member whose protection its group did not tell is left alone', async () => {
  rows = async () => {
    throw new Error('Throttling')
  }
  const r = await pass([member('i-00000000000000001', '127.0.0.2')])
  expect(r.rowOf('i-00000000000000001')).toMatchObject({
    action: 'left alone',
    why: expect.stringMatching(/its group did not say whether a job holds it$/)
  })
  expect(r.calls).toEqual([])
})

test("this host's login refused or its key unreadable: a failed row, the member neither marked nor replaced", async () => {
  failBy.set('127.0.0.2', 'auth')
  failBy.set('127.0.0.3', 'keyfile')
  const r = await pass([
    member('i-00000000000000001', '127.0.0.2'),
    member('i-00000000000000002', '127.0.0.3', markedAgo(3 * MIN)),
    member('i-00000000000000003', '127.0.0.4', { 'remote-container-hooks:recycle': 'test' })
  ])
  expect(r.rowOf('i-00000000000000001')).toMatchObject({
    action: 'failed',
    why: expect.stringMatching(/^its lease cannot be read from this host: /)
  })
  expect(r.rowOf('i-00000000000000002')).toMatchObject({ action: 'failed' })
  // Control in the same pass: a member that is not reached for another reason, unprotected, is still marked.
  expect(r.rowOf('i-00000000000000003')).toMatchObject({ action: 'marked' })
  expect(r.calls).toEqual([`tag i-00000000000000003 ${CANDIDATE}`])
})

test("a login refused while another member of the pass let this host in is the member's doing (its keys gone): judged as unreachable", async () => {
  failBy.set('127.0.0.2', 'auth')
  letIn.add('127.0.0.3')
  // The refusing member sorts first: it is judged again once the other has let this host in.
  const r = await pass([member('i-00000000000000001', '127.0.0.2'), member('i-00000000000000002', '127.0.0.3')])
  expect(r.rowOf('i-00000000000000001')).toMatchObject({
    action: 'marked',
    why: expect.stringMatching(/^unreachable: cannot connect to 127\.0\.0\.2/)
  })
  expect(r.rowOf('i-00000000000000002')).toMatchObject({ action: 'marked', why: expect.stringMatching(/^unreachable: /) })
  expect(r.calls).toEqual([`tag i-00000000000000002 ${CANDIDATE}`, `tag i-00000000000000001 ${CANDIDATE}`])
})

test('a member protected between the two looks (a job leased it meanwhile) is unmarked, not replaced', async () => {
  let looks = 0
  rows = async (ids) => new Map(ids.map((id) => [id, row(looks++ > 0)]))
  const r = await pass([member('i-00000000000000001', '127.0.0.2', markedAgo(3 * MIN))])
  expect(r.rowOf('i-00000000000000001')).toMatchObject({
    action: 'unmarked',
    why: expect.stringMatching(/^came back to life: unreachable from this host/)
  })
  expect(r.calls).toEqual([`untag i-00000000000000001 ${CANDIDATE}`])
})

test("a member's age is EC2's, judged by AWS's clock: a reap host 10 minutes ahead does not replace a member a job may hold", async () => {
  rows = async (ids) => new Map(ids.map((id) => [id, row(true)]))
  // By AWS's clock (NOW) it is 5 minutes short of the age no job can hold it at.
  const limit = (cfg.reuse.maxVmAgeMinutes + config.fleet.reap.maxJobMinutes) * MIN
  const young = { ...member('i-00000000000000001', '127.0.0.2'), LaunchTime: new Date(NOW - limit + 5 * MIN) }
  const ahead = await pass([young], { now: NOW + 10 * MIN, awsOffsetMs: -10 * MIN })
  expect(ahead.rowOf('i-00000000000000001')).toMatchObject({
    action: 'left alone',
    why: expect.stringMatching(/protected from scale-in: a job may hold it$/)
  })
  expect(ahead.calls).toEqual([])
  // Control: a host in step with AWS, 10 minutes later, finds it past any job.
  const later = await pass([young], { now: NOW + 10 * MIN, awsOffsetMs: 0 })
  expect(later.rowOf('i-00000000000000001')).toMatchObject({ action: 'marked', why: expect.stringMatching(/no job can hold it/) })
})

test('a member running an hour without its host key (its setup hung) is marked and replaced, unless its group protects it', async () => {
  const keyless = (id: string, minutes: number, tags: Record<string, string> = {}) => {
    const i = member(id, '127.0.0.2', tags)
    return {
      ...i,
      Tags: (i.Tags ?? []).filter((t) => t.Key !== 'remote-container-hooks:host-key'),
      LaunchTime: new Date(NOW - minutes * MIN)
    }
  }
  const first = await pass([keyless('i-00000000000000001', 61)])
  expect(first.rowOf('i-00000000000000001')).toMatchObject({
    action: 'marked',
    why: 'running for 61 min without its host key tag: its setup never finished'
  })
  // After the grace: replaced through the group (the terminate is the AWS call this stand-in lacks).
  const second = await pass([keyless('i-00000000000000001', 64, markedAgo(3 * MIN))])
  expect(second.rowOf('i-00000000000000001')).toMatchObject({ action: 'failed' })
  expect(second.calls).toContain('tag i-00000000000000001 remote-container-hooks:recycle')
  // Controls: younger than an hour it may still be setting up; protected, a job may hold it.
  expect((await pass([keyless('i-00000000000000001', 59)])).rowOf('i-00000000000000001')).toMatchObject({
    action: 'left alone',
    why: 'running, not ready to serve (starting or stopped)'
  })
  rows = async (ids) => new Map(ids.map((id) => [id, row(true)]))
  const guarded = await pass([keyless('i-00000000000000001', 61)])
  expect(guarded.rowOf('i-00000000000000001')).toMatchObject({
    action: 'left alone',
    why: expect.stringMatching(/, but protected from scale-in$/)
  })
  expect(guarded.calls).toEqual([])
})

// A job root on a member (maxJobsPerVm 1) left a daemon behind that keeps rewriting the lease
// record as another holder's: its release found the lease "lost", and reap, reading a live record,
// left the member running, protected and counted in the pool until it was older than any job.
describe('a member leased for one job and marked to go at release, whose lease record still reads as held', () => {
  test('is marked and, after the grace, replaced (controls: marked only as it was leased, or marked under reuse, it is left alone)', async () => {
    rows = async (ids) => new Map(ids.map((id) => [id, row(true)]))
    for (const ip of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) leaseAt.set(ip, ['held', '300'])
    const instances = (marked: Record<string, string> = {}) => [
      member('i-00000000000000001', '127.0.0.2', {
        'remote-container-hooks:recycle': 'lease lost at release (served its one job)',
        ...marked
      }),
      member('i-00000000000000002', '127.0.0.3', { 'remote-container-hooks:recycle': 'served its one job', ...marked }),
      // Leased under reuse by another runner host (an upgrade under way): another job may have
      // taken over its lapsed lease, and hold it rightly, whatever this host's maxJobsPerVm (1).
      member('i-00000000000000003', '127.0.0.4', { 'remote-container-hooks:recycle': 'lease lost at release', ...marked })
    ]
    const first = await pass(instances())
    expect(first.rowOf('i-00000000000000001')).toMatchObject({
      action: 'marked',
      why: 'marked for replacement (lease lost at release (served its one job)); its live lease record serves no job (it was leased for one)'
    })
    for (const id of ['i-00000000000000002', 'i-00000000000000003'])
      expect(first.rowOf(id)).toMatchObject({ action: 'left alone', why: 'lease live (300 s left)' })
    // After the grace: removed (the terminate through the group is the AWS call this stand-in lacks).
    const second = await pass(instances(markedAgo(3 * MIN)))
    expect(second.rowOf('i-00000000000000001')).toMatchObject({ action: 'failed' })
    for (const id of ['i-00000000000000002', 'i-00000000000000003']) expect(second.rowOf(id)).toMatchObject({ action: 'unmarked' })
  })
})
