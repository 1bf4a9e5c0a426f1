// The EC2 provider without EC2: the launch plan, the RunInstances input (AMI or template, IMDSv2,
// user data, tags at creation), the address choice, the error classifier, and acquire/terminate
// against a scripted SDK client (capacity moves on, throttling retries the same request, anything
// else fails at once; a terminate still goes out after a cancel).
import { TransportError } from '../../src/errors'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type * as Ec2 from '@aws-sdk/client-ec2'
import { ConfigSchema, type Ec2Config } from '../../src/config'
import { addressOf, describeAttempt, launchPlan, runInstancesInput, tagsFor, TAG_OWNER } from '../../src/providers/ec2-plan'
import { launchErrorAction, requestOutcome } from '../../src/providers/ec2-api'
import { Ec2Provider, terminateSignal } from '../../src/providers/ec2'
import { FleetRefused } from '../../src/fleet/gate'
import { NotAttachable } from '../../src/fleet/ledger'
import type { ProviderEnv } from '../../src/providers/provider'
import { readyMarker } from '../../src/providers/user-data'
import { cleanupTempDirs, tempDir } from './_helpers'
import { LocalRemote } from './local-remote'
import { recordingFleetGate } from '../helpers/fleet-gate'
import { runnerFacts, unexpectedScrub } from '../helpers/runner-facts'

/** The scripted client: each command is answered by `answer(name, input)`; every call is recorded. */
const fake = { calls: [] as { name: string; input: any }[], answer: (_name: string, _input: any): any => ({}) }
jest.mock('../../src/providers/ec2-api', () => {
  const actual = jest.requireActual('../../src/providers/ec2-api')
  const command = (name: string) =>
    class {
      readonly name = name
      constructor(readonly input: unknown) {}
    }
  const sdk = Object.fromEntries(
    [
      'RunInstances',
      'DescribeInstances',
      'DescribeImages',
      'DescribeLaunchTemplateVersions',
      'TerminateInstances',
      'DescribeInstanceTypes'
    ].map((n) => [`${n}Command`, command(n)])
  )
  const client = {
    // As the SDK does, an abortSignal given with the call ends an answer still awaited.
    send: async (cmd: { name: string; input: unknown }, opts?: { abortSignal?: AbortSignal }) => {
      fake.calls.push({ name: cmd.name, input: cmd.input })
      const answer = Promise.resolve(fake.answer(cmd.name, cmd.input))
      const signal = opts?.abortSignal
      if (!signal) return answer
      return Promise.race([
        answer,
        new Promise((_, reject) => {
          if (signal.aborted) reject(new Error('aborted'))
          signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true })
        })
      ])
    }
  }
  return { ...actual, ec2Client: async () => ({ sdk, client }) }
})

afterAll(cleanupTempDirs)

const awsError = (name: string, status = 400): Error =>
  Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } })

function ec2Config(provider: Record<string, unknown> = {}, workRoot = '/srv/rch'): Ec2Config {
  const c = ConfigSchema.parse({ provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-0123', ...provider }, remote: { workRoot } })
  return c.provider as Ec2Config
}

const runner = {
  runnerName: 'runner-7',
  github: { repository: 'acme/widgets', workflow: 'CI', runId: '42', runAttempt: '1', job: 'build' }
}

describe('the launch plan', () => {
  test('markets, then types, then subnets (subnets vary fastest); spot first with the fallback', () => {
    const plan = launchPlan(
      ec2Config({ market: 'spot-with-on-demand-fallback', instanceTypes: ['m7i.large', 'm6i.large'], subnetIds: ['subnet-a', 'subnet-b'] })
    )
    expect(plan.map(describeAttempt)).toEqual([
      'spot m7i.large in subnet-a',
      'spot m7i.large in subnet-b',
      'spot m6i.large in subnet-a',
      'spot m6i.large in subnet-b',
      'on-demand m7i.large in subnet-a',
      'on-demand m7i.large in subnet-b',
      'on-demand m6i.large in subnet-a',
      'on-demand m6i.large in subnet-b'
    ])
  })

  test('no types or subnets: one entry that leaves the choice to the template or EC2', () => {
    expect(launchPlan(ec2Config()).map(describeAttempt)).toEqual(['on-demand (template type)'])
    expect(launchPlan(ec2Config({ market: 'spot' })).map(describeAttempt)).toEqual(['spot (template type)'])
  })
})

describe('the RunInstances input', () => {
  const tags = [{ Key: TAG_OWNER, Value: 'o' }]
  const x = { token: 't'.repeat(48), userData: 'dXNlcmRhdGE=', tags }

  test('from an AMI: ImageId, IMDSv2 required, the encrypted root volume, user data, tags on instance, volume and ENI at creation', () => {
    const cfg = ec2Config({ instanceTypes: ['m7i.large'], subnetIds: ['subnet-a'], securityGroupIds: ['sg-1'] })
    const input = runInstancesInput(cfg, launchPlan(cfg)[0], { rootDevice: '/dev/xvda', rootSizeGiB: 8, templateSetsMetadata: false }, x)
    expect(input).toEqual({
      MinCount: 1,
      MaxCount: 1,
      ClientToken: x.token,
      UserData: x.userData,
      TagSpecifications: [
        { ResourceType: 'instance', Tags: tags },
        { ResourceType: 'volume', Tags: tags },
        { ResourceType: 'network-interface', Tags: tags }
      ],
      ImageId: 'ami-0123',
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' },
      InstanceInitiatedShutdownBehavior: 'terminate',
      DisableApiTermination: false,
      InstanceType: 'm7i.large',
      SubnetId: 'subnet-a',
      SecurityGroupIds: ['sg-1'],
      BlockDeviceMappings: [
        { DeviceName: '/dev/xvda', Ebs: { Encrypted: true, DeleteOnTermination: true, VolumeType: 'gp3', VolumeSize: 8 } }
      ]
    })
  })

  test('from a launch template: no ImageId; the template decides metadata and volumes when it states them; shutdown still terminates', () => {
    const cfg = ec2Config({ imageId: undefined, launchTemplate: { name: 'ci' }, rootVolume: { sizeGiB: 50 } })
    const input = runInstancesInput(cfg, launchPlan(cfg)[0], { rootDevice: null, templateSetsMetadata: true }, x)
    expect(input.LaunchTemplate).toEqual({ LaunchTemplateName: 'ci', LaunchTemplateId: undefined, Version: '$Latest' })
    expect(input).not.toHaveProperty('ImageId')
    expect(input).not.toHaveProperty('MetadataOptions')
    expect(input).not.toHaveProperty('BlockDeviceMappings')
    expect(input).not.toHaveProperty('InstanceType')
    expect(input.InstanceInitiatedShutdownBehavior).toBe('terminate')
    // a template's termination protection would fail the hook's and reap's terminates
    expect(input.DisableApiTermination).toBe(false)
    // a template without MetadataOptions gets IMDSv2 required
    expect(runInstancesInput(cfg, launchPlan(cfg)[0], { rootDevice: null, templateSetsMetadata: false }, x).MetadataOptions).toMatchObject({
      HttpTokens: 'required'
    })
  })

  test('spot: a one-time request that terminates on interruption; rootVolume.sizeGiB wins over the image size', () => {
    const cfg = ec2Config({ market: 'spot', rootVolume: { sizeGiB: 100, type: 'io2' } })
    const input = runInstancesInput(cfg, launchPlan(cfg)[0], { rootDevice: '/dev/sda1', rootSizeGiB: 8, templateSetsMetadata: false }, x)
    expect(input.InstanceMarketOptions).toEqual({
      MarketType: 'spot',
      SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' }
    })
    expect(input.BlockDeviceMappings![0].Ebs).toMatchObject({ VolumeSize: 100, VolumeType: 'io2', Encrypted: true })
  })

  test('a spot launch tags its Spot request at creation too; an on-demand launch names no such type (EC2 would fail it)', () => {
    const cfg = ec2Config({ market: 'spot-with-on-demand-fallback' })
    const [spot, onDemand] = launchPlan(cfg)
    const types = (at: typeof spot) => runInstancesInput(cfg, at, { rootDevice: null, templateSetsMetadata: false }, x).TagSpecifications!
    expect(types(spot)).toEqual(
      ['instance', 'volume', 'network-interface', 'spot-instances-request'].map((ResourceType) => ({ ResourceType, Tags: tags }))
    )
    expect(types(onDemand).map((t) => t.ResourceType)).toEqual(['instance', 'volume', 'network-interface'])
  })
})

describe('tags', () => {
  const launchedAt = new Date('2026-12-01T10:00:00.000Z')
  const base = { owner: 'o'.repeat(16), jobId: 'j'.repeat(16), runner, runnerHost: 'runner-host-1', launchedAt }
  const asMap = (t: Ec2.Tag[]): Record<string, string> => Object.fromEntries(t.map((x) => [x.Key!, x.Value!]))

  test('ownership, job, run and lifetime tags; the operator cannot override ours; Name defaults to rch-<jobId>', () => {
    const t = asMap(tagsFor(ec2Config({ maxLifetimeMinutes: 90, tags: { team: 'platform', [TAG_OWNER]: 'forged' } }), base))
    expect(t).toEqual({
      team: 'platform',
      [TAG_OWNER]: base.owner,
      'remote-container-hooks:job-id': base.jobId,
      'remote-container-hooks:runner': 'runner-7',
      'remote-container-hooks:runner-host': 'runner-host-1',
      'remote-container-hooks:repository': 'acme/widgets',
      'remote-container-hooks:workflow': 'CI',
      'remote-container-hooks:run-id': '42',
      'remote-container-hooks:run-attempt': '1',
      'remote-container-hooks:job': 'build',
      'remote-container-hooks:launched-at': '2026-12-01T10:00:00.000Z',
      'remote-container-hooks:expires-at': '2026-12-01T11:30:00.000Z',
      Name: `rch-${base.jobId}`
    })
  })

  test("the operator's Name is kept; missing run facts are left out; values are cut to EC2's 256 characters", () => {
    const t = asMap(tagsFor(ec2Config({ tags: { Name: 'ci-box' } }), { ...base, runner: { runnerName: 'r'.repeat(300), github: {} } }))
    expect(t.Name).toBe('ci-box')
    expect(t).not.toHaveProperty('remote-container-hooks:repository')
    expect(t['remote-container-hooks:runner']).toBe('r'.repeat(256))
  })

  test('a value is cut at 256 characters, never inside one (a lone surrogate cannot be URL-encoded: RunInstances fails)', () => {
    // A workflow name of 255 letters and then emoji: the 256th character is the first emoji, whole.
    const workflow = 'w'.repeat(255) + '🚀🚀'
    const t = asMap(tagsFor(ec2Config(), { ...base, runner: { runnerName: 'r', github: { workflow } } }))
    const cut = t['remote-container-hooks:workflow']
    expect(cut).toBe('w'.repeat(255) + '🚀')
    expect(() => encodeURIComponent(cut)).not.toThrow()
    // control: a short value is kept whole
    expect(
      asMap(tagsFor(ec2Config(), { ...base, runner: { runnerName: 'r', github: { workflow: 'CI 🚀' } } }))[
        'remote-container-hooks:workflow'
      ]
    ).toBe('CI 🚀')
  })
})

describe('the address to SSH to (connect.address)', () => {
  const inst: Ec2.Instance = {
    PrivateIpAddress: '10.0.0.5',
    PublicIpAddress: '203.0.113.9',
    PublicDnsName: 'ec2-203-0-113-9.compute.amazonaws.com',
    Tags: [
      { Key: 'ep', Value: '127.0.0.1:2299' },
      { Key: 'v6', Value: '[2001:db8::1]:2200' },
      { Key: 'plain', Value: 'bastion.example' }
    ]
  }
  test.each([
    ['private-ip', { host: '10.0.0.5', port: 22 }],
    ['public-ip', { host: '203.0.113.9', port: 22 }],
    ['public-dns', { host: 'ec2-203-0-113-9.compute.amazonaws.com', port: 22 }],
    ['tag:ep', { host: '127.0.0.1', port: 2299 }],
    ['tag:v6', { host: '2001:db8::1', port: 2200 }],
    ['tag:plain', { host: 'bastion.example', port: 22 }],
    ['tag:missing', null]
  ])('%s', (address, want) => {
    expect(addressOf(inst, ec2Config({ connect: { address } }))).toEqual(want)
  })

  // The tag is written by something other than the hook, maybe the instance: a value ssh, rsync or a
  // known_hosts line would read as more than a host is none (the wait goes on, a pool member is not used).
  test.each([
    '-oProxyCommand=touch /tmp/x',
    'host name',
    'host\n[evil]:22 ssh-ed25519 AAAA',
    '%d.example',
    '10.0.0.5:0',
    '10.0.0.5:65536',
    '10.0.0.5:22:22',
    '[2001:db8::1]:99999'
  ])('a tag value that is no host[:port] counts as none: %j', (value) => {
    expect(addressOf({ Tags: [{ Key: 'ep', Value: value }] }, ec2Config({ connect: { address: 'tag:ep' } }))).toBeNull()
    // control: the same tag with a plain value is read
    expect(addressOf({ Tags: [{ Key: 'ep', Value: 'h.example:2200' }] }, ec2Config({ connect: { address: 'tag:ep' } }))).toEqual({
      host: 'h.example',
      port: 2200
    })
  })

  test('none yet while the instance has no such address', () => {
    expect(addressOf({}, ec2Config({ connect: { address: 'public-ip' } }))).toBeNull()
    expect(addressOf({ PrivateIpAddress: '10.0.0.5' }, ec2Config({ connect: { address: 'public-dns' } }))).toBeNull()
  })
})

describe('the retry classifier (by error name and status, never the message)', () => {
  test.each([
    ['InsufficientInstanceCapacity', 500, 'next'],
    ['InsufficientSpotCapacity', 400, 'next'],
    ['VcpuLimitExceeded', 400, 'next'],
    ['RequestLimitExceeded', 503, 'retry'],
    ['ThrottlingException', 400, 'retry'],
    ['InternalError', 500, 'retry'],
    ['SomethingNew', 503, 'retry'],
    ['AuthFailure', 401, 'fail'],
    ['UnauthorizedOperation', 403, 'fail'],
    ['InvalidParameterValue', 400, 'fail'],
    ['InvalidAMIID.NotFound', 400, 'fail']
  ])('%s (%i) -> %s', (name, status, want) => {
    expect(launchErrorAction(awsError(name, status))).toBe(want)
  })

  test('a message that reads like capacity does not make an error a capacity error', () => {
    expect(
      launchErrorAction(
        Object.assign(new Error('InsufficientInstanceCapacity: throttled, retry'), {
          name: 'AuthFailure',
          $metadata: { httpStatusCode: 401 }
        })
      )
    ).toBe('fail')
  })
})

test('what a failed request says of whether it ran: refused, throttled, or unknown (a server error or no answer)', () => {
  expect(requestOutcome(awsError('InsufficientInstanceCapacity', 500))).toBe('refused')
  expect(requestOutcome(awsError('UnauthorizedOperation', 403))).toBe('refused')
  expect(requestOutcome(awsError('RequestLimitExceeded', 503))).toBe('throttled')
  expect(requestOutcome(awsError('InternalError', 500))).toBe('unknown')
  expect(requestOutcome(awsError('RequestTimeout', 400))).toBe('unknown')
  expect(requestOutcome(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe('unknown')
  expect(requestOutcome(new TypeError('fetch failed'))).toBe('unknown')
})

describe('acquire against a scripted EC2', () => {
  const VCPUS: Record<string, number> = { 'm7i.large': 2, 'm6i.large': 2, 'c7i.4xlarge': 16, 'm1.small': 1 }
  /** `more` answers first (undefined: the defaults below). */
  function setup(
    provider: Record<string, unknown>,
    runInstances: (input: any, n: number) => any,
    more?: (name: string, input: any) => any
  ) {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    require('node:fs').mkdirSync(workRoot)
    writeFileSync(readyMarker(workRoot), '')
    const cfg = ec2Config(provider, workRoot)
    fake.calls = []
    let runs = 0
    fake.answer = (name, input) => {
      const own = more?.(name, input)
      if (own !== undefined) return own
      if (name === 'DescribeInstanceTypes')
        return { InstanceTypes: input.InstanceTypes.map((t: string) => ({ InstanceType: t, VCpuInfo: { DefaultVCpus: VCPUS[t] } })) }
      if (name === 'DescribeImages')
        return { Images: [{ RootDeviceName: '/dev/xvda', BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8 } }] }] }
      if (name === 'DescribeInstances')
        return input.Filters
          ? { Reservations: [] }
          : {
              Reservations: [
                { Instances: [{ InstanceId: input.InstanceIds[0], State: { Name: 'running' }, PrivateIpAddress: '10.0.0.5' }] }
              ]
            }
      if (name === 'RunInstances') return runInstances(input, ++runs)
      if (name === 'TerminateInstances') return {}
      throw new Error(`unexpected ${name}`)
    }
    const logged: string[] = []
    const fleet = recordingFleetGate()
    const env: ProviderEnv = {
      runner: runnerFacts(runner),
      signal: new AbortController().signal,
      log: { debug: () => undefined, progress: (m) => void logged.push(m), warn: (m) => void logged.push(`warn: ${m}`) },
      connect: async () => new LocalRemote(dir),
      discard: async (_c, r) => r.close(),
      fleet,
      scrub: unexpectedScrub
    }
    return {
      provider: new Ec2Provider(cfg, workRoot),
      env,
      fleet,
      logged,
      job: { jobId: '0123456789abcdef', owner: 'fedcba9876543210', localDir: dir },
      runs: () => fake.calls.filter((c) => c.name === 'RunInstances').map((c) => c.input)
    }
  }
  const launched = (id: string) => ({ Instances: [{ InstanceId: id }] })

  test('a capacity error moves on to the next candidate with a new token; the lease is the instance, without static-host fields', async () => {
    const s = setup({ instanceTypes: ['m7i.large', 'm6i.large'] }, (_i, n) => {
      if (n === 1) throw awsError('InsufficientInstanceCapacity', 500)
      return launched('i-0123456789abcdef0')
    })
    const got = await s.provider.acquire(s.job, s.env)
    const runs = s.runs()
    expect(runs.map((r) => r.InstanceType)).toEqual(['m7i.large', 'm6i.large'])
    expect(runs[0].ClientToken).not.toBe(runs[1].ClientToken)
    expect(s.logged).toContain('no capacity for on-demand m7i.large (InsufficientInstanceCapacity), trying the next option')
    expect(got.lease).toEqual({
      kind: 'ec2',
      instanceId: 'i-0123456789abcdef0',
      // the region it was launched in: the state is refused once provider.region names another
      region: 'eu-west-1',
      reservation: 'res-2',
      connect: {
        host: '10.0.0.5',
        port: 22,
        user: 'ec2-user',
        identityFile: `${s.job.localDir}/id_ed25519`,
        knownHostsFile: `${s.job.localDir}/known_hosts`
      }
    })
    expect(s.provider.describe(got.lease)).toBe('10.0.0.5:22 (i-0123456789abcdef0)')
    got.remote.close()
  })

  test('SSH during boot: a refused login is waited out (the key may come late in the boot), a wrong host key is not', async () => {
    const s = setup({}, () => launched('i-0123456789abcdef0'))
    const remote = s.env.connect
    let tries = 0
    s.env.connect = async (c) => {
      if (++tries <= 2) throw new TransportError('cannot connect: All configured authentication methods failed', 'auth')
      return remote(c)
    }
    const got = await s.provider.acquire(s.job, s.env)
    expect(tries).toBe(3)
    got.remote.close()

    const t = setup({}, () => launched('i-0123456789abcdef1'))
    let hk = 0
    t.env.connect = async () => {
      hk++
      throw new TransportError('host key verification failed for 10.0.0.5:22: the host key does not match the pinned key', 'hostkey')
    }
    await expect(t.provider.acquire(t.job, t.env)).rejects.toThrow('host key verification failed')
    expect(hk).toBe(1)
  })

  // A connect to a booting instance can hang for timeouts.connectSeconds (20 s); the runner kills the
  // hook 10 s after its SIGINT, so the undo's terminate must not wait for the connect to give up.
  test('a cancel during an SSH connect that hangs ends the acquire at once and terminates the instance', async () => {
    const s = setup({}, () => launched('i-0123456789abcdef0'))
    const cancel = new AbortController()
    s.env.signal = cancel.signal
    let late: Promise<unknown> = Promise.resolve()
    const closed: string[] = []
    s.env.discard = async () => void closed.push('late connection')
    s.env.connect = () => {
      // The cancel comes once this connect is under way; the connect itself gives up only 3 s later.
      setImmediate(() => cancel.abort(new Error('cancelled by the runner')))
      late = new Promise((r) => setTimeout(r, 3000)).then(() => new LocalRemote(s.job.localDir))
      return late as Promise<LocalRemote>
    }
    const t0 = Date.now()
    await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('cancelled by the runner')
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
    // positive control: the connect was under way, and the connection it gave after the cancel is closed
    await late
    await new Promise((r) => setImmediate(r))
    expect(closed).toEqual(['late connection'])
  })

  describe('the boot-setup check reads its answer, not the shell around it', () => {
    test('a start-up file that prints text does not read as a boot never finished', async () => {
      const s = setup({ acquireTimeoutSeconds: 10 }, () => launched('i-0123456789abcdef0'))
      s.env.connect = async () => new LocalRemote(s.job.localDir, { before: 'Welcome to the build VM\\n' })
      const t0 = Date.now()
      const got = await s.provider.acquire(s.job, s.env)
      expect(Date.now() - t0).toBeLessThan(5000)
      got.remote.close()
    })

    test('a check the shell cannot run (exit status, stderr) fails at once with its words, the instance terminated', async () => {
      const s = setup({ acquireTimeoutSeconds: 10 }, () => launched('i-0123456789abcdef0'))
      const local = (): LocalRemote => new LocalRemote(s.job.localDir)
      // The SSH user's login shell refuses to run commands (nologin), as on a wrongly set provider.user.
      s.env.connect = async () => {
        const r = local()
        return {
          openExec: () => r.openExec("echo 'This account is currently not available.' >&2; exit 1"),
          openSocket: (p: string) => r.openSocket(p),
          close: () => undefined
        }
      }
      const t0 = Date.now()
      const err = (await s.provider.acquire(s.job, s.env).catch((e: unknown) => e)) as Error
      expect(Date.now() - t0).toBeLessThan(5000)
      expect(err.message).toContain('This account is currently not available.')
      expect(err.message).not.toContain('cloud-init')
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
      expect(s.fleet.calls.map((c) => c.op)).toEqual(['reserve', 'attach', 'settle'])
    })

    test('positive control: a missing marker is still waited for, up to acquireTimeoutSeconds', async () => {
      const s = setup({ acquireTimeoutSeconds: 10 }, () => launched('i-0123456789abcdef0'))
      require('node:fs').rmSync(readyMarker(join(s.job.localDir, 'work')))
      await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('boot setup (cloud-init user data) not finished after 10 s')
    }, 20_000)
  })

  test('throttling retries the same request with the same token', async () => {
    const s = setup({ instanceTypes: ['m7i.large', 'm6i.large'] }, (_i, n) => {
      if (n <= 2) throw awsError('RequestLimitExceeded', 503)
      return launched('i-0123456789abcdef1')
    })
    const got = await s.provider.acquire(s.job, s.env)
    const runs = s.runs()
    expect(runs.map((r) => r.InstanceType)).toEqual(['m7i.large', 'm7i.large', 'm7i.large'])
    expect(new Set(runs.map((r) => r.ClientToken)).size).toBe(1)
    got.remote.close()
  })

  test('an authorization or validation error fails at once: no other candidate is tried, nothing to terminate', async () => {
    for (const name of ['UnauthorizedOperation', 'InvalidParameterValue']) {
      const s = setup({ instanceTypes: ['m7i.large', 'm6i.large'], subnetIds: ['subnet-a', 'subnet-b'] }, () => {
        throw awsError(name, name === 'UnauthorizedOperation' ? 403 : 400)
      })
      await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow(
        `RunInstances (on-demand m7i.large in subnet-a) failed: ${name}: ${name} happened`
      )
      expect(s.runs()).toHaveLength(1)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toEqual([])
    }
  })

  describe('the fleet ledger around each launch (recording gate)', () => {
    const tagOf = (input: any, key: string) => (input.TagSpecifications as any[]).map((t) => t.Tags.find((x: any) => x.Key === key)?.Value)
    test('each attempt is reserved with its type and vCPUs; one that launched nothing is settled unlaunched before the next; the launched one is attached and tagged', async () => {
      const s = setup({ instanceTypes: ['c7i.4xlarge', 'm6i.large'], maxLifetimeMinutes: 90 }, (_i, n) => {
        if (n === 1) throw awsError('InsufficientInstanceCapacity', 500)
        return launched('i-0123456789abcdef0')
      })
      s.env.runner = runnerFacts({ ...runner, host: { hostname: 'runner-host-9', name: 'runner-host-9', key: '0a1b2c3d4e5f6071' } })
      const got = await s.provider.acquire(s.job, s.env)
      got.remote.close()
      // The runner host's tag is the hook's name for it (the provider reads no hostname of its own).
      expect(s.runs().map((r) => tagOf(r, 'remote-container-hooks:runner-host'))[1]).toEqual([
        'runner-host-9',
        'runner-host-9',
        'runner-host-9'
      ])
      expect(s.fleet.calls).toEqual([
        { op: 'reserve', spec: { instanceType: 'c7i.4xlarge', vcpus: 16, maxLifetimeMinutes: 90 } },
        { op: 'settle', id: 'res-1', opts: { launched: false } },
        { op: 'reserve', spec: { instanceType: 'm6i.large', vcpus: 2, maxLifetimeMinutes: 90 } },
        { op: 'attach', id: 'res-2', instanceId: 'i-0123456789abcdef0' }
      ])
      // The reservation is on instance, volume and ENI from creation (reap finds it before attach).
      expect(s.runs().map((r) => tagOf(r, 'remote-container-hooks:reservation'))).toEqual([
        ['res-1', 'res-1', 'res-1'],
        ['res-2', 'res-2', 'res-2']
      ])
      expect(got.lease.reservation).toBe('res-2')
      expect(Object.keys(got.timings ?? {})).toEqual(['acquire', 'boot', 'ssh'])
    })

    test("a refusal fails the job with the ledger's line before anything is launched", async () => {
      const s = setup({ instanceTypes: ['m7i.large'] }, () => launched('i-0123456789abcdef0'))
      s.env.fleet = Object.assign(recordingFleetGate({ refuse: 'fleet cap reached: 3 of 3 instances' }), {})
      const err = await s.provider.acquire(s.job, s.env).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(FleetRefused)
      expect((err as Error).message).toBe('fleet cap reached: 3 of 3 instances')
      expect(s.runs()).toEqual([])
    })

    test('the type the launch template names is the one reserved when provider.instanceTypes names none', async () => {
      const s = setup(
        { imageId: undefined, launchTemplate: { name: 'lt' } },
        () => launched('i-0123456789abcdef0'),
        (name) =>
          name === 'DescribeLaunchTemplateVersions'
            ? { LaunchTemplateVersions: [{ LaunchTemplateData: { InstanceType: 'c7i.4xlarge', ImageId: 'ami-0123' } }] }
            : undefined
      )
      const got = await s.provider.acquire(s.job, s.env)
      got.remote.close()
      expect(s.fleet.calls[0]).toEqual({ op: 'reserve', spec: { instanceType: 'c7i.4xlarge', vcpus: 16, maxLifetimeMinutes: 360 } })
    })

    test('a failure after the launch terminates the instance, then settles its reservation', async () => {
      const s = setup({ instanceTypes: ['m7i.large'] }, () => launched('i-0123456789abcdef0'))
      s.env.connect = async () => {
        throw new TransportError('host key verification failed for 10.0.0.5:22: the host key does not match the pinned key', 'hostkey')
      }
      await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('host key verification failed')
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
      expect(s.fleet.calls.map((c) => c.op)).toEqual(['reserve', 'attach', 'settle'])
      expect(s.fleet.calls[2]).toEqual({ op: 'settle', id: 'res-1', opts: undefined })
    })

    // The instance carries its reservation's tag from creation, by which reap attaches it: a ledger
    // that cannot answer at the attach (throttled, slow) must not end a launched job.
    test('an attach the ledger fails is a warning: the job gets its instance; one the ledger refuses (settled meanwhile) fails it, terminated', async () => {
      const s = setup({ instanceTypes: ['m7i.large'] }, () => launched('i-0123456789abcdef0'))
      s.env.fleet = { ...s.fleet, attach: () => Promise.reject(new Error('fleet.ledger (dynamodb): cannot attach: throttled')) }
      const got = await s.provider.acquire(s.job, s.env)
      got.remote.close()
      expect(got.lease.instanceId).toBe('i-0123456789abcdef0')
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(0)
      expect(s.logged).toContainEqual(
        expect.stringMatching(
          /^warn: could not attach i-0123456789abcdef0 to fleet reservation res-1 \(reap attaches it by its tag\): .*throttled/
        )
      )
      // Control: a reservation already settled cannot count the instance.
      const t = setup({ instanceTypes: ['m7i.large'] }, () => launched('i-0123456789abcdef0'))
      t.env.fleet = { ...t.fleet, attach: (id: string) => Promise.reject(new NotAttachable(id)) }
      await expect(t.provider.acquire(t.job, t.env)).rejects.toThrow('fleet ledger: reservation res-1 cannot be attached')
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
    })

    describe('a RunInstances whose answer was lost, given up on (here by a cancel during its retry pause)', () => {
      const cancelledAfterLostAnswer = (found: any[]) => {
        const cancel = new AbortController()
        const s = setup(
          { instanceTypes: ['m7i.large'] },
          () => {
            // EC2 launched it, but the reply never came back; the runner cancels before the retry.
            setImmediate(() => cancel.abort(new Error('cancelled by the runner')))
            throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
          },
          (name, input) =>
            name === 'DescribeInstances' && input.Filters?.some((f: any) => f.Name === 'client-token')
              ? { Reservations: [{ Instances: found }] }
              : undefined
        )
        s.env.signal = cancel.signal
        return s
      }

      test('the instance its token launched is found and terminated, and its reservation settled with its real time', async () => {
        const s = cancelledAfterLostAnswer([
          { InstanceId: 'i-0123456789abcdef0', State: { Name: 'pending' }, LaunchTime: new Date(Date.UTC(2026, 0, 2, 3)) }
        ])
        await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('cancelled by the runner')
        const token = s.runs()[0].ClientToken
        expect(fake.calls.filter((c) => c.name === 'DescribeInstances' && c.input.Filters?.[0]?.Name === 'client-token')).toEqual([
          { name: 'DescribeInstances', input: { Filters: [{ Name: 'client-token', Values: [token] }] } }
        ])
        expect(fake.calls.filter((c) => c.name === 'TerminateInstances').map((c) => c.input)).toEqual([
          { InstanceIds: ['i-0123456789abcdef0'] }
        ])
        expect(s.fleet.calls).toEqual([
          { op: 'reserve', spec: { instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 360 } },
          { op: 'attach', id: 'res-1', instanceId: 'i-0123456789abcdef0', at: Date.UTC(2026, 0, 2, 3) },
          { op: 'settle', id: 'res-1', opts: undefined }
        ])
      })

      test('none visible yet: the reservation is not settled as unlaunched (it may run), but left to reap, with a warning', async () => {
        const s = cancelledAfterLostAnswer([])
        await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('cancelled by the runner')
        expect(s.fleet.calls.map((c) => c.op)).toEqual(['reserve'])
        expect(s.logged.filter((l) => l.includes('left to reap'))).toHaveLength(1)
      })

      test('positive control: a request refused outright (capacity) launched nothing and is settled unlaunched at once', async () => {
        const s = setup({ instanceTypes: ['m7i.large'] }, () => {
          throw awsError('InsufficientInstanceCapacity', 500)
        })
        await expect(s.provider.acquire(s.job, s.env)).rejects.toThrow('no EC2 capacity')
        expect(s.fleet.calls.map((c) => c.op)).toEqual(['reserve', 'settle'])
        expect(fake.calls.filter((c) => c.name === 'DescribeInstances' && c.input.Filters?.[0]?.Name === 'client-token')).toEqual([])
      })
    })

    test('a cancel while RunInstances is in flight: its answer is awaited, and the instance it names is terminated and its reservation settled', async () => {
      const cancel = new AbortController()
      let answer: (v: unknown) => void = () => undefined
      const s = setup(
        { instanceTypes: ['m7i.large'] },
        // EC2 is still answering when the runner cancels: the request is not aborted (its answer names the instance).
        () => new Promise((r) => (answer = r))
      )
      s.env.signal = cancel.signal
      const acquiring = s.provider.acquire(s.job, s.env)
      while (!s.runs().length) await new Promise((r) => setImmediate(r))
      cancel.abort(new Error('cancelled by the runner'))
      answer(launched('i-0123456789abcdef0'))
      await expect(acquiring).rejects.toThrow('cancelled by the runner')
      expect(s.runs()).toHaveLength(1)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances').map((c) => c.input)).toEqual([
        { InstanceIds: ['i-0123456789abcdef0'] }
      ])
      expect(s.fleet.calls.map((c) => [c.op, c.id])).toEqual([
        ['reserve', undefined],
        ['attach', 'res-1'],
        ['settle', 'res-1']
      ])
    })

    test('release settles after the terminate succeeded, and leaves the reservation unsettled when it failed', async () => {
      const s = setup({}, () => launched('i-0123456789abcdef0'))
      const lease = {
        kind: 'ec2' as const,
        instanceId: 'i-0123456789abcdef0',
        reservation: 'res-9',
        connect: { host: '10.0.0.5', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
      }
      await s.provider.release(lease, null, s.job.jobId, s.env)
      expect(s.fleet.calls).toEqual([{ op: 'settle', id: 'res-9', opts: undefined }])

      const f = setup(
        {},
        () => launched('i-0123456789abcdef0'),
        (name) => {
          if (name === 'TerminateInstances') throw awsError('UnauthorizedOperation', 403)
          return undefined
        }
      )
      await expect(f.provider.release(lease, null, f.job.jobId, f.env)).rejects.toThrow('UnauthorizedOperation')
      expect(f.fleet.calls).toEqual([])
    })

    // The operator's keep tag, set on a job's instance while it runs (to look at it afterwards), or on
    // an earlier job's leftover: reap leaves such an instance alone, and so does the hook.
    test('an instance the operator tagged keep is left running at release and by a cleanup without state; a keep that cannot be read does not keep it', async () => {
      const KEEP = { Key: 'remote-container-hooks:keep', Value: 'debugging' }
      const kept = (name: string, input: any) =>
        name === 'DescribeInstances'
          ? input.InstanceIds
            ? { Reservations: [{ Instances: [{ InstanceId: input.InstanceIds[0], Tags: [KEEP] }] }] }
            : {
                Reservations: [
                  {
                    Instances: [
                      { InstanceId: 'i-0000000000000000a', Tags: [KEEP] },
                      { InstanceId: 'i-0000000000000000b', Tags: [] }
                    ]
                  }
                ]
              }
          : undefined
      const lease = {
        kind: 'ec2' as const,
        instanceId: 'i-0123456789abcdef0',
        reservation: 'res-9',
        connect: { host: '10.0.0.5', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
      }
      const s = setup({}, () => launched('i-0123456789abcdef0'), kept)
      await s.provider.release(lease, null, s.job.jobId, s.env)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toEqual([])
      expect(fake.calls.find((c) => c.name === 'DescribeInstances')?.input).toEqual({
        InstanceIds: ['i-0123456789abcdef0'],
        Filters: [{ Name: 'tag-key', Values: ['remote-container-hooks:keep'] }]
      })
      // Still running, so still counted: its reservation stays open.
      expect(s.fleet.calls).toEqual([])
      expect(s.logged).toContain(
        'i-0123456789abcdef0 carries remote-container-hooks:keep: left running (its fleet reservation stays open until it ends; terminate it by hand when done)'
      )
      const report = await s.provider.cleanupOrphans('fedcba9876543210', s.env)
      expect(report).toEqual({ released: ['i-0000000000000000b'], unreachable: [] })
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances').map((c) => c.input)).toEqual([
        { InstanceIds: ['i-0000000000000000b'] }
      ])

      // Control: without the tag the same release terminates and settles.
      const plain = setup({}, () => launched('i-0123456789abcdef0'))
      await plain.provider.release(lease, null, plain.job.jobId, plain.env)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
      expect(plain.fleet.calls).toEqual([{ op: 'settle', id: 'res-9', opts: undefined }])

      // After the runner's cancel the look is one short try: an EC2 that holds it back does not keep the terminate waiting.
      const held = setup(
        {},
        () => launched('i-0123456789abcdef0'),
        (name, input) => (name === 'DescribeInstances' && input.InstanceIds ? new Promise(() => undefined) : undefined)
      )
      const cancel = new AbortController()
      cancel.abort('SIGINT')
      const t0 = Date.now()
      await held.provider.release(lease, null, held.job.jobId, { ...held.env, signal: cancel.signal })
      expect(Date.now() - t0).toBeLessThan(4000)
      expect(fake.calls.filter((c) => c.name === 'DescribeInstances')).toHaveLength(1)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)

      // A look that fails does not keep the instance: it is terminated as before.
      const blind = setup(
        {},
        () => launched('i-0123456789abcdef0'),
        (name, input) => {
          if (name === 'DescribeInstances' && input.InstanceIds) throw awsError('UnauthorizedOperation', 403)
          return undefined
        }
      )
      await blind.provider.release(lease, null, blind.job.jobId, blind.env)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
      expect(blind.fleet.calls).toEqual([{ op: 'settle', id: 'res-9', opts: undefined }])
    })

    test('a ledger that cannot be written at release is a warning: the terminate counts, the release succeeds', async () => {
      const s = setup({}, () => launched('i-0123456789abcdef0'))
      s.env.fleet = {
        ...s.fleet,
        settle: async () => Promise.reject(new Error('fleet.ledger (dynamodb): cannot settle reservation res-9: down'))
      }
      const lease = {
        kind: 'ec2' as const,
        instanceId: 'i-0123456789abcdef0',
        reservation: 'res-9',
        connect: { host: '10.0.0.5', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
      }
      await s.provider.release(lease, null, s.job.jobId, s.env)
      expect(fake.calls.filter((c) => c.name === 'TerminateInstances')).toHaveLength(1)
      expect(s.logged).toContain(
        'warn: could not settle the fleet ledger reservation res-9 of i-0123456789abcdef0: fleet.ledger (dynamodb): cannot settle reservation res-9: down'
      )
    })

    test('cleanup without state attaches (at its launch time) and settles the reservation each terminated instance carries on its tag', async () => {
      const s = setup(
        {},
        () => launched('i-0123456789abcdef0'),
        (name, input) =>
          name === 'DescribeInstances' && input.Filters
            ? {
                Reservations: [
                  {
                    Instances: [
                      {
                        InstanceId: 'i-0000000000000000a',
                        LaunchTime: new Date(Date.UTC(2026, 11, 1, 12)),
                        Tags: [{ Key: 'remote-container-hooks:reservation', Value: 'res-a' }]
                      },
                      { InstanceId: 'i-0000000000000000b', Tags: [] }
                    ]
                  }
                ]
              }
            : undefined
      )
      // The runner host as the hook names it (the provider reads no hostname of its own).
      s.env.runner = runnerFacts({ ...runner, host: { hostname: 'runner-host-9', name: 'runner-host-9', key: '0a1b2c3d4e5f6071' } })
      const report = await s.provider.cleanupOrphans('fedcba9876543210', s.env)
      expect(report.released).toEqual(['i-0000000000000000a', 'i-0000000000000000b'])
      // Only this runner host's: a same-named runner elsewhere may be running a job on its own.
      expect(fake.calls.find((c) => c.name === 'DescribeInstances')?.input.Filters).toEqual([
        { Name: 'tag:remote-container-hooks:owner', Values: ['fedcba9876543210'] },
        { Name: 'tag:remote-container-hooks:runner-host', Values: ['runner-host-9'] },
        { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }
      ])
      // Attached first (its hook may have died before it could), billed from EC2's launch time.
      expect(s.fleet.calls).toEqual([
        { op: 'attach', id: 'res-a', instanceId: 'i-0000000000000000a', at: Date.UTC(2026, 11, 1, 12) },
        { op: 'settle', id: 'res-a', opts: undefined }
      ])
    })

    test('a cleanup without state that the runner cancels still looks for the instances and terminates them', async () => {
      const s = setup(
        {},
        () => launched('i-0123456789abcdef0'),
        (name, input) =>
          name === 'DescribeInstances' && input.Filters
            ? { Reservations: [{ Instances: [{ InstanceId: 'i-0000000000000000a' }] }] }
            : undefined
      )
      const cancel = new AbortController()
      cancel.abort('SIGINT')
      const report = await s.provider.cleanupOrphans('fedcba9876543210', { ...s.env, signal: cancel.signal })
      expect(report).toEqual({ released: ['i-0000000000000000a'], unreachable: [] })
      expect(fake.calls.map((c) => c.name)).toEqual(['DescribeInstances', 'TerminateInstances'])
    })
  })
})

describe('terminate', () => {
  test('after a cancel the terminate is still sent (an instance must never outlive its job)', async () => {
    const cancel = new AbortController()
    cancel.abort(new Error('cancelled by the runner'))
    fake.calls = []
    fake.answer = () => ({})
    const logged: string[] = []
    await new Ec2Provider(ec2Config(), '/srv/rch').terminate('i-0123456789abcdef0', {
      signal: cancel.signal,
      log: { debug: () => undefined, progress: (m) => void logged.push(m), warn: () => undefined }
    })
    expect(fake.calls).toEqual([{ name: 'TerminateInstances', input: { InstanceIds: ['i-0123456789abcdef0'] } }])
    expect(logged).toEqual(['terminated i-0123456789abcdef0'])
  })

  test('its signal: the deadline ends it; a cancel only shortens it to the grace, never ends it at once', async () => {
    const quiet = new AbortController().signal
    const t0 = Date.now()
    const byDeadline = terminateSignal(quiet, 150, 50)
    await new Promise((r) => byDeadline.signal.addEventListener('abort', r))
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140)
    byDeadline.done()

    const cancel = new AbortController()
    const t1 = Date.now()
    const byCancel = terminateSignal(cancel.signal, 10_000, 100)
    cancel.abort()
    expect(byCancel.signal.aborted).toBe(false)
    await new Promise((r) => byCancel.signal.addEventListener('abort', r))
    expect(Date.now() - t1).toBeGreaterThanOrEqual(90)
    // the grace (100 ms), not the deadline (10 s)
    expect(Date.now() - t1).toBeLessThan(5000)
    byCancel.done()
  })
})

describe('what a launch template decides, read before the launch', () => {
  /** launchBasisOf against a template version holding `data` (the image lookup answers one image). */
  async function basisOf(data: Record<string, unknown>) {
    const { launchBasisOf } = await import('../../src/providers/ec2-basis')
    const sdk = {
      DescribeLaunchTemplateVersionsCommand: class {
        readonly kind = 'versions'
      },
      DescribeImagesCommand: class {
        readonly kind = 'images'
      }
    }
    const client = {
      send: async (c: { kind: string }) =>
        c.kind === 'versions'
          ? { LaunchTemplateVersions: [{ LaunchTemplateData: data }] }
          : { Images: [{ RootDeviceName: '/dev/xvda', BlockDeviceMappings: [] }] }
    }
    const cfg = { launchTemplate: { name: 'ci', version: '$Latest' }, imageId: undefined, region: 'eu-west-1' }
    return launchBasisOf(cfg, sdk as never, client as never, (_what, fn) => fn())
  }

  test('a template asking for persistent Spot instances (launched again after each terminate) is refused, naming it', async () => {
    await expect(
      basisOf({ ImageId: 'ami-1', InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'persistent' } } })
    ).rejects.toThrow(/^provider\.launchTemplate: version \$Latest of ci asks for persistent Spot instances/)
    // control: one-time Spot, and no market at all, are read as before
    await expect(
      basisOf({ ImageId: 'ami-1', InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time' } } })
    ).resolves.toMatchObject({ rootDevice: '/dev/xvda' })
    await expect(basisOf({ ImageId: 'ami-1' })).resolves.toMatchObject({ rootDevice: '/dev/xvda', templateSetsMetadata: false })
  })
})
