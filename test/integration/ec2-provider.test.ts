/**
 * The EC2 provider end to end through dist/index.js, against moto's EC2 API on loopback:
 * launch (tags at creation, IMDSv2, encrypted root volume, shutdown = terminate, keys in user
 * data) -> wait for running and for the address tag -> SSH with the pinned host key -> a run
 * step and a container step -> cleanup terminates the instance. Also: prepare_job killed
 * half-way, an instance that never boots (acquire deadline), a host key that is not the pinned
 * one, sshd that comes up after the address: none leaves an instance running.
 *
 * moto starts no machines: test/helpers/fake-instance.ts stands in for the booting instance
 * (reads the user data back through the API, starts a loopback sshd with those keys, publishes
 * 127.0.0.1:PORT as the instance's rch-endpoint tag). Never connects to moto's invented IPs.
 * Needs `bash scripts/testenv/moto.sh start`, root (instance sshd) and dockerd (scripts/test.sh).
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import {
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeVolumesCommand,
  type EC2Client,
  type Instance,
  RunInstancesCommand,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import { ec2Client, loadMoto, motoImageId } from '../helpers/ec2-env'
import {
  EC2_HOOK_ENV,
  LIVE_STATES as LIVE,
  describeInstance,
  dumpRun,
  ec2RunnerConfig,
  hookCall,
  hookPrepare,
  instanceName,
  instancesOfOwner,
  startInstanceBooter,
  tagsOf,
  waitInstanceState,
  type InstanceBooter
} from '../helpers/fake-instance'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy'
import { errorLines, otherOwner } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import { waitUntil } from '../helpers/wait'
import { parseUserData } from '../../src/providers/user-data'

jest.setTimeout(180_000)
// the test process's own SDK client would warn about Node 20 (the hook silences it itself)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
const execFileP = promisify(execFile)
const OWNER_TAG = 'remote-container-hooks:owner'

let ec2: EC2Client
let ami: string

beforeAll(async () => {
  ec2 = ec2Client()
  ami = await motoImageId(ec2)
})
afterAll(() => ec2?.destroy())

const describe1 = (id: string) => describeInstance(ec2, id)
const instancesOf = (runner: FakeRunner, states?: string[]) => instancesOfOwner(ec2, runner.owner, states)
const waitState = (id: string, want: string) => waitInstanceState(ec2, id, want)

/** An instance in moto (eu-west-1) with the owner and runner-host tags the hook's launches carry. */
const plant = async (owner: string, runnerHost: string, more: { Key: string; Value: string }[] = []): Promise<string> =>
  (
    await ec2.send(
      new RunInstancesCommand({
        ImageId: ami,
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [
          {
            ResourceType: 'instance',
            Tags: [{ Key: OWNER_TAG, Value: owner }, { Key: 'remote-container-hooks:runner-host', Value: runnerHost }, ...more]
          }
        ]
      })
    )
  ).Instances![0].InstanceId!
const mode = (p: string) => fs.statSync(p).mode & 0o777
/** "ssh-ed25519 AAAA..." of an OpenSSH private key file. */
const pubOf = async (privateKeyFile: string) =>
  (await execFileP('ssh-keygen', ['-y', '-f', privateKeyFile])).stdout.trim().split(' ').slice(0, 2).join(' ')
const keyBody = (k: string) => k.trim().split(/\s+/).slice(0, 2).join(' ')
/** The job's local folder on the runner host (src/main.ts localRoot + src/session.ts jobLocalDir). */
const localDirOf = (owner: string, jobId: string) => path.join(os.tmpdir(), `rch-${process.getuid!()}`, `${owner}-${jobId}`)
/** The job's local folder for a state (the hook derives it from owner and job id; the state does not name it). */
const localDirOfState = (state: any) => localDirOf(state.owner, state.jobId)
const dump = dumpRun
const call = hookCall
const prepare = (runner: FakeRunner, args: unknown) => hookPrepare(runner, args)

function newRunner(label: string, name: string, endpoint: string, provider: Record<string, unknown> = {}): FakeRunner {
  return new FakeRunner({
    name: `ec2-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    config: ec2RunnerConfig({ endpoint, imageId: ami, name, provider })
  })
}

describe('a job on an ephemeral EC2 instance (moto + loopback stand-in), through dist/index.js', () => {
  const name = instanceName('ec2e2e')
  let proxy: FaultProxy // no faults: records the hook's EC2 calls
  let runner: FakeRunner
  let booter: InstanceBooter
  let prep: HookRun
  let state: any
  let id: string

  beforeAll(async () => {
    proxy = await startFaultProxy()
    runner = newRunner('e2e', name, proxy.endpoint)
    // the address tag appears 2.5 s after sshd is up: the hook must wait for it and say so
    booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, tagDelayMs: 2500 })
  })
  afterAll(async () => {
    if (runner?.state) await call(runner, 'cleanup_job', {})
    await booter?.stop()
    await proxy?.close()
    runner?.dispose()
  })

  test('prepare_job launches, waits for running and the address, connects with the pinned key and starts the job container', async () => {
    fs.writeFileSync(path.join(runner.workspace, 'host-file.txt'), 'from the runner host\n')
    prep = await prepare(runner, { container: runner.jobContainer(testImages.glibc), services: [] })
    expect({ errors: errorLines(prep), code: prep.code, stderr: prep.stderr }).toEqual({ errors: [], code: 0, stderr: '' })
    state = prep.response.state
    id = state.host.instanceId
    expect(id).toMatch(/^i-[0-9a-f]{17}$/)
    expect(booter.errors).toEqual([])
    const inst = booter.instances.get(id)!
    expect(inst).toBeDefined()
    // the SSH endpoint is the loopback sshd, never an address moto invented
    expect(state.host).toMatchObject({ host: '127.0.0.1', port: inst.port, user: 'rchvm' })
    expect(prep.stdout).toContain(`[remote-hooks] launched ${id} (on-demand m7i.large)`)
    expect(prep.stdout).toMatch(new RegExp(`\\[remote-hooks\\] waiting for ${id} \\(running, no tag:rch-endpoint yet, \\d+ s\\)`))
    expect(prep.stdout).toContain(`[remote-hooks] using 127.0.0.1:${inst.port}`)
    expect(prep.response.context.container.id).toMatch(/^[0-9a-f]{64}$/)
    // no busy polling while the tag is missing (backoff 0.5 s, x1.5 per round)
    expect(proxy.calls('DescribeInstances').length).toBeLessThan(10)
  })

  test('tags at creation on the instance and its volume; IMDSv2 hop limit 1; encrypted root volume; shutdown terminates', async () => {
    const owner = runner.owner
    // tags come with RunInstances (TagSpecifications for instance and volume), never afterwards
    const runs = proxy.calls('RunInstances')
    expect(runs).toHaveLength(1)
    expect(proxy.calls('CreateTags')).toEqual([])
    const p = runs[0].params
    expect([p.get('TagSpecification.1.ResourceType'), p.get('TagSpecification.2.ResourceType')].sort()).toEqual(['instance', 'volume'])

    const inst = await describe1(id)
    const launchedAt = tagsOf(inst)['remote-container-hooks:launched-at']
    const expected = {
      team: 'platform',
      Name: `rch-${state.jobId}`,
      [OWNER_TAG]: owner,
      'remote-container-hooks:job-id': state.jobId,
      'remote-container-hooks:runner': runner.name,
      'remote-container-hooks:runner-host': os.hostname(),
      'remote-container-hooks:repository': 'acme/widgets',
      'remote-container-hooks:workflow': '.github/workflows/ec2.yml',
      'remote-container-hooks:run-id': '9876543210',
      'remote-container-hooks:run-attempt': '2',
      'remote-container-hooks:job': 'build',
      'remote-container-hooks:launched-at': launchedAt,
      'remote-container-hooks:expires-at': new Date(Date.parse(launchedAt) + 360 * 60_000).toISOString(),
      // the fleet ledger reservation it was launched under, also kept in the lease
      'remote-container-hooks:reservation': state.host.reservation
    }
    expect(state.host.reservation).toMatch(/^[0-9a-f-]{36}$/)
    expect(Math.abs(Date.parse(launchedAt) - Date.now())).toBeLessThan(120_000)
    // plus the endpoint tag the stand-in instance published
    expect(tagsOf(inst)).toEqual({ ...expected, 'rch-endpoint': `127.0.0.1:${state.host.port}` })
    expect(inst.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' })
    expect(inst.InstanceType).toBe('m7i.large')
    expect(inst.InstanceLifecycle).toBeUndefined() // on-demand

    const vols = inst.BlockDeviceMappings ?? []
    expect(vols.length).toBeGreaterThanOrEqual(1)
    const root = vols.find((b) => b.DeviceName === inst.RootDeviceName) ?? vols[0]
    const v = (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [root.Ebs!.VolumeId!] }))).Volumes![0]
    expect(v.Encrypted).toBe(true)
    expect(tagsOf(v)).toEqual(expected)

    const sd = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'instanceInitiatedShutdownBehavior' }))
    expect(sd.InstanceInitiatedShutdownBehavior?.Value).toBe('terminate')
  })

  test('trust: user data carries the host key and the client PUBLIC key only; state and responses carry no key; key files 0600', async () => {
    const ud = (await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'userData' }))).UserData!.Value!
    const script = Buffer.from(ud, 'base64').toString('utf8')
    const keys = parseUserData(script)!
    expect(keys).not.toBeNull()
    expect(keys.maxLifetimeMinutes).toBe(360)
    // self-destruct armed from user data
    expect(script).toMatch(/--on-active=360m/)
    // exactly one private key in it: the host key
    expect(script.match(/BEGIN OPENSSH PRIVATE KEY/g)).toHaveLength(1)

    const identity = state.host.identityFile as string
    const knownHosts = state.host.knownHostsFile as string
    expect(path.dirname(identity)).toBe(localDirOfState(state))
    expect(mode(localDirOfState(state))).toBe(0o700)
    expect(mode(identity)).toBe(0o600)
    expect(mode(knownHosts)).toBe(0o600)
    // the client's private key is not in the user data, its public half is
    const clientPrivate = fs.readFileSync(identity, 'utf8')
    // (the first base64 line is the same for every unencrypted ed25519 key: "openssh-key-v1 none none")
    const secretLines = clientPrivate
      .split('\n')
      .filter((l) => l.length > 20 && !l.startsWith('-----'))
      .slice(1)
    const flat = (s: string) => s.replace(/\s+/g, '')
    expect(secretLines.length).toBeGreaterThanOrEqual(3)
    expect(flat(script)).not.toContain(flat(secretLines.join('')))
    for (const line of secretLines) expect(script).not.toContain(line)
    expect(keyBody(keys.clientPublicKey)).toBe(await pubOf(identity))
    // the pinned key is the public half of the host key handed over in user data
    const hostKeyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rch-ec2-test-')), 'host')
    fs.writeFileSync(hostKeyFile, keys.hostPrivateKey, { mode: 0o600 })
    const hostPub = await pubOf(hostKeyFile)
    fs.rmSync(path.dirname(hostKeyFile), { recursive: true, force: true })
    expect(fs.readFileSync(knownHosts, 'utf8')).toBe(`[127.0.0.1]:${state.host.port} ${hostPub}\n`)

    // state (which the runner stores and hands back) holds ids and paths only
    const text = JSON.stringify(prep.response)
    expect(text).not.toMatch(/PRIVATE KEY|ssh-ed25519|AAAAC3NzaC1lZDI1NTE5/)
    for (const line of secretLines) expect(text).not.toContain(line)
    expect(prep.stdout + prep.stderr).not.toMatch(/PRIVATE KEY|AAAAC3NzaC1lZDI1NTE5/)
  })

  test('a run step and a container step run on the instance', async () => {
    const { args } = runner.scriptStep('cat host-file.txt; echo "user=$(id -u)"; echo made-on-the-vm > vm-file.txt\n')
    const r = await call(runner, 'run_script_step', args)
    expect({ code: r.code, stderr: r.stderr, out: r.code ? dump(r) : '' }).toEqual({ code: 0, stderr: '', out: '' })
    expect(r.stdout).toContain('from the runner host')
    expect(fs.readFileSync(path.join(runner.workspace, 'vm-file.txt'), 'utf8')).toBe('made-on-the-vm\n')

    const c = runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: ['-c', '"echo', 'action-ran;', 'cat', '/github/workspace/vm-file.txt;', 'echo', 'from-action=yes', '>>', '$GITHUB_OUTPUT"']
    })
    const r2 = await call(runner, 'run_container_step', c.args)
    expect({ code: r2.code, stderr: r2.stderr, out: r2.code ? dump(r2) : '' }).toEqual({ code: 0, stderr: '', out: '' })
    expect(r2.stdout).toContain('action-ran')
    expect(r2.stdout).toContain('made-on-the-vm')
    expect(fs.readFileSync(c.fc.files.GITHUB_OUTPUT, 'utf8')).toBe('from-action=yes\n')
  })

  test('cleanup_job terminates the instance (terminated in the API), removes the local keys, and is idempotent', async () => {
    const r = await call(runner, 'cleanup_job', {})
    expect({ errors: errorLines(r), code: r.code }).toEqual({ errors: [], code: 0 })
    expect(r.stdout).toContain(`[remote-hooks] terminated ${id}`)
    expect(proxy.calls('TerminateInstances').map((c) => c.params.get('InstanceId.1'))).toEqual([id])
    await waitState(id, 'terminated')
    expect(await instancesOf(runner, LIVE)).toEqual([])
    expect(fs.existsSync(localDirOfState(state))).toBe(false)
    // the stand-in sees the termination and stops its sshd
    const inst = booter.instances.get(id)!
    await waitUntil(() => inst.gone, 5000, 100)
    expect(inst.gone).toBe(true)

    const again = await call(runner, 'cleanup_job', {})
    expect({ errors: errorLines(again), code: again.code }).toEqual({ errors: [], code: 0 })
    runner.state = null
  })
})

describe('acquire: waits, deadlines and pinning (no instance outlives a failed prepare_job)', () => {
  test('sshd comes up after the address is published: the hook retries SSH until it answers', async () => {
    const name = instanceName('ec2late')
    const runner = newRunner('late', name, loadMoto().endpoint)
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, sshdDelayMs: 3000 })
    try {
      const r = await prepare(runner, { container: runner.jobContainer(testImages.glibc), services: [] })
      expect({ errors: errorLines(r), code: r.code }).toEqual({ errors: [], code: 0 })
      expect(booter.errors).toEqual([])
      const c = await call(runner, 'cleanup_job', {})
      expect(c.code).toBe(0)
      runner.state = null
      expect(await instancesOf(runner, LIVE)).toEqual([])
    } finally {
      if (runner.state) await call(runner, 'cleanup_job', {})
      await booter.stop()
      runner.dispose()
    }
  })

  test('sshd answers before cloud-init finished (docker group, work root): the hook waits for the boot setup and reconnects', async () => {
    const name = instanceName('ec2ci')
    const runner = newRunner('cloudinit', name, loadMoto().endpoint)
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, cloudInitDelayMs: 3500 })
    try {
      const r = await prepare(runner, { container: runner.jobContainer(testImages.glibc), services: [] })
      expect({ errors: errorLines(r), code: r.code }).toEqual({ errors: [], code: 0 })
      expect(r.stdout).toMatch(/waiting for i-[0-9a-f]+ \(cloud-init, \d+ s\)/)
      expect(booter.errors).toEqual([])
      const c = await call(runner, 'cleanup_job', {})
      expect(c.code).toBe(0)
      runner.state = null
    } finally {
      if (runner.state) await call(runner, 'cleanup_job', {})
      await booter.stop()
      runner.dispose()
    }
  })

  test('an instance that never boots: prepare_job fails at the acquire deadline with one ::error:: and terminates it', async () => {
    const name = instanceName('ec2never')
    const runner = newRunner('never', name, loadMoto().endpoint, { acquireTimeoutSeconds: 18 })
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, neverBoot: true })
    try {
      const r = await prepare(runner, { container: runner.jobContainer(testImages.glibc), services: [] })
      const [inst] = await instancesOf(runner)
      expect(inst).toBeDefined()
      const id = inst.InstanceId!
      expect(r.code).not.toBe(0)
      expect(errorLines(r)).toEqual([
        expect.stringMatching(new RegExp(`^::error::${id} not usable after 18 s \\(state running; provider.acquireTimeoutSeconds\\)`))
      ])
      expect(r.ms).toBeGreaterThanOrEqual(17_000)
      expect(r.ms).toBeLessThan(33_000)
      // It said what it waited for at the first retry and again 10 s later, once per 10 s, not once
      // per attempt (every 0.5-5 s). The first note may still say "pending" on a loaded machine.
      const waits = r.stdout.match(new RegExp(`\\[remote-hooks\\] waiting for ${id} \\([^)]*\\)`, 'g')) ?? []
      expect(waits.slice(0, 2)).toEqual([expect.stringMatching(/, \d+ s\)$/), expect.stringMatching(/, \d+ s\)$/)])
      expect(waits.length).toBeLessThanOrEqual(3)
      expect(waits).toContainEqual(expect.stringMatching(/\(running, no tag:rch-endpoint yet, \d+ s\)$/))
      expect(r.stdout).toContain(`[remote-hooks] terminated ${id}`)
      await waitState(id, 'terminated')
      expect(fs.existsSync(localDirOf(tagsOf(inst)['remote-container-hooks:owner'], tagsOf(inst)['remote-container-hooks:job-id']))).toBe(
        false
      )
      // cleanup_job after a failed prepare_job (state null) finds nothing left
      const c = await call(runner, 'cleanup_job', {}, { state: null })
      expect({ errors: errorLines(c), code: c.code }).toEqual({ errors: [], code: 0 })
      expect(c.stdout).toContain("cleaned up this runner's leftovers: nothing found")
    } finally {
      await booter.stop()
      runner.dispose()
    }
  })

  test('a host key other than the pinned one is refused at once (no retry until the deadline) and the instance terminated', async () => {
    const name = instanceName('ec2mitm')
    const runner = newRunner('mitm', name, loadMoto().endpoint)
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, wrongHostKey: true })
    try {
      const r = await prepare(runner, { container: runner.jobContainer(testImages.glibc), services: [] })
      const [inst] = await instancesOf(runner)
      const id = inst.InstanceId!
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/host key/i)
      expect(errors[0]).toMatch(/does not match the pinned key/)
      // refused, not waited on: far below the 60 s acquire deadline
      expect(r.ms).toBeLessThan(30_000)
      expect(r.stdout).toContain(`[remote-hooks] terminated ${id}`)
      await waitState(id, 'terminated')
      expect(booter.errors).toEqual([])
      expect(fs.existsSync(localDirOf(tagsOf(inst)['remote-container-hooks:owner'], tagsOf(inst)['remote-container-hooks:job-id']))).toBe(
        false
      )
    } finally {
      await booter.stop()
      runner.dispose()
    }
  })

  test("a live instance left by an earlier job of the same runner is terminated by the runner's next prepare_job; ones the operator tagged keep are left running", async () => {
    const name = instanceName('ec2left')
    const runner = newRunner('left', name, loadMoto().endpoint)
    // What a job whose prepare_job was killed and whose cleanup_job never ran leaves: a running
    // instance with this runner's owner tag, launched from this machine.
    const leftover = await plant(runner.owner, os.hostname())
    // These must stay: another runner's, and a same-named runner's on another machine.
    const other = await plant(otherOwner('another-runner'), os.hostname())
    const elsewhere = await plant(runner.owner, 'another-runner-host')
    // And one the operator tagged keep, to look at it: left running, as reap leaves it.
    const kept = await plant(runner.owner, os.hostname(), [{ Key: 'remote-container-hooks:keep', Value: 'debugging' }])
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, ignore: new Set([leftover, elsewhere, kept]) })
    let mine = ''
    try {
      const p = await prepare(runner, { container: runner.jobContainer(testImages.tiny), services: [] })
      expect({ code: p.code, out: p.code === 0 ? '' : dump(p, booter) }).toEqual({ code: 0, out: '' })
      expect(p.stdout).toContain(`terminating ${leftover}, left by an earlier job of this runner`)
      await waitState(leftover, 'terminated')
      mine = (runner.state as { host: { instanceId: string } }).host.instanceId
      expect((await describe1(mine)).State?.Name).toBe('running')
      expect((await describe1(other)).State?.Name).toBe('running')
      expect((await describe1(elsewhere)).State?.Name).toBe('running')
      expect((await describe1(kept)).State?.Name).toBe('running')
      expect(p.stdout).toContain(`[remote-hooks] ${kept} carries remote-container-hooks:keep: left running`)
      expect(p.stdout).not.toContain(`terminating ${kept}`)
      // The operator tags the job's own instance keep while the job runs: its cleanup leaves it running too.
      await ec2.send(new CreateTagsCommand({ Resources: [mine], Tags: [{ Key: 'remote-container-hooks:keep', Value: 'look' }] }))
      const c = await call(runner, 'cleanup_job', {})
      expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
      expect(c.stdout).toContain(`[remote-hooks] ${mine} carries remote-container-hooks:keep: left running`)
      runner.state = null
      expect((await describe1(mine)).State?.Name).toBe('running')
      // Control: the same cleanup of a job whose instance is not kept terminates it (the test before).
      expect(c.stdout).not.toContain(`terminated ${mine}`)
    } finally {
      await ec2
        .send(new TerminateInstancesCommand({ InstanceIds: [other, elsewhere, kept, ...(mine ? [mine] : [])] }))
        .catch(() => undefined)
      await booter.stop()
      runner.dispose()
    }
  })

  test("provider.region changed while the job ran: cleanup_job fails naming state.host.region, and still terminates the runner's instance where it was launched", async () => {
    const name = instanceName('ec2region')
    const runner = newRunner('region', name, loadMoto().endpoint)
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name })
    // Control: another runner's instance in that region, launched from this machine, stays.
    const other = await plant(otherOwner('another-runner'), os.hostname())
    try {
      const p = await prepare(runner, { container: runner.jobContainer(testImages.tiny), services: [] })
      expect({ code: p.code, out: p.code === 0 ? '' : dump(p, booter) }).toEqual({ code: 0, out: '' })
      const id = (runner.state as { host: { instanceId: string; region: string } }).host.instanceId
      expect((runner.state as { host: { region: string } }).host.region).toBe('eu-west-1')
      // The operator moves the runner to another region while the job runs.
      const cfg = JSON.parse(fs.readFileSync(runner.configFile, 'utf8'))
      cfg.provider.region = 'us-east-1'
      fs.writeFileSync(runner.configFile, JSON.stringify(cfg))
      const c = await call(runner, 'cleanup_job', {})
      expect({ code: c.code, errors: errorLines(c) }).toEqual({
        code: 64,
        errors: ['::error::invalid state from the runner: state.host.region: differs from provider.region (us-east-1)']
      })
      expect(['shutting-down', 'terminated']).toContain((await describe1(id)).State?.Name)
      expect(c.stdout).toContain("the refused state's machine is in region eu-west-1: cleaning up this runner's leftovers there too")
      expect(c.stdout).toContain(`[remote-hooks] terminated ${id}`)
      await waitState(id, 'terminated')
      expect(await instancesOf(runner, LIVE)).toEqual([])
      expect((await describe1(other)).State?.Name).toBe('running')
      runner.state = null
    } finally {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [other] })).catch(() => undefined)
      await booter.stop()
      runner.dispose()
    }
  })

  test('prepare_job killed (SIGKILL) after the instance exists: cleanup_job with state null terminates it', async () => {
    const name = instanceName('ec2kill')
    const runner = newRunner('kill', name, loadMoto().endpoint)
    // the address comes late: the hook is still waiting when it is killed
    const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name, tagDelayMs: 8000 })
    try {
      const run = runner.start(
        'prepare_job',
        { container: runner.jobContainer(testImages.glibc), services: [] },
        { state: null, env: EC2_HOOK_ENV }
      )
      let live: Instance[] = []
      await waitUntil(async () => (live = await instancesOf(runner, ['pending', 'running'])).length > 0, 30_000, 100)
      expect(live).toHaveLength(1)
      run.child.kill('SIGKILL')
      const r = await run.done
      expect(r.signal).toBe('SIGKILL')
      const id = live[0].InstanceId!
      expect((await describe1(id)).State?.Name).toBe('running') // nobody terminated it

      const c = await call(runner, 'cleanup_job', {}, { state: null })
      expect({ errors: errorLines(c), code: c.code }).toEqual({ errors: [], code: 0 })
      expect(c.stdout).toContain(`[remote-hooks] terminated ${id}`)
      expect(c.stdout).toContain(`cleaned up this runner's leftovers: released ${id}`)
      expect(await instancesOf(runner, LIVE)).toEqual([])
      await waitState(id, 'terminated')
      // The killed prepare_job's local folder (its client key) went too.
      expect(
        fs.existsSync(localDirOf(tagsOf(live[0])['remote-container-hooks:owner'], tagsOf(live[0])['remote-container-hooks:job-id']))
      ).toBe(false)
      fs.rmSync(localDirOf(tagsOf(live[0])['remote-container-hooks:owner'], tagsOf(live[0])['remote-container-hooks:job-id']), {
        recursive: true,
        force: true
      })
    } finally {
      await booter.stop()
      runner.dispose()
    }
  })
})
