// doctor's parts that need no machine: its exit codes and output for a bad config, the fix chosen
// for each way SSH fails, and the AWS checks against a fake EC2/Auto Scaling client (which calls
// are made, that they are dry runs, and how each answer is read).
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Ec2Config } from '../../src/config'
import { TransportError } from '../../src/errors'
import { runOpCommand } from '../../src/ops/cli'
import { apiAtLeast, configFilesOf, debugProblem, logLevelProblem, machineChecks, sshFix } from '../../src/ops/doctor-machine'
import { localChecks, logFileCheck } from '../../src/ops/doctor'
import { ensurePrivateDir } from '../../src/private-fs'
import { cleanupTempDirs, tempDir } from './_helpers'
import { nameOwnerId, ownerId } from '../../src/labels'

type Sent = { name: string; input: Record<string, unknown> }
const sent: Sent[] = []
let answers: Record<string, (input: Record<string, unknown>) => unknown> = {}
/** The Date header of every fake AWS answer (null: none). */
let awsDate: () => string | null = () => new Date().toUTCString()

const awsError = (name: string): Error => Object.assign(new Error(`${name} message`), { name })

jest.mock('../../src/providers/ec2-api', () => {
  const real = jest.requireActual('../../src/providers/ec2-api')
  // Each Command class records its name; the client answers from `answers` (a thrown Error is an AWS error).
  const sdk = new Proxy(
    {},
    {
      get: (_t, name: string) =>
        class {
          constructor(readonly input: Record<string, unknown>) {}
          readonly name = name.replace(/Command$/, '')
        }
    }
  )
  // The SDK's middleware stack, as far as doctor's clock check uses it: each answer carries awsDate().
  type Mw = (next: (a: unknown) => Promise<{ response: unknown }>) => (a: unknown) => Promise<unknown>
  const mws: Mw[] = []
  const client = {
    middlewareStack: { add: (mw: Mw) => void mws.push(mw) },
    send: async (c: { name: string; input: Record<string, unknown> }) => {
      sent.push({ name: c.name, input: c.input })
      const date = awsDate()
      const raw = async () => ({ response: { headers: date === null ? {} : { date } } })
      for (const mw of mws) await mw(raw)(c)
      const a = answers[c.name]
      if (!a) throw Object.assign(new Error('DryRunOperation'), { name: 'DryRunOperation' })
      return a(c.input)
    }
  }
  return { ...real, ec2Client: async () => ({ sdk, client }), autoScalingClient: () => ({ sdk, client }) }
})

const dir = tempDir('rch-ops-doctor-')
afterAll(cleanupTempDirs)
beforeEach(() => {
  sent.length = 0
  answers = {}
  awsDate = () => new Date().toUTCString()
})

const io = () => {
  let out = ''
  let err = ''
  return {
    io: {
      env: {},
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => (err += s) },
      signal: new AbortController().signal
    },
    out: () => out,
    err: () => err
  }
}

const ec2Cfg = {
  kind: 'ec2' as const,
  region: 'eu-west-1',
  imageId: 'ami-12345678',
  instanceTypes: ['t3.medium'],
  subnetIds: ['subnet-1'],
  securityGroupIds: ['sg-1'],
  market: 'on-demand' as const,
  user: 'ec2-user',
  sshPort: 22,
  connect: { address: 'private-ip' },
  maxLifetimeMinutes: 60,
  rootVolume: { type: 'gp3' },
  tags: {},
  acquireTimeoutSeconds: 600
}

describe('doctor', () => {
  it('an invalid config is one failing check with its fix, exit 1', async () => {
    const f = join(dir, 'bad.json')
    writeFileSync(f, JSON.stringify({ provider: { kind: 'static', hosts: [] }, remote: { workRoot: '/srv' } }))
    const o = io()
    expect(await runOpCommand('doctor', [f, '--json'], o.io)).toBe(1)
    expect(JSON.parse(o.out())).toEqual({
      ok: false,
      checks: [
        {
          check: 'configuration',
          target: f,
          status: 'fail',
          detail: 'provider.hosts: at least one host is required',
          fix: 'run `remote-hooks check-config` and correct what it lists'
        }
      ]
    })
    expect(o.err()).toBe('doctor: 0 passed, 1 failed, 0 skipped\n')
  })

  it('--help exits 0 and says what is written', async () => {
    const o = io()
    expect(await runOpCommand('doctor', ['--help'], o.io)).toBe(0)
    expect(o.out()).toContain('The only writes: a temporary file created and removed inside each machine')
  })

  it('a machine that cannot be reached: ssh fails with the network fix, its other checks are skipped', async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')])
    writeFileSync(join(dir, 'kh'), '')
    // Port 1 on loopback: nothing listens there, the connection is refused.
    const connect = { host: '127.0.0.1', port: 1, user: 'u', identityFile: join(dir, 'id'), knownHostsFile: join(dir, 'kh') }
    const r = await machineChecks(
      { connect, workRoot: '/srv', dockerSocket: '/var/run/docker.sock' },
      { connectMs: 2000, maxSkewSeconds: 30 }
    )
    expect(r[0]).toMatchObject({ check: 'ssh', status: 'fail', target: 'u@127.0.0.1:1' })
    expect(r[0].detail).toMatch(/ECONNREFUSED/)
    expect(r[0].fix).toMatch(/check that sshd listens on 127.0.0.1:1/)
    expect(r.slice(1).map((c) => c.status)).toEqual(Array(8).fill('skip'))
  })

  it('picks the fix by where SSH failed, never by the message', () => {
    const c = { host: 'h', port: 2222, user: 'u', identityFile: '/k/id', knownHostsFile: '/k/kh' }
    expect(sshFix(new TransportError('x', 'hostkey'), c)).toMatch(/not the one pinned for \[h\]:2222 in \/k\/kh/)
    expect(sshFix(new TransportError('x', 'auth'), c)).toMatch(/authorize the public key of \/k\/id for u/)
    expect(sshFix(new TransportError('x', 'keyfile'), c)).toMatch(/make \/k\/id a readable private key/)
    expect(sshFix(new TransportError('host key', 'timeout'), c)).toMatch(/sshd listens on h:2222/)
    expect(sshFix(new Error('whatever'), c)).toMatch(/sshd listens/)
  })

  it("a machine's Docker daemon in debug mode is a failure: it logs small request bodies, steps' env among them", async () => {
    const asked: string[] = []
    const answer =
      (data: unknown, status = 200) =>
      async (p: string) => (asked.push(p), { status, data })
    expect(await debugProblem(answer({ Debug: true }))).toBe(
      "the daemon runs in debug mode: it logs the body of each small API request, steps' env values among them"
    )
    expect(asked).toEqual(['/info'])
    // Controls: not in debug mode (null); no answer or an error answer is not judged (undefined, said so in the row).
    expect(await debugProblem(answer({ Debug: false }))).toBeNull()
    expect(await debugProblem(answer({ Debug: 'true' }))).toBeNull()
    expect(await debugProblem(answer(null))).toBeNull()
    expect(await debugProblem(answer({ Debug: true }, 500))).toBeUndefined()
    expect(
      await debugProblem(async () => {
        throw new Error('refused')
      })
    ).toBeUndefined()
  })

  it('a dockerd logging at debug level (its arguments or daemon.json), which /info does not say, is a failure too', () => {
    const dockerd = (...a: string[]) => ['/usr/bin/dockerd', '-H', 'fd://', ...a]
    expect(logLevelProblem([dockerd('--log-level=debug')], [])).toBe('a dockerd runs with --log-level=debug')
    expect(logLevelProblem([dockerd('-l', 'debug')], [])).toBe('a dockerd runs with -l debug')
    expect(logLevelProblem([dockerd('-D')], [])).toBe('a dockerd runs with -D')
    expect(logLevelProblem([dockerd()], ['{"log-level": "debug"}'])).toBe('its daemon.json sets "log-level": "debug"')
    expect(logLevelProblem([dockerd()], ['{"debug": true}'])).toBe('its daemon.json sets "debug": true')
    // Controls: other levels, a missing or unreadable config, an argument that only looks alike.
    expect(logLevelProblem([dockerd('--log-level', 'info')], ['{"log-level": "warn"}', '', 'not json'])).toBeNull()
    expect(logLevelProblem([dockerd('--data-root', 'debug')], [])).toBeNull()
    expect(logLevelProblem([], [])).toBeNull()
    // The config files read: those the arguments name, else the default.
    expect(configFilesOf([dockerd()])).toEqual(['/etc/docker/daemon.json'])
    expect(configFilesOf([dockerd('--config-file', '/srv/d.json'), dockerd('--config-file=/etc/x.json')])).toEqual([
      '/srv/d.json',
      '/etc/x.json'
    ])
    expect(configFilesOf([dockerd('--config-file', 'relative.json')])).toEqual(['/etc/docker/daemon.json'])
    // A rootless daemon (its user not root) reads its user's own, not /etc's.
    expect(configFilesOf([dockerd(), dockerd()], ['', '/home/ci'])).toEqual([
      '/etc/docker/daemon.json',
      '/home/ci/.config/docker/daemon.json'
    ])
    // logrus reads the level in any case, and trace logs request bodies too.
    expect(logLevelProblem([dockerd('--log-level=DEBUG')], [])).toBe('a dockerd runs with --log-level=DEBUG')
    expect(logLevelProblem([dockerd('-l', 'trace')], [])).toBe('a dockerd runs with -l trace')
    expect(logLevelProblem([dockerd()], ['{"log-level": "Trace"}'])).toBe('its daemon.json sets "log-level": "trace"')
  })

  it('compares Docker API versions numerically', () => {
    expect(apiAtLeast('1.41', [1, 41])).toBe(true)
    expect(apiAtLeast('1.47', [1, 41])).toBe(true)
    expect(apiAtLeast('1.9', [1, 41])).toBe(false)
    expect(apiAtLeast('2.0', [1, 41])).toBe(true)
    expect(apiAtLeast('', [1, 41])).toBe(false)
  })
})

describe('doctor on AWS (fake client)', () => {
  it('ec2: dry runs for permissions, Describe calls for what the config names', async () => {
    answers = {
      DescribeImages: () => ({ Images: [{}] }),
      DescribeSubnets: () => {
        throw awsError('InvalidSubnetID.NotFound')
      },
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] })
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const r = await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)
    expect(r.map((c) => [c.check, c.status])).toEqual([
      ['aws credentials', 'pass'],
      ['clock', 'pass'],
      ['image', 'pass'],
      ['subnet', 'fail'],
      ['security group', 'pass'],
      ['launch', 'pass']
    ])
    expect(r[3].fix).toBe('fix provider.subnetIds')
    expect(sent.map((s) => s.name)).toEqual([
      'DescribeInstances',
      'DescribeImages',
      'DescribeSubnets',
      'DescribeSecurityGroups',
      // What the image decides (its root device), read as the hook reads it before each launch.
      'DescribeImages',
      'RunInstances'
    ])
    const run = sent[5].input
    expect(run.DryRun).toBe(true)
    expect(sent[0].input.DryRun).toBe(true)
    expect(run).toMatchObject({ ImageId: 'ami-12345678', InstanceType: 't3.medium', SubnetId: 'subnet-1', SecurityGroupIds: ['sg-1'] })
    expect((run.TagSpecifications as unknown[]).length).toBe(3)
  })

  it("ec2: the dry run is the hook's own request: the encrypted root volume and IMDSv2 it adds where the image or template leaves them out", async () => {
    const image = { RootDeviceName: '/dev/xvda', BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8 } }] }
    answers = {
      DescribeImages: () => ({ Images: [image] }),
      DescribeSubnets: () => ({ Subnets: [{}] }),
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] })
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const run = async (cfg: object) => {
      sent.length = 0
      await ec2Checks(cfg as Ec2Config, 'runner-1', undefined, 30)
      return sent.find((x) => x.name === 'RunInstances')!.input
    }
    expect(await run(ec2Cfg)).toMatchObject({
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { Encrypted: true, VolumeSize: 8 } }],
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 }
    })
    // A template that states neither volumes nor metadata options: the hook adds both, so the dry run does.
    const fromTemplate = { ...ec2Cfg, imageId: undefined, launchTemplate: { name: 'rch', version: '$Default' } }
    answers.DescribeLaunchTemplateVersions = () => ({ LaunchTemplateVersions: [{ LaunchTemplateData: { ImageId: 'ami-87654321' } }] })
    expect(await run(fromTemplate)).toMatchObject({
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { Encrypted: true } }],
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 }
    })
    // Control: a template that states both decides them, and the request leaves them out.
    answers.DescribeLaunchTemplateVersions = () => ({
      LaunchTemplateVersions: [
        {
          LaunchTemplateData: {
            ImageId: 'ami-87654321',
            BlockDeviceMappings: [{ DeviceName: '/dev/xvda' }],
            MetadataOptions: { HttpTokens: 'optional' }
          }
        }
      ]
    })
    const decided = await run(fromTemplate)
    expect(decided.BlockDeviceMappings).toBeUndefined()
    expect(decided.MetadataOptions).toBeUndefined()
  })

  it("ec2: run as the runner (RUNNER_TEMP set), the dry run carries that runner's owner id, as a policy narrowed to it sees", async () => {
    answers = {
      DescribeImages: () => ({ Images: [{}] }),
      DescribeSubnets: () => ({ Subnets: [{}] }),
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] })
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const ownerTag = (): string | undefined => {
      const specs = sent.find((x) => x.name === 'RunInstances')!.input.TagSpecifications as { Tags: { Key: string; Value: string }[] }[]
      return specs[0].Tags.find((t) => t.Key === 'remote-container-hooks:owner')?.Value
    }
    await ec2Checks(ec2Cfg, 'runner-1', '/home/gh/a/_work/_temp', 30)
    expect(ownerTag()).toBe(ownerId('runner-1', '/home/gh/a/_work'))
    sent.length = 0
    await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)
    expect(ownerTag()).toBe(nameOwnerId('runner-1'))
  })

  it("ec2: the launch template is read as the hook reads it (its version), and a denied read is the policy's to fix", async () => {
    answers = {
      DescribeLaunchTemplateVersions: () => ({ LaunchTemplateVersions: [{ LaunchTemplateData: {} }] }),
      DescribeSubnets: () => {
        throw awsError('UnauthorizedOperation')
      },
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] })
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const r = await ec2Checks(
      { ...ec2Cfg, imageId: undefined, launchTemplate: { id: 'lt-0123456789abcdef0', version: '3' } },
      'runner-1',
      undefined,
      30
    )
    expect(r.map((c) => [c.check, c.status])).toEqual([
      ['aws credentials', 'pass'],
      ['clock', 'pass'],
      ['launch template', 'pass'],
      ['subnet', 'fail'],
      ['security group', 'pass'],
      ['launch', 'pass']
    ])
    expect(sent[1]).toEqual({
      name: 'DescribeLaunchTemplateVersions',
      input: { LaunchTemplateId: 'lt-0123456789abcdef0', Versions: ['3'] }
    })
    expect(r[3].fix).toMatch(/^allow ec2:DescribeSubnets in the runner host's IAM policy/)
  })

  it('ec2: a denied RunInstances fails with the policy fix', async () => {
    answers = {
      DescribeImages: () => ({ Images: [{}] }),
      DescribeSubnets: () => ({ Subnets: [{}] }),
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] }),
      RunInstances: () => {
        throw awsError('UnauthorizedOperation')
      }
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const r = await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)
    const launch = r.find((c) => c.check === 'launch')!
    expect(launch).toMatchObject({ status: 'fail', detail: 'ec2:RunInstances denied (DryRun): UnauthorizedOperation' })
    expect(launch.fix).toMatch(/allow ec2:RunInstances/)
  })

  it('an endpoint that ignores DryRun and launches is a failure naming what it made', async () => {
    answers = {
      DescribeImages: () => ({ Images: [{}] }),
      DescribeSubnets: () => ({ Subnets: [{}] }),
      DescribeSecurityGroups: () => ({ SecurityGroups: [{}] }),
      RunInstances: () => ({ Instances: [{ InstanceId: 'i-0123456789abcdef0' }] })
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const launch = (await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)).find((c) => c.check === 'launch')!
    expect(launch).toMatchObject({ status: 'fail', detail: 'the endpoint ignored DryRun and launched i-0123456789abcdef0' })
    expect(launch.fix).toMatch(/^terminate i-0123456789abcdef0/)
  })

  it('without credentials nothing else is tried', async () => {
    answers = {
      DescribeInstances: () => {
        throw awsError('CredentialsProviderError')
      }
    }
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    const r = await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)
    expect(r).toHaveLength(1)
    expect(r[0]).toMatchObject({ check: 'aws credentials', status: 'fail' })
    expect(r[0].fix).toMatch(/give this runner host AWS credentials/)
    expect(sent.map((s) => s.name)).toEqual(['DescribeInstances'])
  })

  it("the clock: this host's clock against the Date of AWS's answers; none said without a Date", async () => {
    const { ec2Checks } = await import('../../src/ops/doctor-aws')
    awsDate = () => new Date(Date.now() + 120_000).toUTCString()
    const behind = (await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)).find((c) => c.check === 'clock')
    expect(behind).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/^this runner host's clock is 1(19|20|21) s behind AWS's \(more than 30 s\)/)
    })
    expect(behind?.fix).toMatch(/chrony or systemd-timesyncd/)
    awsDate = () => new Date(Date.now() - 10_000).toUTCString()
    expect((await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)).find((c) => c.check === 'clock')).toMatchObject({
      status: 'pass',
      detail: expect.stringMatching(/^this runner host's clock is (9|10|11) s ahead of AWS's \(±1 s\)$/)
    })
    awsDate = () => null
    expect((await ec2Checks(ec2Cfg, 'runner-1', undefined, 30)).find((c) => c.check === 'clock')).toBeUndefined()
  })

  it('ec2-pool: the group and its members by Describe calls only (never SetDesiredCapacity)', async () => {
    answers = {
      DescribeInstances: (input) => {
        if (input.DryRun) throw awsError('DryRunOperation')
        return {
          Reservations: [
            {
              Instances: [
                {
                  InstanceId: 'i-0123456789abcdef0',
                  State: { Name: 'stopped' },
                  Tags: [{ Key: 'aws:autoscaling:groupName', Value: 'pool' }]
                }
              ]
            }
          ]
        }
      },
      DescribeAutoScalingGroups: () => ({ AutoScalingGroups: [{ DesiredCapacity: 1, MaxSize: 4 }] }),
      SetInstanceProtection: () => {
        throw awsError('ValidationError')
      }
    }
    const { poolChecks } = await import('../../src/ops/doctor-aws')
    const r = await poolChecks(
      {
        region: 'eu-west-1',
        autoScalingGroup: 'pool',
        user: 'ec2-user',
        sshPort: 22,
        connect: { address: 'private-ip' }
      } as never,
      30
    )
    expect(r.checks.map((c) => [c.check, c.status])).toEqual([
      ['aws credentials', 'pass'],
      ['clock', 'pass'],
      ['auto scaling group', 'pass'],
      ['scale-in protection', 'pass'],
      ['members', 'pass']
    ])
    expect(r.checks[2].detail).toBe('pool: desired 1, max 4 (SetDesiredCapacity not tried: it has no dry run)')
    expect(r.checks[3].detail).toBe(
      'autoscaling:SetInstanceProtection allowed (asked for i-00000000000000000: refused as not in the group)'
    )
    expect(r.checks[4].detail).toBe('1 member(s): 0 ready to check, 0 pending, 1 stopped')
    expect(r.ready).toEqual([])
    expect(sent.map((s) => s.name)).toEqual([
      'DescribeInstances',
      'DescribeAutoScalingGroups',
      'SetInstanceProtection',
      'DescribeInstances'
    ])
    // Asked for an instance that is none, and to lift protection, never to set it.
    expect(sent[2].input).toEqual({ AutoScalingGroupName: 'pool', InstanceIds: ['i-00000000000000000'], ProtectedFromScaleIn: false })
  })

  it('ec2-pool: SetInstanceProtection refused by the policy fails, naming the action (jobs would run unprotected)', async () => {
    answers = {
      DescribeInstances: (input) => {
        if (input.DryRun) throw awsError('DryRunOperation')
        return { Reservations: [] }
      },
      DescribeAutoScalingGroups: () => ({ AutoScalingGroups: [{ DesiredCapacity: 0, MaxSize: 4 }] }),
      SetInstanceProtection: () => {
        throw awsError('AccessDenied')
      }
    }
    const { poolChecks } = await import('../../src/ops/doctor-aws')
    const cfg = {
      region: 'eu-west-1',
      autoScalingGroup: 'pool',
      user: 'ec2-user',
      sshPort: 22,
      connect: { address: 'private-ip' }
    } as never
    const row = (await poolChecks(cfg, 30)).checks.find((c) => c.check === 'scale-in protection')
    expect(row).toMatchObject({
      status: 'fail',
      detail:
        "autoscaling:SetInstanceProtection denied: AccessDenied: a job's member would not be protected from scale-in while it runs there",
      fix: expect.stringMatching(/^allow autoscaling:SetInstanceProtection in the runner host's IAM policy/)
    })
    // Control: allowed (moto answers an instance not in the group with success).
    answers.SetInstanceProtection = () => ({})
    expect((await poolChecks(cfg, 30)).checks.find((c) => c.check === 'scale-in protection')?.status).toBe('pass')
  })
})

describe('the runner-host tools doctor checks', () => {
  const tools = { tar: null, rsync: null, ssh: null }
  type Found = Partial<Record<'tar' | 'rsync' | 'ssh', string | null>>
  const cfg = (enabled: boolean, kind = 'static') =>
    ({ tools: {}, agent: { enabled }, provider: { kind } }) as unknown as Parameters<typeof localChecks>[0]
  const checks = (enabled: boolean, found: Found, socketBytes = 80, kind = 'static') =>
    localChecks(cfg(enabled, kind), { ...tools, ...found }, socketBytes)
  const row = (enabled: boolean, found: Found, socketBytes = 80, kind = 'static') =>
    checks(enabled, found, socketBytes, kind).map((c) => [c.check, c.status])

  it('rsync is required; tar is not checked (the hook no longer starts it)', () => {
    expect(row(true, { ssh: '/usr/bin/ssh', rsync: '/usr/bin/rsync' })).toEqual([
      ['local ssh', 'pass'],
      ['local rsync', 'pass']
    ])
    expect(row(true, { ssh: '/usr/bin/ssh' })).toEqual([
      ['local ssh', 'pass'],
      ['local rsync', 'fail']
    ])
  })

  it('a missing ssh is a skip while the agent carries the first copy, a failure without the agent', () => {
    expect(row(true, { rsync: '/usr/bin/rsync' })).toEqual([
      ['local ssh', 'skip'],
      ['local rsync', 'pass']
    ])
    const [off] = checks(false, { rsync: '/usr/bin/rsync' })
    expect(off).toMatchObject({ check: 'local ssh', status: 'fail', fix: expect.stringContaining('install ssh') })
    expect(off.detail).toContain('agent.enabled is false')
  })

  it("a TMPDIR too long for the agent's socket: a missing ssh fails, and an ec2-pool fails whatever ssh", () => {
    const [ssh] = checks(true, { rsync: '/usr/bin/rsync' }, 108)
    expect(ssh).toMatchObject({ check: 'local ssh', status: 'fail' })
    expect(ssh.detail).toMatch(/socket path 108 bytes, over the 107/)
    expect(row(true, { rsync: '/usr/bin/rsync' }, 107)).toEqual([
      ['local ssh', 'skip'],
      ['local rsync', 'pass']
    ])
    expect(row(true, { ssh: '/usr/bin/ssh', rsync: '/usr/bin/rsync' }, 108)).toEqual([
      ['local ssh', 'pass'],
      ['local rsync', 'pass']
    ])
    expect(row(true, { ssh: '/usr/bin/ssh', rsync: '/usr/bin/rsync' }, 108, 'ec2-pool')).toEqual([
      ['local ssh', 'pass'],
      ['local rsync', 'pass'],
      ['agent socket', 'fail']
    ])
    expect(row(true, { ssh: '/usr/bin/ssh', rsync: '/usr/bin/rsync' }, 107, 'ec2-pool')).toEqual([
      ['local ssh', 'pass'],
      ['local rsync', 'pass']
    ])
  })
})

// doctor's word on the log folder must be the hook's: a folder not made yet is judged by where it
// would be made, as the hook judges it before making it.
describe("doctor's log file row", () => {
  it('a folder to be made under a folder anyone may write (no sticky bit) fails, as the hook refuses it; with the sticky bit it passes', () => {
    const open = join(tempDir(), 'open')
    mkdirSync(open)
    chmodSync(open, 0o777)
    const file = join(open, 'logs', 'hook.log')
    const row = logFileCheck(file, false)
    expect(row).toMatchObject({ status: 'fail', check: 'log file' })
    expect(row.detail).toContain('is writable by all users without the sticky bit')
    expect(row.fix).toMatch(/a real folder of the runner user \(mode 0700\)/)
    // Positive control: the hook refuses the same place, and makes nothing there.
    expect(() => ensurePrivateDir(join(open, 'logs'), 'set log.file')).toThrow(/without the sticky bit/)
    expect(existsSync(join(open, 'logs'))).toBe(false)
    chmodSync(open, 0o1777)
    expect(logFileCheck(file, false)).toMatchObject({ status: 'pass', detail: expect.stringContaining('not created yet') })
  })
})
