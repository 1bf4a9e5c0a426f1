// cleanup_job without state on a pool, cancelled (the runner's SIGINT to a cleanup_job): the lost
// job's members are still looked for and taken back, as EC2's leftovers are. Before, the member
// lookup heeded the cancel and nothing was given back (the lease lapsed, the member's protection
// stayed until a later release or reap).
import { Ec2PoolProvider } from '../../src/providers/ec2-pool'
import type { Member } from '../../src/providers/pool-plan'
import type { ProviderEnv } from '../../src/providers/provider'
import type { Remote } from '../../src/remote/remote'
import { ConfigSchema, type Ec2PoolConfig } from '../../src/config'
import { Cancelled, TransportError } from '../../src/errors'
import { runnerFacts } from '../helpers/runner-facts'
import { readyMember } from './_pool-member'

const cfg = ConfigSchema.parse({
  provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'rch-pool', identityFile: '/k' },
  remote: { workRoot: '~/rch' }
}).provider as Ec2PoolConfig

const member: Member = readyMember({ id: 'i-0123456789abcdef0', jobs: 1 })

/** The pool's cleanup of this runner's lost members, under `signal`: which members it got to. */
async function orphansWith(signal: AbortSignal): Promise<{ lookups: boolean[]; connected: string[]; report: unknown }> {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  const lookups: boolean[] = []
  // The lookup as the AWS call behaves: it refuses to go out on an aborted signal.
  ;(p as unknown as { members: (env: { signal: AbortSignal }) => Promise<Member[]> }).members = async (env) => {
    lookups.push(env.signal.aborted)
    if (env.signal.aborted) throw Cancelled.by(env.signal)
    return [member]
  }
  const connected: string[] = []
  const env = {
    log: { progress: () => undefined, warn: () => undefined, debug: () => undefined },
    signal,
    runner: runnerFacts(),
    connect: async (c: { host: string }) => {
      connected.push(c.host)
      throw new TransportError(`${c.host} does not answer`, 'network')
    },
    discard: async () => undefined
  } as unknown as ProviderEnv
  const report = await p.cleanupOrphans('owner', env, async (_r: Remote) => undefined)
  return { lookups, connected, report }
}

test('cancelled: the lost job members are still looked for, and each is tried', async () => {
  const cancelled = new AbortController()
  cancelled.abort('SIGINT')
  const r = await orphansWith(cancelled.signal)
  expect(r.lookups).toEqual([false])
  expect(r.connected).toEqual(['127.0.0.1'])
  expect(r.report).toEqual({ released: [], unreachable: [{ machine: member.id, reason: '127.0.0.1 does not answer' }] })
})

test('control: without a cancel, the same', async () => {
  const r = await orphansWith(new AbortController().signal)
  expect([r.lookups, r.connected]).toEqual([[false], ['127.0.0.1']])
})
