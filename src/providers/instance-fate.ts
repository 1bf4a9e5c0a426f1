// What became of a job's EC2 instance after a step lost its connection to it, in words an operator
// can act on: a Spot interruption, a shutdown from inside the machine (a job can run one as root
// through the Docker socket), its own lifetime limit, a termination through the API. Without this
// the step log only says that the connection was lost.
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2Config } from '../config'
import { waitUntil, type Clock } from '../retry'
import { awsErrorName, ec2Client, isRetryableAwsError } from './ec2-api'
import type { LossCause } from '../fleet/ledger'
import type { LossEnv, LostMachine } from './provider'

/** What EC2 says of the instance; `gone` when it no longer knows the id. */
export interface InstanceFate {
  state: string
  reasonCode?: string
  reasonMessage?: string
  launchedAt?: number
}

const LIVE = new Set(['pending', 'running'])

/** EC2's own state reason, as it reads in a step log, and the cause the fleet ledger records. */
const REASONS: Record<string, [string, LossCause]> = {
  'Server.SpotInstanceTermination': ['a Spot interruption: EC2 took the capacity back', 'spot'],
  'Server.SpotInstanceShutdown': ['a Spot interruption: EC2 took the capacity back', 'spot'],
  'Client.UserInitiatedShutdown': ['it was ended through the EC2 API (by a person, a script, an Auto Scaling group or a reaper)', 'api'],
  'Client.InstanceInitiatedShutdown': [
    'it was shut down from inside (a shutdown or poweroff on the machine; a job can run one as root through the Docker socket)',
    'inside'
  ],
  'Server.InternalError': ['EC2 ended it after an internal error', 'other'],
  'Server.ScheduledStop': ['EC2 retired it (a scheduled retirement of its hardware)', 'other']
}

/** Text from the API as one printable ASCII line of bounded length. */
const plain = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)

/**
 * What the step log says of what became of `id`, and the cause the fleet ledger records.
 * `maxLifetimeMinutes` (per-job instances only) tells a shutdown at the instance's own lifetime
 * limit from any other shutdown from inside.
 */
export function lostMachineOf(id: string, f: InstanceFate, o: { maxLifetimeMinutes?: number; now: number }): LostMachine {
  const m = `the job's machine ${id}`
  if (f.state === 'gone') return { says: `${m} is no longer known to EC2 (terminated some time ago)`, cause: 'gone' }
  if (LIVE.has(f.state)) return { says: `${m} is still ${f.state} in EC2: the connection to it failed, not the machine`, cause: 'running' }
  const code = f.reasonCode ?? ''
  let [why, cause] = REASONS[code] ?? [code ? `EC2 gives the reason ${plain(code)}` : 'EC2 gives no reason', 'other']
  const limit = o.maxLifetimeMinutes
  // The self-destruct timer runs from boot, a little after launch: a minute of slack.
  if (code === 'Client.InstanceInitiatedShutdown' && limit && f.launchedAt !== undefined && o.now >= f.launchedAt + (limit - 1) * 60_000)
    [why, cause] = [`it reached provider.maxLifetimeMinutes (${limit}) and shut itself down`, 'lifetime']
  const said = f.reasonMessage ? ` (EC2: ${plain(f.reasonMessage)})` : ''
  return { says: `${m} is ${plain(f.state)}: ${why}${said}`, cause }
}

/** Reads the instance's state from one DescribeInstances answer. */
export function fateOf(res: Ec2.DescribeInstancesCommandOutput | null): InstanceFate {
  const inst = res?.Reservations?.[0]?.Instances?.[0]
  if (!inst?.State?.Name) return { state: 'gone' }
  return {
    state: inst.State.Name,
    reasonCode: inst.StateReason?.Code,
    reasonMessage: inst.StateReason?.Message,
    launchedAt: inst.LaunchTime ? new Date(inst.LaunchTime).getTime() : undefined
  }
}

/** How many times a still-running instance is looked at: EC2's state follows the machine's own shutdown by a moment. */
export const FATE_LOOKS = 3

/** What became of the instance: EC2 is asked again (about 3 s in all) while it still calls the instance live. */
export async function instanceFate(
  cfg: Pick<Ec2Config, 'region' | 'endpoint'>,
  id: string,
  env: LossEnv,
  clock?: Clock,
  describe?: (id: string) => Promise<Ec2.DescribeInstancesCommandOutput>
): Promise<InstanceFate> {
  let ask = describe
  if (!ask) {
    const { sdk, client } = await ec2Client(cfg)
    ask = (i) => client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [i] }), { abortSignal: env.signal })
  }
  let last: InstanceFate = { state: 'unknown' }
  return waitUntil(
    async (attempt) => {
      const res = await ask(id).catch((e: unknown) => {
        if (awsErrorName(e) === 'InvalidInstanceID.NotFound') return null
        throw e
      })
      last = fateOf(res)
      return LIVE.has(last.state) && attempt < FATE_LOOKS ? undefined : last
    },
    {
      attempts: FATE_LOOKS,
      minDelayMs: 1500,
      maxDelayMs: 1500,
      timeoutMs: 15_000,
      jitter: false,
      signal: env.signal,
      clock,
      transient: isRetryableAwsError,
      onTimeout: (_ms, e) => (e instanceof Error ? e : new Error(`EC2 said nothing of ${id} in time (last seen ${last.state})`))
    }
  )
}
