// What the EC2 provider asks for and how it reads the answers, as pure functions: the launch plan
// (which requests, in which order), the RunInstances input with its tags, and the address to SSH to.
import { nameField } from '../fleet/job-record'
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2Config } from '../config'
import type { RunnerEnv } from '../runner-env'
import { isHostName } from '../input-rules'

export const TAG_PREFIX = 'remote-container-hooks'
export const TAG_OWNER = `${TAG_PREFIX}:owner`
export const TAG_JOB = `${TAG_PREFIX}:job-id`
export const TAG_RUNNER_HOST = `${TAG_PREFIX}:runner-host`
/** The fleet ledger reservation an instance was launched under (set at creation, so reap finds it even before attach). */
export const TAG_RESERVATION = `${TAG_PREFIX}:reservation`

/** EC2's `User initiated (2026-12-01 10:00:00 GMT)`: the time an instance was stopped or terminated. */
export function transitionTime(reason: string | undefined): number | undefined {
  const m = /\((\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) GMT\)/.exec(reason ?? '')
  if (!m) return undefined
  const t = Date.parse(`${m[1]}T${m[2]}Z`)
  return Number.isFinite(t) ? t : undefined
}

export interface Attempt {
  market: 'spot' | 'on-demand'
  instanceType: string | null
  subnetId: string | null
}

/** Every distinct request we may try, in order: markets (spot first when configured) × types × subnets. */
export function launchPlan(cfg: Pick<Ec2Config, 'market' | 'instanceTypes' | 'subnetIds'>): Attempt[] {
  const markets: Attempt['market'][] = cfg.market === 'spot' ? ['spot'] : cfg.market === 'on-demand' ? ['on-demand'] : ['spot', 'on-demand']
  const types = cfg.instanceTypes.length ? cfg.instanceTypes : [null]
  const subnets = cfg.subnetIds.length ? cfg.subnetIds : [null]
  const out: Attempt[] = []
  for (const market of markets)
    for (const instanceType of types) for (const subnetId of subnets) out.push({ market, instanceType, subnetId })
  return out
}

export function describeAttempt(a: Attempt): string {
  return `${a.market} ${a.instanceType ?? '(template type)'}${a.subnetId ? ` in ${a.subnetId}` : ''}`
}

export interface TagFacts {
  owner: string
  jobId: string
  runner: Pick<RunnerEnv, 'runnerName' | 'github'>
  /** The runner machine's host name. */
  runnerHost: string
  launchedAt: Date
}

/** The instance's tags: the operator's, then ours (which the operator's cannot override). */
export function tagsFor(cfg: Pick<Ec2Config, 'tags' | 'maxLifetimeMinutes'>, f: TagFacts): Ec2.Tag[] {
  const g = f.runner.github
  const expires = new Date(f.launchedAt.getTime() + cfg.maxLifetimeMinutes * 60_000)
  const tags: Record<string, string | undefined> = {
    ...cfg.tags,
    [TAG_OWNER]: f.owner,
    [TAG_JOB]: f.jobId,
    [`${TAG_PREFIX}:runner`]: f.runner.runnerName,
    [TAG_RUNNER_HOST]: f.runnerHost,
    [`${TAG_PREFIX}:repository`]: g.repository,
    [`${TAG_PREFIX}:workflow`]: g.workflow,
    [`${TAG_PREFIX}:run-id`]: g.runId,
    [`${TAG_PREFIX}:run-attempt`]: g.runAttempt,
    [`${TAG_PREFIX}:job`]: g.job,
    [TAG_LAUNCHED_AT]: f.launchedAt.toISOString(),
    [TAG_EXPIRES_AT]: expires.toISOString(),
    Name: cfg.tags.Name ?? `rch-${f.jobId}`
  }
  // EC2 counts characters, not UTF-16 units; and a cut inside a surrogate pair leaves a lone half,
  // which the SDK cannot URL-encode: RunInstances would fail after the launch was reserved.
  return Object.entries(tags)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([Key, Value]) => ({ Key, Value: nameField(String(Value)) }))
}

/**
 * The operator's provider.tags as every instance launched under them carries them (see tagsFor):
 * what reap filters on to tell this configuration's instances from other setups'. A key of the
 * hook's own namespace carries the hook's value (or none), and an empty value is not sent: a filter
 * on either matches no instance, and reap would never see one, past its expires-at included.
 */
export function launchedScope(tags: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(tags).filter(([k, v]) => v !== '' && !k.startsWith(`${TAG_PREFIX}:`)))
}

/** What the launch template or image told us before launching. */
export interface LaunchBasis {
  /** Root device of the image when we set the root volume ourselves, else null (the template's). */
  rootDevice: string | null
  rootSizeGiB?: number
  /** The template states MetadataOptions itself: then it decides, else IMDSv2 is required. */
  templateSetsMetadata: boolean
  /** The template's instance type, used when provider.instanceTypes names none. */
  templateInstanceType?: string
}

/** Every resource type a launch in `market` creates, each tagged by the RunInstances call itself. */
export function launchTagTypes(market: Attempt['market']): Ec2.ResourceType[] {
  return ['instance', 'volume', 'network-interface', ...(market === 'spot' ? (['spot-instances-request'] as const) : [])]
}

/** The RunInstances request for one attempt. Tags go on at creation: nothing is ever untagged. */
export function runInstancesInput(
  cfg: Ec2Config,
  at: Attempt,
  b: LaunchBasis,
  x: { token: string; userData: string; tags: Ec2.Tag[] }
): Ec2.RunInstancesCommandInput {
  const t = cfg.launchTemplate
  const size = cfg.rootVolume.sizeGiB ?? b.rootSizeGiB
  return {
    MinCount: 1,
    MaxCount: 1,
    ClientToken: x.token,
    UserData: x.userData,
    // A spot launch also creates a Spot request, tagged by the same call (and only then: EC2 fails a
    // launch whose tags name a resource type it does not create).
    TagSpecifications: launchTagTypes(at.market).map((ResourceType) => ({ ResourceType, Tags: x.tags })),
    ...(t ? { LaunchTemplate: { LaunchTemplateName: t.name, LaunchTemplateId: t.id, Version: t.version } } : { ImageId: cfg.imageId }),
    ...(b.templateSetsMetadata ? {} : { MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' } }),
    // Always, template or not: the self-destruct timer must end the instance, not just stop it.
    InstanceInitiatedShutdownBehavior: 'terminate',
    // Always too: a template's termination protection would fail every terminate of the hook and reap.
    DisableApiTermination: false,
    ...(at.instanceType ? { InstanceType: at.instanceType as Ec2._InstanceType } : {}),
    ...(at.subnetId ? { SubnetId: at.subnetId } : {}),
    ...(cfg.securityGroupIds.length ? { SecurityGroupIds: cfg.securityGroupIds } : {}),
    ...(b.rootDevice
      ? {
          BlockDeviceMappings: [
            {
              DeviceName: b.rootDevice,
              Ebs: {
                Encrypted: true,
                DeleteOnTermination: true,
                VolumeType: cfg.rootVolume.type as Ec2.VolumeType,
                ...(size ? { VolumeSize: size } : {})
              }
            }
          ]
        }
      : {}),
    ...(at.market === 'spot'
      ? {
          InstanceMarketOptions: {
            MarketType: 'spot',
            SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' }
          }
        }
      : {})
  }
}

/** Where to SSH to, by `connect.address`; null while the instance does not have it yet. */
export function addressOf(inst: Ec2.Instance, cfg: Pick<Ec2Config, 'connect' | 'sshPort'>): { host: string; port: number } | null {
  const how = cfg.connect.address
  const at = (host: string | undefined): { host: string; port: number } | null => (host ? { host, port: cfg.sshPort } : null)
  if (how === 'private-ip') return at(inst.PrivateIpAddress)
  if (how === 'public-ip') return at(inst.PublicIpAddress)
  if (how === 'public-dns') return at(inst.PublicDnsName)
  // tag:<Name>: "host", "host:port", "[v6]" or "[v6]:port". Something other than the hook writes it
  // (maybe the instance itself): a value that is no host name or address (one ssh, rsync or a
  // known_hosts line would read otherwise) or no port counts as none.
  const value = inst.Tags?.find((t) => t.Key === how.slice(4))?.Value
  if (!value) return null
  const m = /^\[?([^\]]+?)\]?(?::(\d{1,5}))?$/.exec(value)
  const port = m?.[2] ? Number(m[2]) : cfg.sshPort
  return m && isHostName(m[1]) && port >= 1 && port <= 65535 ? { host: m[1], port } : null
}

export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

/** Set by reap's first pass on what it would remove (`<ISO time>`); a later pass removes only what is still unowned. */
export const TAG_REAP_CANDIDATE = `${TAG_PREFIX}:reap-candidate`
/** Any value: reap never touches the instance. */
export const TAG_KEEP = `${TAG_PREFIX}:keep`
/** When the instance ends itself (ISO time), written at launch. */
export const TAG_EXPIRES_AT = `${TAG_PREFIX}:expires-at`
/** The launching runner host's clock at the launch: with expires-at, the instance's lifetime. */
export const TAG_LAUNCHED_AT = `${TAG_PREFIX}:launched-at`
