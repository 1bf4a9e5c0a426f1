// A pool member's release after the job was cancelled (a failed prepare_job's undo runs with the
// job's aborted signal): giving the member back is cleanup, so its EC2 calls (the mark that keeps
// everyone off an unreachable member, the lift of its protection that lets reap replace it, the
// group's terminate) still go out, bounded as a terminate.
import { Ec2PoolProvider, type PoolLease } from '../../src/providers/ec2-pool'
import type { ProviderEnv } from '../../src/providers/provider'
import type { Remote } from '../../src/remote/remote'
import { ConfigSchema, type Ec2PoolConfig } from '../../src/config'
import { TransportError } from '../../src/errors'
import { recordingFleetGate } from '../helpers/fleet-gate'
import { runnerFacts } from '../helpers/runner-facts'
import { scrubMachine } from '../../src/docker/machine-scrub'

const cfg = ConfigSchema.parse({
  provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'rch-pool', identityFile: '/k' },
  remote: { workRoot: '~/rch' }
}).provider as Ec2PoolConfig

const lease = {
  kind: 'ec2-pool',
  instanceId: 'i-0123456789abcdef0',
  token: 'a'.repeat(32),
  connect: { host: '127.0.0.1', port: 22, user: 'ec2-user', identityFile: '/k', knownHostsFile: '/kh' }
} as unknown as PoolLease

/** The member cannot be reached at release; the tag call records whether its signal had already fired. */
async function releaseWith(
  signal: AbortSignal
): Promise<{ tagged: { aborted: boolean }[]; lifted: { aborted: boolean }[]; error: unknown }> {
  const p = new Ec2PoolProvider(cfg, '~/rch')
  const tagged: { aborted: boolean }[] = []
  ;(p as unknown as { tag: (id: string, t: object, env: ProviderEnv) => Promise<void> }).tag = async (_id, _t, env) => {
    tagged.push({ aborted: env.signal.aborted })
    if (env.signal.aborted) throw new Error('aborted before it was sent')
  }
  const lifted: { aborted: boolean }[] = []
  ;(p as unknown as { protect: (id: string, on: boolean, env: ProviderEnv) => Promise<unknown> }).protect = async (_id, on, env) => {
    if (!on) lifted.push({ aborted: env.signal.aborted })
    return env.signal.aborted ? new Error('aborted before it was sent') : null
  }
  const unreachable = {
    openExec: () => Promise.reject(new TransportError('the connection to 127.0.0.1 is gone: Not connected', 'lost')),
    openSocket: () => Promise.reject(new Error('unused')),
    close: () => undefined
  } as unknown as Remote
  const env = {
    fleet: recordingFleetGate(),
    scrub: (remote: Remote, machine: string) => scrubMachine(remote, '~/rch', machine).then(() => undefined),
    log: { progress: () => undefined, warn: () => undefined, debug: () => undefined },
    signal,
    runner: runnerFacts(),
    connect: async () => unreachable,
    discard: async () => undefined
  } as unknown as ProviderEnv
  const error = await p.release(lease, unreachable, 'fedcba9876543210', env).then(
    () => null,
    (e: unknown) => e
  )
  return { tagged, lifted, error }
}

test('after a cancel, the member that could not be given back is still marked so nobody new gets it, and its protection lifted', async () => {
  const cancelled = new AbortController()
  cancelled.abort('SIGINT')
  const { tagged, lifted, error } = await releaseWith(cancelled.signal)
  expect(error).toBeInstanceOf(TransportError)
  expect(tagged).toEqual([{ aborted: false }])
  expect(lifted).toEqual([{ aborted: false }])
})

test('positive control: without a cancel the same mark goes out', async () => {
  const { tagged, lifted, error } = await releaseWith(new AbortController().signal)
  expect(error).toBeInstanceOf(TransportError)
  expect(tagged).toEqual([{ aborted: false }])
  expect(lifted).toEqual([{ aborted: false }])
})
