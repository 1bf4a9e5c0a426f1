/**
 * Smoke test of the EC2 test environment: moto's server (scripts/testenv/moto.sh), the fault
 * proxy in front of it (test/helpers/fault-proxy.ts) and the loopback sshd that stands in for
 * a booted instance (scripts/testenv/instance-sshd.sh). It pins what moto actually does, so
 * that the EC2 provider's tests can rely on it and a moto upgrade that changes it is noticed.
 *
 * Needs `bash scripts/testenv/moto.sh start` (scripts/test.sh does it) and root (instance sshd).
 * Never connects to the addresses moto invents for instances.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import {
  CreateLaunchTemplateCommand,
  CreateLaunchTemplateVersionCommand,
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeSpotInstanceRequestsCommand,
  DescribeVolumesCommand,
  type EC2Client,
  type Instance,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import { ec2Client, freePort, loadMoto, motoImageId, type MotoEnv, startInstanceSshd, stopInstanceSshd } from '../helpers/ec2-env'
import { type FaultProxy, isSpotRequest, startFaultProxy } from '../helpers/fault-proxy'

const execFileP = promisify(execFile)

let moto: MotoEnv
let ec2: EC2Client
let ami: string
// moto's state is shared by every test file that uses it (jest runs files in parallel):
// no resetMoto() here, every test finds its own instances through a unique tag value
const RUN = `${process.pid}-${Date.now()}`

beforeAll(async () => {
  moto = loadMoto()
  ec2 = ec2Client()
  ami = await motoImageId(ec2)
})

afterAll(() => {
  ec2?.destroy()
})

function base(extra: Partial<RunInstancesCommandInput> = {}): RunInstancesCommandInput {
  return { ImageId: ami, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, ...extra }
}

async function describe1(client: EC2Client, id: string): Promise<Instance> {
  const out = await client.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
  const inst = out.Reservations?.[0]?.Instances?.[0]
  if (!inst) throw new Error(`DescribeInstances ${id}: no instance`)
  return inst
}

function tagsOf(x: { Tags?: { Key?: string; Value?: string }[] }): Record<string, string> {
  return Object.fromEntries((x.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
}

async function errorOf(p: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number; attempts?: number } }> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected the call to fail, it succeeded')
}

describe('moto EC2 server', () => {
  test('env file and pinned version', () => {
    expect(moto.endpoint).toBe(`http://127.0.0.1:${moto.port}`)
    expect(moto.version).toBe('5.2.5')
    expect(ami).toMatch(/^ami-[0-9a-f]+$/)
  })

  test('RunInstances with tags, IMDSv2, encrypted EBS, shutdown=terminate, user data; found by tag', async () => {
    const job = `smoke-${RUN}`
    const userData = Buffer.from('#!/bin/sh\necho rch smoke\n').toString('base64')
    const run = await ec2.send(
      new RunInstancesCommand(
        base({
          TagSpecifications: [
            {
              ResourceType: 'instance',
              Tags: [
                { Key: 'rch:job', Value: job },
                { Key: 'Name', Value: 'rch smoke' }
              ]
            },
            { ResourceType: 'volume', Tags: [{ Key: 'rch:job', Value: job }] }
          ],
          MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 },
          BlockDeviceMappings: [
            { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 20, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } }
          ],
          InstanceInitiatedShutdownBehavior: 'terminate',
          UserData: userData
        })
      )
    )
    const launched = run.Instances?.[0]
    expect(run.Instances).toHaveLength(1)
    expect(launched?.InstanceId).toMatch(/^i-[0-9a-f]{17}$/)
    // moto: 'pending' in the RunInstances answer, 'running' on the very next Describe
    expect(launched?.State?.Name).toBe('pending')
    expect(launched?.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' })
    expect(tagsOf(launched!)).toEqual({ 'rch:job': job, Name: 'rch smoke' })
    // the SDK fills in a ClientToken (idempotency token) when none is given; moto echoes it
    expect(launched?.ClientToken).toMatch(/^[0-9a-f-]{36}$/)
    const id = launched!.InstanceId!

    const found = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:rch:job', Values: [job] }] }))
    const ids = (found.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId))
    expect(ids).toEqual([id])
    const inst = found.Reservations![0].Instances![0]
    expect(inst.State?.Name).toBe('running')
    expect(tagsOf(inst)).toEqual({ 'rch:job': job, Name: 'rch smoke' })
    expect(inst.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 })
    expect(inst.BlockDeviceMappings?.map((b) => b.DeviceName)).toEqual(['/dev/xvda'])

    const ud = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'userData' }))
    expect(ud.UserData?.Value).toBe(userData)
    const sd = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'instanceInitiatedShutdownBehavior' }))
    expect(sd.InstanceInitiatedShutdownBehavior?.Value).toBe('terminate')

    const volId = inst.BlockDeviceMappings![0].Ebs!.VolumeId!
    const vols = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volId] }))
    expect(vols.Volumes?.[0]).toMatchObject({ Encrypted: true, Size: 20, VolumeType: 'gp3', State: 'in-use' })
    expect(tagsOf(vols.Volumes![0])).toEqual({ 'rch:job': job })

    await ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'rch:state', Value: 'leased' }] }))
    expect(tagsOf(await describe1(ec2, id))).toEqual({ 'rch:job': job, Name: 'rch smoke', 'rch:state': 'leased' })

    const term = await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
    expect(term.TerminatingInstances?.[0]).toMatchObject({
      InstanceId: id,
      CurrentState: { Name: 'shutting-down' },
      PreviousState: { Name: 'running' }
    })
    const after = await describe1(ec2, id)
    expect(after.State?.Name).toBe('terminated')
    expect(after.StateReason?.Code).toBe('Client.UserInitiatedShutdown')
    const running = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: 'tag:rch:job', Values: [job] },
          { Name: 'instance-state-name', Values: ['pending', 'running'] }
        ]
      })
    )
    expect(running.Reservations ?? []).toEqual([])
  })

  test('launch templates: $Latest, explicit version, template user data and tags', async () => {
    const name = `rch-smoke-${RUN}`
    const ltUserData = Buffer.from('from the template').toString('base64')
    const lt = await ec2.send(
      new CreateLaunchTemplateCommand({
        LaunchTemplateName: name,
        LaunchTemplateData: {
          ImageId: ami,
          InstanceType: 't3.small',
          UserData: ltUserData,
          TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'from', Value: 'template' }] }],
          MetadataOptions: { HttpTokens: 'required' }
        }
      })
    )
    const ltId = lt.LaunchTemplate!.LaunchTemplateId!
    expect(lt.LaunchTemplate?.LatestVersionNumber).toBe(1)
    await ec2.send(
      new CreateLaunchTemplateVersionCommand({
        LaunchTemplateName: name,
        LaunchTemplateData: { ImageId: ami, InstanceType: 't3.medium' }
      })
    )

    const latest = await ec2.send(
      new RunInstancesCommand({
        MinCount: 1,
        MaxCount: 1,
        LaunchTemplate: { LaunchTemplateName: name, Version: '$Latest' },
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'rch:job', Value: 'lt' }] }]
      })
    )
    const li = latest.Instances![0]
    expect(li.InstanceType).toBe('t3.medium')
    expect(li.ImageId).toBe(ami)
    expect(tagsOf(li)).toEqual({
      'aws:ec2launchtemplate:id': ltId,
      'aws:ec2launchtemplate:version': '2',
      'rch:job': 'lt'
    })

    const v1 = await ec2.send(
      new RunInstancesCommand({ MinCount: 1, MaxCount: 1, LaunchTemplate: { LaunchTemplateId: ltId, Version: '1' } })
    )
    const vi = v1.Instances![0]
    expect(vi.InstanceType).toBe('t3.small')
    expect(tagsOf(vi)).toEqual({
      from: 'template',
      'aws:ec2launchtemplate:id': ltId,
      'aws:ec2launchtemplate:version': '1'
    })
    const ud = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: vi.InstanceId!, Attribute: 'userData' }))
    expect(ud.UserData?.Value).toBe(ltUserData)

    const missing = await errorOf(
      ec2.send(
        new RunInstancesCommand({ MinCount: 1, MaxCount: 1, LaunchTemplate: { LaunchTemplateName: 'rch-none', Version: '$Latest' } })
      )
    )
    expect(missing.name).toBe('InvalidLaunchTemplateName.NotFoundException')
  })

  test('spot via InstanceMarketOptions', async () => {
    const run = await ec2.send(
      new RunInstancesCommand(
        base({
          InstanceMarketOptions: {
            MarketType: 'spot',
            SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate', MaxPrice: '0.05' }
          }
        })
      )
    )
    const inst = run.Instances![0]
    expect(inst.InstanceLifecycle).toBe('spot')
    expect((await describe1(ec2, inst.InstanceId!)).InstanceLifecycle).toBe('spot')
    // moto creates no spot request object for it
    expect(inst.SpotInstanceRequestId).toBeUndefined()
    const reqs = await ec2.send(new DescribeSpotInstanceRequestsCommand({}))
    expect((reqs.SpotInstanceRequests ?? []).filter((r) => r.InstanceId === inst.InstanceId)).toEqual([])
  })

  // Reported as skipped, not passed, when moto runs without validation (RCH_MOTO_VALIDATE=0).
  ;(loadMoto().validate ? test : test.skip)('validation (moto.sh enables AMI and instance-type validation)', async () => {
    expect((await errorOf(ec2.send(new RunInstancesCommand(base({ ImageId: 'ami-12345678' }))))).name).toBe('InvalidAMIID.NotFound')
    expect((await errorOf(ec2.send(new RunInstancesCommand(base({ InstanceType: 'zz9.huge' as never }))))).name).toBe(
      'InvalidInstanceType.NotFound'
    )
    const ok = await ec2.send(new RunInstancesCommand(base({ InstanceType: 'm7i.large' })))
    expect(ok.Instances?.[0]?.InstanceType).toBe('m7i.large')
    const dry = await errorOf(ec2.send(new RunInstancesCommand(base({ DryRun: true }))))
    expect(dry.name).toBe('DryRunOperation')
  })
})

describe('moto 5.2.5 quirks (pinned: a moto upgrade that changes them makes this fail)', () => {
  test('ClientToken is NOT honoured: the same token twice launches two instances', async () => {
    const token = `rch-smoke-${RUN}`
    const a = await ec2.send(new RunInstancesCommand(base({ ClientToken: token })))
    const b = await ec2.send(new RunInstancesCommand(base({ ClientToken: token })))
    expect(a.Instances![0].ClientToken).toBe(token)
    expect(b.Instances![0].ClientToken).toBe(token)
    expect(b.Instances![0].InstanceId).not.toBe(a.Instances![0].InstanceId)
    expect(b.ReservationId).not.toBe(a.ReservationId)
  })

  test('launch template MetadataOptions are not applied to the instance', async () => {
    const name = `rch-smoke-md-${RUN}`
    await ec2.send(
      new CreateLaunchTemplateCommand({
        LaunchTemplateName: name,
        LaunchTemplateData: { ImageId: ami, InstanceType: 't3.small', MetadataOptions: { HttpTokens: 'required' } }
      })
    )
    const run = await ec2.send(
      new RunInstancesCommand({ MinCount: 1, MaxCount: 1, LaunchTemplate: { LaunchTemplateName: name, Version: '$Latest' } })
    )
    expect(run.Instances![0].MetadataOptions?.HttpTokens).toBe('optional')
  })

  test('CreateTags on an unknown instance id succeeds; DescribeInstances of one fails', async () => {
    await ec2.send(new CreateTagsCommand({ Resources: ['i-00000000000000000'], Tags: [{ Key: 'k', Value: 'v' }] }))
    const err = await errorOf(ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-00000000000000000'] })))
    expect(err.name).toBe('InvalidInstanceID.NotFound')
  })

  test('unsupported DescribeInstances filters (client-token, instance-lifecycle) are HTTP 500', async () => {
    const once = ec2Client({ maxAttempts: 1 })
    try {
      for (const filter of ['client-token', 'instance-lifecycle']) {
        const err = await errorOf(once.send(new DescribeInstancesCommand({ Filters: [{ Name: filter, Values: ['x'] }] })))
        expect(err.$metadata?.httpStatusCode).toBe(500)
      }
    } finally {
      once.destroy()
    }
  })
})

describe('fault proxy in front of moto', () => {
  let proxy: FaultProxy
  beforeAll(async () => {
    proxy = await startFaultProxy()
  })
  afterAll(async () => {
    await proxy?.close()
  })
  beforeEach(() => {
    proxy.clearFaults()
    proxy.clearLog()
  })

  test('passes requests through and logs action + params', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint })
    try {
      const run = await c.send(
        new RunInstancesCommand(base({ TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'via', Value: 'proxy' }] }] }))
      )
      const id = run.Instances![0].InstanceId!
      expect(tagsOf(await describe1(ec2, id))).toEqual({ via: 'proxy' }) // visible directly in moto
      expect(proxy.requests.map((r) => r.action)).toEqual(['RunInstances'])
      const p = proxy.calls('RunInstances')[0].params
      expect(p.get('ImageId')).toBe(ami)
      expect(p.get('InstanceType')).toBe('t3.micro')
      expect(p.get('TagSpecification.1.ResourceType')).toBe('instance')
      expect(p.get('TagSpecification.1.Tag.1.Key')).toBe('via')
      expect(p.get('ClientToken')).toBe(run.Instances![0].ClientToken)
      expect(proxy.requests[0].status).toBe(200)
    } finally {
      c.destroy()
    }
  })

  test('InsufficientInstanceCapacity for one instance type surfaces as err.name; other types pass', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint, maxAttempts: 1 })
    try {
      const f = proxy.fail({
        action: 'RunInstances',
        when: (params) => params.get('InstanceType') === 'm7i.large',
        code: 'InsufficientInstanceCapacity',
        message: 'We currently do not have sufficient m7i.large capacity in the Availability Zone you requested',
        status: 500
      })
      const err = await errorOf(c.send(new RunInstancesCommand(base({ InstanceType: 'm7i.large' }))))
      expect(err.name).toBe('InsufficientInstanceCapacity')
      expect(err.message).toMatch(/sufficient m7i.large capacity/)
      expect(err.$metadata).toMatchObject({ httpStatusCode: 500, attempts: 1 })
      const ok = await c.send(new RunInstancesCommand(base({ InstanceType: 'c7i.large' })))
      expect(ok.Instances![0].InstanceType).toBe('c7i.large')
      expect(f.hits).toBe(1)
      expect(proxy.calls('RunInstances').map((r) => [r.params.get('InstanceType'), r.fault, r.status])).toEqual([
        ['m7i.large', 'InsufficientInstanceCapacity', 500],
        ['c7i.large', undefined, 200]
      ])
      // two separate calls: two different ClientTokens
      const tokens = proxy.calls('RunInstances').map((r) => r.params.get('ClientToken'))
      expect(tokens[0]).toBeTruthy()
      expect(tokens[1]).not.toBe(tokens[0])
    } finally {
      c.destroy()
    }
  })

  test('a 500 capacity error is retried by the SDK (default maxAttempts 3) with the same ClientToken', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint }) // SDK default: standard retry, 3 attempts
    try {
      proxy.fail({ action: 'RunInstances', code: 'InsufficientInstanceCapacity', status: 500 })
      const err = await errorOf(c.send(new RunInstancesCommand(base({ InstanceType: 'm7i.large' }))))
      expect(err.name).toBe('InsufficientInstanceCapacity')
      expect(err.$metadata?.attempts).toBe(3)
      const calls = proxy.calls('RunInstances')
      expect(calls).toHaveLength(3)
      expect(new Set(calls.map((r) => r.params.get('ClientToken'))).size).toBe(1)
    } finally {
      c.destroy()
    }
  })

  test('spot failures (SpotMaxPriceTooLow, InsufficientInstanceCapacity) hit spot requests only', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint })
    const spot = base({ InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { MaxPrice: '0.001' } } })
    try {
      proxy.fail({ action: 'RunInstances', when: isSpotRequest, times: 1, code: 'SpotMaxPriceTooLow', status: 400 })
      proxy.fail({ action: 'RunInstances', when: isSpotRequest, code: 'InsufficientInstanceCapacity', status: 400 })
      const e1 = await errorOf(c.send(new RunInstancesCommand(spot)))
      expect(e1.name).toBe('SpotMaxPriceTooLow')
      expect(e1.$metadata?.attempts).toBe(1) // a 400 is not retried
      const e2 = await errorOf(c.send(new RunInstancesCommand(spot)))
      expect(e2.name).toBe('InsufficientInstanceCapacity')
      const od = await c.send(new RunInstancesCommand(base()))
      expect(od.Instances![0].InstanceLifecycle).toBeUndefined()
      expect(proxy.calls('RunInstances').map((r) => [r.params.get('InstanceMarketOptions.MarketType'), r.fault ?? 'ok'])).toEqual([
        ['spot', 'SpotMaxPriceTooLow'],
        ['spot', 'InsufficientInstanceCapacity'],
        [null, 'ok']
      ])
      expect(new Set(proxy.calls('RunInstances').map((r) => r.params.get('ClientToken'))).size).toBe(3)
    } finally {
      c.destroy()
    }
  })

  test('throttling (RequestLimitExceeded, 503) is retried by the SDK when maxAttempts > 1', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint, maxAttempts: 3 })
    try {
      const f = proxy.fail({
        action: 'DescribeInstances',
        times: 2,
        code: 'RequestLimitExceeded',
        message: 'Request limit exceeded.',
        status: 503
      })
      const out = await c.send(new DescribeInstancesCommand({}))
      expect(out.$metadata.attempts).toBe(3)
      // the SDK's own backoff paused between the attempts
      expect(out.$metadata.totalRetryDelay).toBeGreaterThan(0)
      expect(f.hits).toBe(2)
      expect(proxy.calls('DescribeInstances').map((r) => r.status)).toEqual([503, 503, 200])
    } finally {
      c.destroy()
    }
  })

  test('throttling is not retried with maxAttempts: 1', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint, maxAttempts: 1 })
    try {
      proxy.fail({ action: 'DescribeInstances', times: 2, code: 'RequestLimitExceeded', status: 503 })
      const err = await errorOf(c.send(new DescribeInstancesCommand({})))
      expect(err.name).toBe('RequestLimitExceeded')
      expect(err.$metadata).toMatchObject({ httpStatusCode: 503, attempts: 1 })
      expect(proxy.calls('DescribeInstances')).toHaveLength(1)
    } finally {
      c.destroy()
    }
  })

  test('ClientToken emulation: same token -> same instance; other params -> IdempotentParameterMismatch', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint, maxAttempts: 1 })
    try {
      const token = `rch-proxy-${RUN}`
      const a = await c.send(new RunInstancesCommand(base({ ClientToken: token })))
      const b = await c.send(new RunInstancesCommand(base({ ClientToken: token })))
      expect(b.Instances![0].InstanceId).toBe(a.Instances![0].InstanceId)
      expect(b.ReservationId).toBe(a.ReservationId)
      expect(proxy.calls('RunInstances').map((r) => r.replayed ?? false)).toEqual([false, true])
      const err = await errorOf(c.send(new RunInstancesCommand(base({ ClientToken: token, InstanceType: 't3.small' }))))
      expect(err.name).toBe('IdempotentParameterMismatch')
    } finally {
      c.destroy()
    }
  })

  test('lost response (forward: true): the SDK retry with the same token gets the one instance', async () => {
    const c = ec2Client({ endpoint: proxy.endpoint, maxAttempts: 3 })
    try {
      const job = `lost-${RUN}`
      proxy.fail({ action: 'RunInstances', times: 1, forward: true, code: 'InternalError', status: 500 })
      const run = await c.send(
        new RunInstancesCommand(base({ TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'rch:job', Value: job }] }] }))
      )
      expect(run.$metadata.attempts).toBe(2)
      const calls = proxy.calls('RunInstances')
      expect(calls.map((r) => [r.fault ?? 'ok', r.replayed ?? false])).toEqual([
        ['InternalError', false],
        ['ok', true]
      ])
      expect(calls[1].params.get('ClientToken')).toBe(calls[0].params.get('ClientToken'))
      const found = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:rch:job', Values: [job] }] }))
      const ids = (found.Reservations ?? []).flatMap((r) => (r.Instances ?? []).map((i) => i.InstanceId))
      expect(ids).toEqual([run.Instances![0].InstanceId])
    } finally {
      c.destroy()
    }
  })
})

describe('instance sshd: keys through EC2 user data, pinned host key', () => {
  let dir: string
  let name: string | undefined

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-moto-smoke-'))
  })
  afterAll(async () => {
    if (name) await stopInstanceSshd(name).catch(() => undefined)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const ssh = (port: number, identity: string, knownHosts: string, cmd: string) =>
    execFileP(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-i',
        identity,
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        `UserKnownHostsFile=${knownHosts}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'ConnectTimeout=10',
        '-p',
        String(port),
        'rchvm@127.0.0.1',
        cmd
      ],
      { timeout: 30_000 }
    )

  test('generate keys, send them through RunInstances, start the "instance", ssh in, docker ps', async () => {
    // runner side: keys generated for this instance
    const runner = path.join(dir, 'runner')
    fs.mkdirSync(runner, { mode: 0o700 })
    for (const k of ['host', 'client']) {
      await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `rch-smoke-${k}`, '-f', path.join(runner, k)])
    }
    const hostPub = fs.readFileSync(path.join(runner, 'host.pub'), 'utf8').trim()
    const port = await freePort()
    const userData = Buffer.from(
      JSON.stringify({
        ssh_authorized_keys: [fs.readFileSync(path.join(runner, 'client.pub'), 'utf8').trim()],
        ssh_keys: { ed25519_private: fs.readFileSync(path.join(runner, 'host'), 'utf8'), ed25519_public: hostPub }
      })
    ).toString('base64')
    const run = await ec2.send(
      new RunInstancesCommand(
        base({
          UserData: userData,
          TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'rch:test-ssh-endpoint', Value: `127.0.0.1:${port}` }] }]
        })
      )
    )
    const id = run.Instances![0].InstanceId!

    // "instance" side: boots from what EC2 hands it (user data read back through the API)
    const attr = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'userData' }))
    const cfg = JSON.parse(Buffer.from(attr.UserData!.Value!, 'base64').toString('utf8')) as {
      ssh_authorized_keys: string[]
      ssh_keys: { ed25519_private: string }
    }
    const inst = path.join(dir, 'instance')
    fs.mkdirSync(inst, { mode: 0o700 })
    fs.writeFileSync(path.join(inst, 'authorized_key.pub'), `${cfg.ssh_authorized_keys[0]}\n`, { mode: 0o600 })
    fs.writeFileSync(path.join(inst, 'ssh_host_ed25519_key'), cfg.ssh_keys.ed25519_private, { mode: 0o600 })
    // the endpoint comes from a tag the test set, never from moto's invented IPs
    const tagged = tagsOf(await describe1(ec2, id))['rch:test-ssh-endpoint']
    const [host, portText] = tagged.split(':')
    expect(host).toBe('127.0.0.1')
    name = id
    const sshd = await startInstanceSshd(
      id,
      Number(portText),
      path.join(inst, 'authorized_key.pub'),
      path.join(inst, 'ssh_host_ed25519_key')
    )
    expect(sshd.port).toBe(port)
    expect(fs.statSync(sshd.workRoot).isDirectory()).toBe(true)

    // runner side: pin the host key it generated, strict checking
    const knownHosts = path.join(runner, 'known_hosts')
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub.split(' ').slice(0, 2).join(' ')}\n`)
    const out = await ssh(port, path.join(runner, 'client'), knownHosts, 'docker ps && id -un')
    expect(out.stdout).toMatch(/^CONTAINER ID/)
    expect(out.stdout).toMatch(/\nrchvm\n/)
    // work root writable by rchvm
    await ssh(port, path.join(runner, 'client'), knownHosts, `test -O ${sshd.workRoot} && touch ${sshd.workRoot}/x`)

    // a different pinned key is refused
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(runner, 'other')])
    const otherKh = path.join(runner, 'known_hosts.other')
    const otherPub = fs.readFileSync(path.join(runner, 'other.pub'), 'utf8').split(' ').slice(0, 2).join(' ')
    fs.writeFileSync(otherKh, `[127.0.0.1]:${port} ${otherPub}\n`)
    const refused = await errorOf(ssh(port, path.join(runner, 'client'), otherKh, 'true'))
    expect((refused as Error & { stderr?: string }).stderr).toMatch(/Host key verification failed/)

    await sshd.stop()
    name = undefined
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), resolve(true)))
      s.once('error', () => resolve(false))
    })
    expect(open).toBe(false)
    expect(fs.existsSync(sshd.workRoot)).toBe(false)
  })
})
