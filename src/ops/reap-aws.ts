// The EC2 calls reap makes, each retried on throttling and server trouble, and the instance facts
// it reads from them.
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2Config } from '../config'
import { retry } from '../retry'
import { awsErrorName, ec2Client, isRetryableAwsError, watchAwsClock } from '../providers/ec2-api'
import { transitionTime } from '../providers/ec2-plan'
import type { InstanceFact, Tags } from './reap-plan'

/** States in which an instance may still run something (and costs money). */
export const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped']

export const tagsOf = (i: Ec2.Instance): Tags => Object.fromEntries((i.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))

export function factOf(i: Ec2.Instance): InstanceFact {
  const state = i.State?.Name ?? 'unknown'
  return {
    id: i.InstanceId ?? '',
    state,
    launchedAt: i.LaunchTime ? new Date(i.LaunchTime).getTime() : undefined,
    endedAt: state === 'terminated' || state === 'shutting-down' ? transitionTime(i.StateTransitionReason) : undefined,
    ...(state === 'stopped' ? { stoppedAt: transitionTime(i.StateTransitionReason) } : {}),
    tags: tagsOf(i)
  }
}

export class ReapEc2 {
  constructor(
    private readonly cfg: Pick<Ec2Config, 'region' | 'endpoint'>,
    private readonly signal: AbortSignal,
    /** Given AWS's clock against this host's (ms AWS is ahead) from each answer with a Date. */
    private readonly clockSeen: (offsetMs: number) => void = () => undefined
  ) {}

  private async send<T>(fn: (sdk: typeof Ec2, client: Ec2.EC2Client) => Promise<T>): Promise<T> {
    const { sdk, client } = await ec2Client(this.cfg)
    watchAwsClock(client, this.clockSeen)
    try {
      return await retry(() => fn(sdk, client), {
        attempts: 6,
        minDelayMs: 300,
        maxDelayMs: 4000,
        signal: this.signal,
        retryable: isRetryableAwsError
      })
    } finally {
      client.destroy()
    }
  }

  /** Every instance matching `filters` (all pages). */
  async describe(filters: Ec2.Filter[]): Promise<Ec2.Instance[]> {
    const out: Ec2.Instance[] = []
    let NextToken: string | undefined
    do {
      const res = await this.send((sdk, c) => c.send(new sdk.DescribeInstancesCommand({ Filters: filters, NextToken })))
      for (const r of res.Reservations ?? []) out.push(...(r.Instances ?? []))
      NextToken = res.NextToken
    } while (NextToken)
    return out.filter((i) => i.InstanceId)
  }

  /** One instance as EC2 describes it now; null when EC2 does not know the id (gone long ago). */
  async one(id: string): Promise<Ec2.Instance | null> {
    try {
      const res = await this.send((sdk, c) => c.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] })))
      return res.Reservations?.[0]?.Instances?.[0] ?? null
    } catch (e) {
      if (awsErrorName(e) === 'InvalidInstanceID.NotFound' || awsErrorName(e) === 'InvalidInstanceID.Malformed') return null
      throw e
    }
  }

  async tag(id: string, tags: Tags): Promise<void> {
    await this.send((sdk, c) =>
      c.send(new sdk.CreateTagsCommand({ Resources: [id], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }))
    )
  }

  async untag(id: string, keys: string[]): Promise<void> {
    await this.send((sdk, c) => c.send(new sdk.DeleteTagsCommand({ Resources: [id], Tags: keys.map((Key) => ({ Key })) })))
  }

  async terminate(id: string): Promise<void> {
    try {
      await this.send((sdk, c) => c.send(new sdk.TerminateInstancesCommand({ InstanceIds: [id] })))
    } catch (e) {
      // Gone already: what reap wanted.
      if (awsErrorName(e) !== 'InvalidInstanceID.NotFound') throw e
    }
  }
}
