// How many vCPUs an instance type has, as EC2 says (DescribeInstanceTypes): what a launch counts
// against fleet.caps.vcpus. Asked once per type per process.
import type { Ec2Config } from '../config'
import { HookError } from '../errors'
import { retry } from '../retry'
import { awsErrorName, ec2Client, isRetryableAwsError } from './ec2-api'

const known = new Map<string, Promise<number>>()

export function instanceVcpus(cfg: Pick<Ec2Config, 'region' | 'endpoint'>, instanceType: string, signal: AbortSignal): Promise<number> {
  const key = `${cfg.endpoint ?? ''} ${cfg.region} ${instanceType}`
  let p = known.get(key)
  if (!p) {
    p = ask(cfg, instanceType, signal)
    known.set(key, p)
    // A failed answer is asked again next time.
    p.catch(() => known.delete(key))
  }
  return p
}

async function ask(cfg: Pick<Ec2Config, 'region' | 'endpoint'>, instanceType: string, signal: AbortSignal): Promise<number> {
  const { sdk, client } = await ec2Client(cfg)
  const res = await retry(() => client.send(new sdk.DescribeInstanceTypesCommand({ InstanceTypes: [instanceType as never] })), {
    attempts: 6,
    minDelayMs: 300,
    maxDelayMs: 4000,
    signal,
    retryable: isRetryableAwsError
  }).catch((e: unknown) => {
    throw new HookError(
      `DescribeInstanceTypes ${instanceType} failed (the fleet ledger counts its vCPUs): ${awsErrorName(e)}: ${(e as Error).message}`
    )
  })
  const n = res.InstanceTypes?.[0]?.VCpuInfo?.DefaultVCpus
  if (!Number.isInteger(n) || n! < 1)
    throw new HookError(`provider.instanceTypes: EC2 does not know the vCPUs of instance type ${instanceType}`)
  return n!
}
