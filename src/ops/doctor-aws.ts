// doctor's checks of the AWS side, read-only: permissions by DryRun calls (which AWS answers with
// DryRunOperation when the call would have been allowed, and runs nothing), and Describe calls for
// what the config names. Auto Scaling has no dry run: SetDesiredCapacity is never called.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { hostname, tmpdir } from 'node:os'
import type { Config, Ec2Config, Ec2PoolConfig } from '../config'
import { formatError } from '../errors'
import { nameOwnerId, newJobId, ownerId } from '../labels'
import { autoScalingClient, awsErrorName, ec2Client, watchAwsClock } from '../providers/ec2-api'
import { knownHostsName, launchPlan, runInstancesInput, tagsFor, type LaunchBasis } from '../providers/ec2-plan'
import { launchBasisOf } from '../providers/ec2-basis'
import { membersOf, type Member } from '../providers/pool-plan'
import { machineChecks, jobMachine, type MachineOptions } from './doctor-machine'
import type { CheckResult } from './output'

type Add = (check: string, status: CheckResult['status'], detail: string, fix?: string) => void

const CREDENTIAL_ERRORS = new Set([
  'CredentialsProviderError',
  'AuthFailure',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'ExpiredToken'
])
const CREDENTIALS_FIX =
  'give this runner host AWS credentials (an instance profile, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, as for the hook)'
const policyFix = (action: string): string => `allow ${action} in the runner host's IAM policy (terraform/ has the policy the hook needs)`

function recorder(region: string): { out: CheckResult[]; add: Add } {
  const out: CheckResult[] = []
  const add: Add = (check, status, detail, fix) =>
    void out.push({ check, target: `AWS ${region}`, status, detail, ...(status === 'fail' && fix ? { fix } : {}) })
  return { out, add }
}

/** The clock line, once the client's first call answered. */
function clockCheck(add: Add, skew: number | null, maxSkewSeconds: number): void {
  if (skew === null) return
  const how = skew === 0 ? "in step with AWS's" : `${Math.abs(skew)} s ${skew > 0 ? 'behind' : 'ahead of'} AWS's`
  if (Math.abs(skew) <= maxSkewSeconds) add('clock', 'pass', `this runner host's clock is ${how} (±1 s)`)
  else
    add(
      'clock',
      'fail',
      `this runner host's clock is ${how} (more than ${maxSkewSeconds} s): its reservations and heartbeats are stamped with it`,
      'run time synchronisation (chrony or systemd-timesyncd) on this runner host'
    )
}

/** A DryRun call: true when AWS says it would have been allowed. */
async function dryRun(add: Add, check: string, action: string, send: () => Promise<unknown>): Promise<boolean> {
  try {
    const r = (await send()) as { Instances?: { InstanceId?: string }[] }
    // AWS never runs a DryRun call; an endpoint that did must be told, and what it made named.
    const made = (r?.Instances ?? []).map((i) => i.InstanceId).filter(Boolean)
    if (made.length)
      return (
        add(
          check,
          'fail',
          `the endpoint ignored DryRun and launched ${made.join(', ')}`,
          `terminate ${made.join(', ')}; use an endpoint that honours DryRun`
        ),
        false
      )
    add(check, 'pass', `${action} answered (the endpoint ignores DryRun; nothing was launched)`)
    return true
  } catch (e) {
    const name = awsErrorName(e)
    if (name === 'DryRunOperation') return (add(check, 'pass', `${action} allowed (DryRun)`), true)
    if (name === 'UnauthorizedOperation' || name === 'AccessDenied')
      add(check, 'fail', `${action} denied (DryRun): ${name}`, policyFix(action))
    else if (CREDENTIAL_ERRORS.has(name)) add(check, 'fail', `no usable AWS credentials: ${formatError(e)}`, CREDENTIALS_FIX)
    else add(check, 'fail', `${action} (DryRun): ${name}: ${formatError(e)}`, 'see the error; the same call fails in the hook')
    return false
  }
}

/**
 * One Describe call (`action`) for something the config names; a failure is its own check line. A
 * denied call is the policy's to fix, not the config's.
 */
async function exists(add: Add, check: string, what: string, action: string, fix: string, call: () => Promise<number>): Promise<void> {
  try {
    const n = await call()
    if (n > 0) add(check, 'pass', `${what} found`)
    else add(check, 'fail', `${what} not found`, fix)
  } catch (e) {
    const name = awsErrorName(e)
    const denied = name === 'UnauthorizedOperation' || name === 'AccessDenied'
    add(check, 'fail', `${what}: ${name}: ${formatError(e)}`, denied ? policyFix(action) : fix)
  }
}

/** The credentials (a DryRun DescribeInstances) and, from its answer, the clock: false when the credentials fail. */
async function credentialsAndClock(
  add: Add,
  sdk: Awaited<ReturnType<typeof ec2Client>>['sdk'],
  client: Awaited<ReturnType<typeof ec2Client>>['client'],
  maxSkewSeconds: number
): Promise<boolean> {
  // This host's clock against AWS's from the first answer with a Date, in whole seconds.
  let skew: number | null = null
  watchAwsClock(client, (ms) => void (skew ??= Math.round(ms / 1000)))
  const ok = await dryRun(add, 'aws credentials', 'ec2:DescribeInstances', () =>
    client.send(new sdk.DescribeInstancesCommand({ DryRun: true, MaxResults: 5 }))
  )
  if (ok) clockCheck(add, skew, maxSkewSeconds)
  return ok
}

export async function ec2Checks(
  cfg: Ec2Config,
  runnerName: string,
  runnerTemp: string | undefined,
  maxSkewSeconds: number
): Promise<CheckResult[]> {
  const { out, add } = recorder(cfg.region)
  const { sdk, client } = await ec2Client(cfg)
  if (!(await credentialsAndClock(add, sdk, client, maxSkewSeconds))) return out
  const t = cfg.launchTemplate
  // The template's version as the hook reads it before each launch: the same call, so the same permission.
  if (t)
    await exists(
      add,
      'launch template',
      `launch template ${t.name ?? t.id} version ${t.version}`,
      'ec2:DescribeLaunchTemplateVersions',
      'create it or fix provider.launchTemplate',
      async () => {
        const r = await client.send(
          new sdk.DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: t.name, LaunchTemplateId: t.id, Versions: [t.version] })
        )
        return r.LaunchTemplateVersions?.length ?? 0
      }
    )
  if (cfg.imageId)
    await exists(add, 'image', `AMI ${cfg.imageId}`, 'ec2:DescribeImages', 'fix provider.imageId (AMIs are per region)', async () => {
      const r = await client.send(new sdk.DescribeImagesCommand({ ImageIds: [cfg.imageId!] }))
      return r.Images?.length ?? 0
    })
  for (const id of cfg.subnetIds)
    await exists(add, 'subnet', `subnet ${id}`, 'ec2:DescribeSubnets', 'fix provider.subnetIds', async () => {
      const r = await client.send(new sdk.DescribeSubnetsCommand({ SubnetIds: [id] }))
      return r.Subnets?.length ?? 0
    })
  for (const id of cfg.securityGroupIds)
    await exists(add, 'security group', `security group ${id}`, 'ec2:DescribeSecurityGroups', 'fix provider.securityGroupIds', async () => {
      const r = await client.send(new sdk.DescribeSecurityGroupsCommand({ GroupIds: [id] }))
      return r.SecurityGroups?.length ?? 0
    })
  // The first launch the hook would try, with its tags (a policy may require them), as a dry run:
  // the same request, its root volume and metadata options read from the template or image as the
  // hook reads them (a policy may require an encrypted root or IMDSv2 the hook adds itself).
  let basis: LaunchBasis
  try {
    basis = await launchBasisOf(cfg, sdk, client, (_what, fn) => fn())
  } catch (e) {
    add('launch', 'fail', `not tried: what the template or image decides could not be read: ${formatError(e)}`, 'see the checks above')
    return out
  }
  const jobId = newJobId()
  const tags = tagsFor(cfg, {
    // The runner's own owner id when run as it (RUNNER_TEMP set), for a policy narrowed to owner ids;
    // else one of the name alone, of the same shape.
    owner: runnerTemp ? ownerId(runnerName, dirname(runnerTemp)) : nameOwnerId(runnerName),
    jobId,
    runner: { runnerName, github: {} },
    runnerHost: hostname(),
    launchedAt: new Date()
  })
  const input = runInstancesInput(cfg, launchPlan(cfg)[0], basis, { token: jobId, userData: '', tags })
  await dryRun(add, 'launch', 'ec2:RunInstances', () => client.send(new sdk.RunInstancesCommand({ ...input, DryRun: true })))
  return out
}

/** The pool's group and members; the members the hook could lease now are returned for the SSH checks. */
export async function poolChecks(cfg: Ec2PoolConfig, maxSkewSeconds: number): Promise<{ checks: CheckResult[]; ready: Member[] }> {
  const { out, add } = recorder(cfg.region)
  const { sdk, client } = await ec2Client(cfg)
  if (!(await credentialsAndClock(add, sdk, client, maxSkewSeconds))) return { checks: out, ready: [] }
  const asg = autoScalingClient(cfg)
  try {
    const r = await asg.client.send(new asg.sdk.DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [cfg.autoScalingGroup] }))
    const g = r.AutoScalingGroups?.[0]
    if (g) {
      add(
        'auto scaling group',
        'pass',
        `${cfg.autoScalingGroup}: desired ${g.DesiredCapacity ?? 0}, max ${g.MaxSize ?? 0} (SetDesiredCapacity not tried: it has no dry run)`
      )
      await protectionCheck(add, cfg.autoScalingGroup, asg)
    } else add('auto scaling group', 'fail', `no group ${cfg.autoScalingGroup}`, 'create it (terraform/) or fix provider.autoScalingGroup')
  } catch (e) {
    const name = awsErrorName(e)
    add(
      'auto scaling group',
      'fail',
      `DescribeAutoScalingGroups: ${name}: ${formatError(e)}`,
      name === 'AccessDenied' ? policyFix('autoscaling:DescribeAutoScalingGroups') : 'see the error'
    )
  }
  let members: Member[] = []
  try {
    const r = await client.send(
      new sdk.DescribeInstancesCommand({
        Filters: [
          { Name: 'tag:aws:autoscaling:groupName', Values: [cfg.autoScalingGroup] },
          { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }
        ]
      })
    )
    members = membersOf(r, cfg)
  } catch (e) {
    add('members', 'fail', `DescribeInstances: ${awsErrorName(e)}: ${formatError(e)}`, 'see the error')
    return { checks: out, ready: [] }
  }
  const ready = members.filter((m) => m.state === 'running' && m.address && m.hostKey && m.user && !m.recycle)
  const count = (s: string): number => members.filter((m) => m.state === s).length
  const detail = `${members.length} member(s): ${ready.length} ready to check, ${count('pending')} pending, ${count('stopped')} stopped`
  if (members.length === 0) add('members', 'skip', `${detail} (nothing to check over SSH)`)
  else if (ready.length === 0 && count('running') > 0)
    add(
      'members',
      'fail',
      `${detail}; running ones lack an address, a host-key tag or a user`,
      "check the members' user data (it tags the host key)"
    )
  else add('members', 'pass', detail)
  return { checks: out, ready }
}

/** An instance id no instance has: SetInstanceProtection for it changes nothing. */
const NO_INSTANCE = 'i-00000000000000000'

/**
 * Whether this host may protect a job's member from scale-in. SetInstanceProtection has no dry
 * run: asked for an instance that is not in the group, AWS refuses it as such (ValidationError)
 * only once the policy allowed the call. Without it jobs run on unprotected members (a warning
 * each), and reap's guard for members it cannot reach does not cover them.
 */
async function protectionCheck(add: Add, group: string, asg: ReturnType<typeof autoScalingClient>): Promise<void> {
  const check = 'scale-in protection'
  const action = 'autoscaling:SetInstanceProtection'
  try {
    await asg.client.send(
      new asg.sdk.SetInstanceProtectionCommand({ AutoScalingGroupName: group, InstanceIds: [NO_INSTANCE], ProtectedFromScaleIn: false })
    )
    add(check, 'pass', `${action} allowed (asked for ${NO_INSTANCE}, which no instance is)`)
  } catch (e) {
    const name = awsErrorName(e)
    if (name === 'ValidationError') add(check, 'pass', `${action} allowed (asked for ${NO_INSTANCE}: refused as not in the group)`)
    else if (/AccessDenied|UnauthorizedOperation/.test(name))
      add(
        check,
        'fail',
        `${action} denied: ${name}: a job's member would not be protected from scale-in while it runs there`,
        policyFix(action)
      )
    else add(check, 'fail', `${action}: ${name || 'error'}: ${formatError(e)}`, 'see the error')
  }
}

/** Kind ec2: the account and the first launch; no machine exists between jobs to log into. */
export async function ec2Doctor(
  cfg: Ec2Config,
  runnerName: string,
  runnerTemp: string | undefined,
  maxSkewSeconds: number
): Promise<CheckResult[]> {
  return [
    ...(await ec2Checks(cfg, runnerName, runnerTemp, maxSkewSeconds)),
    { check: 'ssh', target: 'ec2 instances', status: 'skip', detail: 'kind ec2 launches a machine per job; doctor launches nothing' }
  ]
}

/** Kind ec2-pool: the account and group, then every ready member over SSH with the host key from its tag. */
export async function poolDoctor(cfg: Ec2PoolConfig, config: Pick<Config, 'remote'>, opts: MachineOptions): Promise<CheckResult[]> {
  const { checks, ready } = await poolChecks(cfg, opts.maxSkewSeconds)
  // SSH reads known_hosts from a file.
  const dir = ready.length ? mkdtempSync(join(tmpdir(), 'rch-doctor-')) : null
  try {
    const runs = ready.map((m) => {
      const knownHostsFile = join(dir!, `known_hosts-${m.id}`)
      writeFileSync(knownHostsFile, `${knownHostsName(m.address!.host, m.address!.port)} ${m.hostKey}\n`, { mode: 0o600 })
      const connect = { ...m.address!, user: m.user!, identityFile: cfg.identityFile, knownHostsFile }
      return machineChecks(jobMachine(config, connect), opts).then((r) => r.map((c) => ({ ...c, target: `${m.id} ${c.target}` })))
    })
    return [...checks, ...(await Promise.all(runs)).flat()]
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true })
  }
}
