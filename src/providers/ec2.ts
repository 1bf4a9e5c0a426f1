// Ephemeral EC2 VM per job: launched with ownership tags at creation, trusted through keys handed
// over in user data (host key pinned), used, and terminated. Capacity errors move on to the next
// instance type, subnet, then on-demand; throttling and server errors retry the same request
// (same idempotency token) with backoff; every wait has one overall deadline and says what it waits for.
import { createHash, randomBytes } from 'node:crypto'
import { writePrivateFile } from '../private-fs'
import { hostname } from 'node:os'
import type { Ec2Config } from '../config'
import type { HookContext } from '../context'
import { HookError, TransportError, isPermanentTransport } from '../errors'
import { retry, sleep } from '../retry'
import type { ConnectInfo, Remote } from '../remote/remote'
import type { Acquired, AcquireContext, Lease, VmProvider } from './provider'
import { awsErrorName, ec2Client, isCapacityError, isRetryableAwsError } from './ec2-api'
import { ed25519KeyPair } from './keys'
import { readyMarker, userDataScript } from './user-data'
import { run } from '../remote/remote'
import { shq } from '../remote/quote'

export const TAG_PREFIX = 'remote-container-hooks'
export const TAG_OWNER = `${TAG_PREFIX}:owner`
export const TAG_JOB = `${TAG_PREFIX}:job-id`
export const TAG_RUNNER_HOST = `${TAG_PREFIX}:runner-host`

interface Attempt {
  market: 'spot' | 'on-demand'
  instanceType: string | null
  subnetId: string | null
}

/** Every distinct request we may try, in order: types × subnets, spot first when configured. */
export function launchPlan(cfg: Ec2Config): Attempt[] {
  const markets: Attempt['market'][] = cfg.market === 'spot' ? ['spot'] : cfg.market === 'on-demand' ? ['on-demand'] : ['spot', 'on-demand']
  const types = cfg.instanceTypes.length ? cfg.instanceTypes : [null]
  const subnets = cfg.subnetIds.length ? cfg.subnetIds : [null]
  const out: Attempt[] = []
  for (const market of markets) for (const instanceType of types) for (const subnetId of subnets) out.push({ market, instanceType, subnetId })
  return out
}

export function describeAttempt(a: Attempt): string {
  return `${a.market} ${a.instanceType ?? '(template type)'}${a.subnetId ? ` in ${a.subnetId}` : ''}`
}

export class Ec2Provider implements VmProvider {
  readonly kind = 'ec2'
  constructor(private readonly cfg: Ec2Config, private readonly workRoot: string) {}

  tagsFor(ctx: HookContext, owner: string, jobId: string, launchedAt: Date): { Key: string; Value: string }[] {
    const r = ctx.runner
    const expires = new Date(launchedAt.getTime() + this.cfg.maxLifetimeMinutes * 60_000)
    const tags: Record<string, string | undefined> = {
      ...this.cfg.tags,
      [TAG_OWNER]: owner,
      [TAG_JOB]: jobId,
      [`${TAG_PREFIX}:runner`]: r.runnerName,
      [TAG_RUNNER_HOST]: hostname(),
      [`${TAG_PREFIX}:repository`]: r.github.repository,
      [`${TAG_PREFIX}:workflow`]: r.github.workflow,
      [`${TAG_PREFIX}:run-id`]: r.github.runId,
      [`${TAG_PREFIX}:run-attempt`]: r.github.runAttempt,
      [`${TAG_PREFIX}:job`]: r.github.job,
      [`${TAG_PREFIX}:launched-at`]: launchedAt.toISOString(),
      [`${TAG_PREFIX}:expires-at`]: expires.toISOString(),
      Name: this.cfg.tags.Name ?? `rch-${jobId}`
    }
    return Object.entries(tags)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([Key, Value]) => ({ Key, Value: String(Value).slice(0, 256) }))
  }

  readonly releaseDestroys = true

  async acquire(ctx: HookContext, a: AcquireContext): Promise<Acquired> {
    const cfg = this.cfg
    const { owner, localDir, jobId } = a
    const deadline = Date.now() + cfg.acquireTimeoutSeconds * 1000
    const { sdk, client } = await ec2Client(cfg)
    const send = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
      retry(fn, {
        attempts: 8,
        minDelayMs: 300,
        maxDelayMs: 5000,
        deadlineMs: Math.max(1000, deadline - Date.now()),
        signal: ctx.signal,
        retryable: isRetryableAwsError,
        onRetry: (e) => ctx.log.debug(`${what}: ${awsErrorName(e)}, retrying`)
      })

    // Per-job keys: the client key to log in, the host key to pin. Private halves stay in 0600 files.
    const client_ = ed25519KeyPair(`rch-${jobId}-client`)
    const host = ed25519KeyPair(`rch-${jobId}-host`)
    const identityFile = `${localDir}/id_ed25519`
    writePrivateFile(identityFile, client_.private)
    const userData = Buffer.from(
      userDataScript({ user: cfg.user, workRoot: this.workRoot, hostPrivateKey: host.private, hostPublicKey: host.public, clientPublicKey: client_.public, maxLifetimeMinutes: cfg.maxLifetimeMinutes })
    ).toString('base64')

    let rootDevice: string | null = null
    let rootSize: number | undefined
    // A launch template decides what it states; what it leaves out gets our secure defaults.
    let imageForRoot = cfg.launchTemplate ? null : cfg.imageId ?? null
    let templateSetsMetadata = false
    if (cfg.launchTemplate) {
      const t = cfg.launchTemplate
      const v = await send('DescribeLaunchTemplateVersions', () =>
        client.send(new sdk.DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: t.name, LaunchTemplateId: t.id, Versions: [t.version] }))
      )
      const data = v.LaunchTemplateVersions?.[0]?.LaunchTemplateData
      if (!data) throw new HookError(`provider.launchTemplate: version ${t.version} of ${t.name ?? t.id} not found`)
      templateSetsMetadata = !!data.MetadataOptions
      if (!data.BlockDeviceMappings?.length) imageForRoot = data.ImageId ?? cfg.imageId ?? null
    }
    if (imageForRoot) {
      const img = await send('DescribeImages', () => client.send(new sdk.DescribeImagesCommand({ ImageIds: [imageForRoot!] })))
      rootDevice = img.Images?.[0]?.RootDeviceName ?? null
      // The image's own root size, stated explicitly: an EBS mapping needs a size or a snapshot
      // (EC2-compatible APIs such as moto refuse one with neither).
      rootSize = img.Images?.[0]?.BlockDeviceMappings?.find((b) => b.DeviceName === rootDevice)?.Ebs?.VolumeSize
      if (!img.Images?.length) throw new HookError(`provider.imageId: image ${imageForRoot} not found in ${cfg.region}`)
    }

    // A runner runs one job at a time, so a live instance of its own is a leftover of a job whose
    // cleanup never ran: found while this job launches, terminated once this job has its machine.
    // Only instances launched from this machine: a same-named runner elsewhere is not this one.
    const leftovers = this.liveOf(owner, hostname()).catch((e: unknown) => {
      ctx.log.warn(`could not look for instances left by earlier jobs of this runner: ${(e as Error).message}`)
      return [] as string[]
    })

    const tried: string[] = []
    let instanceId: string | null = null
    const launchedAt = new Date()
    for (const [i, at] of launchPlan(cfg).entries()) {
      // One idempotency token per distinct request; retries of that same request reuse it.
      const token = createHash('sha256').update(`${jobId}:${i}:${randomBytes(8).toString('hex')}`).digest('hex').slice(0, 48)
      const tags = this.tagsFor(ctx, owner, jobId, launchedAt)
      const input: Ec2.RunInstancesCommandInput = {
        MinCount: 1,
        MaxCount: 1,
        ClientToken: token,
        UserData: userData,
        TagSpecifications: [
          { ResourceType: 'instance', Tags: tags },
          { ResourceType: 'volume', Tags: tags }
        ],
        ...(cfg.launchTemplate
          ? { LaunchTemplate: { LaunchTemplateName: cfg.launchTemplate.name, LaunchTemplateId: cfg.launchTemplate.id, Version: cfg.launchTemplate.version } }
          : { ImageId: cfg.imageId }),
        ...(templateSetsMetadata ? {} : { MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' } }),
        // Always, template or not: the self-destruct timer must end the instance, not just stop it.
        InstanceInitiatedShutdownBehavior: 'terminate',
        ...(at.instanceType ? { InstanceType: at.instanceType as Ec2._InstanceType } : {}),
        ...(at.subnetId ? { SubnetId: at.subnetId } : {}),
        ...(cfg.securityGroupIds.length ? { SecurityGroupIds: cfg.securityGroupIds } : {}),
        ...(rootDevice
          ? { BlockDeviceMappings: [{ DeviceName: rootDevice, Ebs: { Encrypted: true, DeleteOnTermination: true, VolumeType: cfg.rootVolume.type as Ec2.VolumeType, ...((cfg.rootVolume.sizeGiB ?? rootSize) ? { VolumeSize: cfg.rootVolume.sizeGiB ?? rootSize } : {}) } }] }
          : {}),
        ...(at.market === 'spot' ? { InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } } } : {})
      }
      try {
        const res = await send('RunInstances', () => client.send(new sdk.RunInstancesCommand(input)))
        instanceId = res.Instances?.[0]?.InstanceId ?? null
        if (!instanceId) throw new HookError('RunInstances returned no instance')
        ctx.log.progress(`launched ${instanceId} (${describeAttempt(at)})`)
        break
      } catch (e) {
        if (!isCapacityError(e)) throw new HookError(`RunInstances (${describeAttempt(at)}) failed: ${awsErrorName(e)}: ${(e as Error).message}`)
        tried.push(`${describeAttempt(at)}: ${awsErrorName(e)}`)
        ctx.log.progress(`no capacity for ${describeAttempt(at)} (${awsErrorName(e)}), trying the next option`)
      }
    }
    if (!instanceId) throw new HookError(`no EC2 capacity for this job; tried ${tried.join('; ')}`)

    const lease: Lease = { index: -1, slot: 0, instanceId, connect: { host: '', port: cfg.sshPort, user: cfg.user, identityFile, knownHostsFile: `${localDir}/known_hosts` } }
    try {
      const connect = await this.waitRunning(ctx, client, sdk, instanceId, deadline, send)
      lease.connect = { ...lease.connect, ...connect }
      writePrivateFile(lease.connect.knownHostsFile, `${knownHostsName(lease.connect.host, lease.connect.port)} ${host.public.split(' ').slice(0, 2).join(' ')}\n`)
      const remote = await this.waitReady(ctx, lease.connect, instanceId, deadline, a)
      for (const id of (await leftovers).filter((x) => x !== instanceId)) {
        ctx.log.progress(`terminating ${id}, left by an earlier job of this runner`)
        await this.terminate(ctx, id).catch((t) => ctx.log.warn(`could not terminate ${id}: ${(t as Error).message}`))
      }
      return { lease, remote }
    } catch (e) {
      // The instance exists: it must not outlive this failure.
      await this.terminate(ctx, instanceId).catch((t) => ctx.log.warn(`could not terminate ${instanceId}: ${(t as Error).message}`))
      throw e
    }
  }

  private async waitRunning(
    ctx: HookContext,
    client: Ec2.EC2Client,
    sdk: typeof Ec2,
    id: string,
    deadline: number,
    send: <T>(what: string, fn: () => Promise<T>) => Promise<T>
  ): Promise<{ host: string; port: number }> {
    const started = Date.now()
    let lastNote = 0
    for (let round = 0; ; round++) {
      // EC2 is eventually consistent: a just-launched id may be unknown to Describe for a moment.
      const res = await send('DescribeInstances', () => client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }))).catch((e) => {
        if (awsErrorName(e) === 'InvalidInstanceID.NotFound') return null
        throw e
      })
      const inst = res?.Reservations?.[0]?.Instances?.[0]
      const state = inst?.State?.Name ?? (res ? 'unknown' : 'not visible yet')
      if (state === 'running' && inst) {
        const addr = this.addressOf(inst)
        if (addr) return addr
      }
      if (state === 'terminated' || state === 'shutting-down' || state === 'stopped' || state === 'stopping') {
        throw new HookError(`${id} is ${state} before it could be used${inst?.StateReason?.Message ? `: ${inst.StateReason.Message}` : ''}`)
      }
      if (Date.now() > deadline) throw new HookError(`${id} not usable after ${this.cfg.acquireTimeoutSeconds} s (state ${state}; provider.acquireTimeoutSeconds)`)
      if (Date.now() - lastNote > 10_000) {
        ctx.log.progress(`waiting for ${id} (${state === 'running' ? `running, no ${this.cfg.connect.address} yet` : state}, ${Math.round((Date.now() - started) / 1000)} s)`)
        lastNote = Date.now()
      }
      await sleep(Math.min(5000, 500 * 1.5 ** round), ctx.signal)
    }
  }

  private addressOf(inst: Ec2.Instance): { host: string; port: number } | null {
    const how = this.cfg.connect.address
    if (how === 'private-ip') return inst.PrivateIpAddress ? { host: inst.PrivateIpAddress, port: this.cfg.sshPort } : null
    if (how === 'public-ip') return inst.PublicIpAddress ? { host: inst.PublicIpAddress, port: this.cfg.sshPort } : null
    if (how === 'public-dns') return inst.PublicDnsName ? { host: inst.PublicDnsName, port: this.cfg.sshPort } : null
    const value = inst.Tags?.find((t) => t.Key === how.slice(4))?.Value
    if (!value) return null
    const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(value)
    return m ? { host: m[1], port: m[2] ? Number(m[2]) : this.cfg.sshPort } : null
  }

  /** SSH up and the boot setup done (marker written last); a session from before it is replaced. */
  private async waitReady(ctx: HookContext, c: ConnectInfo, id: string, deadline: number, a: AcquireContext): Promise<Remote> {
    const started = Date.now()
    let lastNote = 0
    for (let round = 0; ; round++) {
      const remote = await this.waitSsh(ctx, c, id, deadline, a.open)
      const r = await run(remote, `[ -f ${shq(readyMarker(this.workRoot))} ] && echo ready || echo booting`, { collect: true })
      if (r.code === 0 && r.stdout.toString().trim() === 'ready') return remote
      await a.discard(c, remote)
      if (Date.now() > deadline) throw new HookError(`${id}: boot setup (cloud-init user data) not finished after ${this.cfg.acquireTimeoutSeconds} s`)
      if (Date.now() - lastNote > 10_000) {
        ctx.log.progress(`waiting for ${id} (cloud-init, ${Math.round((Date.now() - started) / 1000)} s)`)
        lastNote = Date.now()
      }
      await sleep(Math.min(3000, 500 * 1.5 ** round), ctx.signal)
    }
  }

  private async waitSsh(ctx: HookContext, c: ConnectInfo, id: string, deadline: number, open: (c: ConnectInfo) => Promise<Remote>): Promise<Remote> {
    const started = Date.now()
    let lastNote = 0
    for (let round = 0; ; round++) {
      try {
        return await open(c)
      } catch (e) {
        // A wrong host key is an attack or a broken image, not a slow boot.
        if (isPermanentTransport(e)) throw e
        if (Date.now() > deadline) throw new TransportError(`${id}: SSH on ${c.host}:${c.port} not ready after ${this.cfg.acquireTimeoutSeconds} s: ${(e as Error).message}`)
        if (Date.now() - lastNote > 10_000) {
          ctx.log.progress(`waiting for ${id} (sshd on ${c.host}:${c.port}, ${Math.round((Date.now() - started) / 1000)} s)`)
          lastNote = Date.now()
        }
        await sleep(Math.min(3000, 300 * 1.5 ** round), ctx.signal)
      }
    }
  }

  async terminate(ctx: HookContext, id: string): Promise<void> {
    const { sdk, client } = await ec2Client(this.cfg)
    try {
      await retry(() => client.send(new sdk.TerminateInstancesCommand({ InstanceIds: [id] })), {
        attempts: 6,
        minDelayMs: 300,
        maxDelayMs: 4000,
        // NotFound right after launch is EC2's eventual consistency, not proof the instance is gone:
        // retried (a few seconds) before it is taken as "already gone".
        retryable: (e) => isRetryableAwsError(e) || awsErrorName(e) === 'InvalidInstanceID.NotFound'
      })
      ctx.log.progress(`terminated ${id}`)
    } catch (e) {
      if (awsErrorName(e) === 'InvalidInstanceID.NotFound') return
      throw e
    }
  }

  async release(ctx: HookContext, _remote: Remote | null, lease: Lease, _jobId: string): Promise<void> {
    if (lease.instanceId) await this.terminate(ctx, lease.instanceId)
  }

  /** Ids of the live (not terminated) instances tagged with an owner id (and, if given, launched from that runner host). */
  private async liveOf(owner: string, runnerHost?: string): Promise<string[]> {
    const { sdk, client } = await ec2Client(this.cfg)
    const res = await retry(
      () =>
        client.send(
          new sdk.DescribeInstancesCommand({
            Filters: [
              { Name: `tag:${TAG_OWNER}`, Values: [owner] },
              ...(runnerHost ? [{ Name: `tag:${TAG_RUNNER_HOST}`, Values: [runnerHost] }] : []),
              { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }
            ]
          })
        ),
      { attempts: 6, minDelayMs: 300, maxDelayMs: 4000, retryable: isRetryableAwsError }
    )
    return (res.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId!).filter(Boolean)
  }

  /** Terminates every live instance tagged with this runner's owner id (cleanup without state). */
  async cleanupOrphans(ctx: HookContext, owner: string): Promise<string> {
    const ids = await this.liveOf(owner)
    for (const id of ids) await this.terminate(ctx, id)
    return `${ids.length} instances terminated`
  }

}

export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

import type * as Ec2 from '@aws-sdk/client-ec2'
