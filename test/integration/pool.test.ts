/**
 * The ec2-pool provider end to end through dist/index.js, against moto's EC2 + Auto Scaling APIs,
 * with loopback sshds standing in for the group's members (test/helpers/pool-env.ts: each member
 * its own Linux user, work root ~/rch and host key, published in its host-key tag). Proves: a
 * warm member is leased, pinned by its tag's key, used and given back scrubbed (what a job left
 * through Docker or as the SSH user is gone, the lease record says free); a runner SIGKILLed
 * mid-job lets its lease lapse and the next job scrubs the member before using it;
 * reuse.maxJobsPerVm recycles a member through the group; a stopped member is started on demand;
 * an exhausted pool without scale-out fails loudly with its state.
 */
import { execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import {
  autoscaling,
  poolHookConfig,
  poolKeyPair,
  startTestPool,
  userPids,
  type Pool,
  type PoolMember,
  type PoolOptions
} from '../helpers/pool-env'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { EC2_HOOK_ENV, dumpRun, hookCall, hookPrepare, tagsOf } from '../helpers/fake-instance'
import { errorLines } from '../helpers/conformance'
import { testImages, testenvDir } from '../helpers/testenv'
import { waitUntil } from '../helpers/wait'
import { ec2Client, startOwnMoto, type OwnMoto } from '../helpers/ec2-env'
import { DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2'

jest.setTimeout(240_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
const execFileP = promisify(execFile)
const MACHINE = 'dev.remote-container-hooks.machine'

let dir: string
let key: string
let pub: string
let ec2: EC2Client
let moto: OwnMoto | undefined

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-pool-'))
  ;({ key, pub } = poolKeyPair(dir))
  // the longest file, polling its groups all along: on a moto of its own (ec2-env.ts)
  moto = await startOwnMoto()
  ec2 = ec2Client()
})
afterAll(async () => {
  ec2?.destroy()
  await moto?.stop()
  fs.rmSync(dir, { recursive: true, force: true })
})

const pools: Pool[] = []
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close()
})

async function pool(name: string, size: number, over: Partial<PoolOptions> = {}): Promise<Pool> {
  return (await startTestPool(pools, name, size, pub, over)).pool
}

function runnerFor(p: Pool, provider: Record<string, unknown> = {}, name?: string): FakeRunner {
  return new FakeRunner({
    parent: dir,
    ...(name ? { name } : {}),
    config: poolHookConfig(p, key, { lease: { ttlSeconds: 15 }, waitTimeoutSeconds: 60, ...provider })
  })
}

const jobArgs = (r: FakeRunner): unknown => ({ container: r.jobContainer(testImages.tiny), services: [] })
const step = (r: FakeRunner, script: string): Promise<HookRun> => hookCall(r, 'run_script_step', r.scriptStep(script).args)
const cleanup = (r: FakeRunner): Promise<HookRun> => hookCall(r, 'cleanup_job', {})
/** Runs `cmd` on the member as its SSH user, as a job with the Docker socket could (it is this machine). */
const asMember = async (m: PoolMember, cmd: string): Promise<string> =>
  (await execFileP('runuser', ['-u', m.user, '--', 'sh', '-c', cmd])).stdout
const dockerIds = async (what: 'ps -a' | 'network ls' | 'volume ls', id: string): Promise<string[]> =>
  (await execFileP('sh', ['-c', `docker ${what} -q --filter label=${MACHINE}=${id}`])).stdout.split('\n').filter(Boolean)
const memberOf = (r: FakeRunner): string => (r.state as { host: { instanceId: string } }).host.instanceId

/** Whether the group says the member is protected from scale-in. */
async function protectedNow(p: Pool, id: string): Promise<boolean | undefined> {
  return (await p.describe())!.instances.find((i) => i.id === id)?.protectedFromScaleIn
}

async function instanceTags(id: string): Promise<Record<string, string>> {
  const res = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
  return tagsOf(res.Reservations?.[0]?.Instances?.[0] ?? {})
}

test('a job leases a warm member pinned by its tag, and gives it back scrubbed', async () => {
  const p = await pool('pool-use', 2)
  const r = runnerFor(p)
  const prep = await hookPrepare(r, jobArgs(r))
  expect(prep.code).toBe(0)
  expect(prep.stderr + prep.stdout).toMatch(/leased 127\.0\.0\.1:\d+ \(i-[0-9a-f]+ of pool /)
  const id = memberOf(r)
  const m = p.member(id)
  const host = (r.state as { host: Record<string, unknown> }).host
  expect(host).toMatchObject({ kind: 'ec2-pool', user: m.user, workRoot: m.workRoot, instanceId: id, region: 'eu-west-1' })
  expect(fs.readFileSync(host.knownHostsFile as string, 'utf8')).toBe(`[127.0.0.1]:${m.port} ${m.hostKey}\n`)
  const lease = await p.readLease(id)
  expect(lease).toMatch(new RegExp(`^held ${(host as { token: string }).token} \\d+ `))
  // The job's objects carry the member's label (and live in its own work root).
  expect(await dockerIds('ps -a', id)).toHaveLength(1)

  const s = await step(r, 'echo "on the member"; echo made > made-by-step.txt\n')
  expect(s.code).toBe(0)
  expect(s.stdout).toContain('on the member')
  expect(fs.readFileSync(path.join(r.workspace, 'made-by-step.txt'), 'utf8')).toBe('made\n')

  // What a hostile job leaves behind, through the Docker socket and as the SSH user.
  await asMember(m, `docker run -d --pull never --label ${MACHINE}=${id} ${testImages.tiny} sleep 600 >/dev/null`)
  await asMember(m, `docker network create --label ${MACHINE}=${id} left-net-${id} >/dev/null`)
  await asMember(m, `docker volume create --label ${MACHINE}=${id} left-vol-${id} >/dev/null`)
  await asMember(m, `docker tag ${testImages.tiny} rch-pool-scope/poison-${id}:1`)
  await asMember(
    m,
    'mkdir -p ~/.docker && echo {} > ~/.docker/config.json; echo x > /tmp/left-$(id -u); setsid sleep 600 </dev/null >/dev/null 2>&1 &'
  )
  const before = await userPids(m.user)
  expect(before.length).toBeGreaterThan(0) // positive control: the leftovers exist
  expect(await dockerIds('ps -a', id)).toHaveLength(2)

  const c = await cleanup(r)
  expect(c.code).toBe(0)
  expect(c.stdout + c.stderr).toMatch(/scrubbed i-[0-9a-f]+: /)
  expect(await p.readLease(id)).toBe('free clean\n')
  expect(await dockerIds('ps -a', id)).toEqual([])
  expect(await dockerIds('network ls', id)).toEqual([])
  expect(await dockerIds('volume ls', id)).toEqual([])
  expect((await execFileP('docker', ['images', '-q', `rch-pool-scope/poison-${id}:1`])).stdout.trim()).toBe('')
  expect((await execFileP('docker', ['images', '-q', testImages.tiny])).stdout.trim()).not.toBe('') // the cache stays
  expect(await asMember(m, 'ls -A ~/.docker 2>/dev/null; ls /tmp | grep -c "^left-$(id -u)$" || true')).toBe('0\n')
  // Ended (a zombie is only waiting for whoever adopted it to reap it), sshd's own session processes aside.
  // ps exits 1 when the user has no process at all (sshd's session already gone): nothing is left.
  const left = (
    await execFileP('ps', ['-u', m.user, '-o', 'stat=,comm=']).catch((e: { code?: number; stdout?: string }) => {
      if (e.code === 1 && !e.stdout) return { stdout: '' }
      throw e
    })
  ).stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([stat, comm]) => stat && !stat.startsWith('Z') && !comm.startsWith('sshd'))
  expect(left).toEqual([])
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:jobs': '1' })
})

test('a runner killed mid-job: its lease lapses, and the next job scrubs the member before using it', async () => {
  const p = await pool('pool-lapse', 1)
  const r = runnerFor(p)
  // The hook's parent plays the runner's worker: a shell that stays after prepare_job, killed later.
  const input = JSON.stringify({ command: 'prepare_job', responseFile: path.join(dir, 'resp.json'), args: jobArgs(r), state: null })
  fs.writeFileSync(path.join(dir, 'resp.json'), '')
  fs.writeFileSync(path.join(dir, 'in.json'), input + '\n')
  const worker = spawn('sh', ['-c', `"${process.execPath}" "${r.hook}" < "${dir}/in.json"; echo "exit $?"; exec sleep 600`], {
    cwd: r.workspace,
    env: { ...r.env(EC2_HOOK_ENV) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  worker.stdout.on('data', (c) => (out += c))
  worker.stderr.on('data', (c) => (out += c))
  expect(await waitUntil(() => /exit \d+/.test(out), 90_000)).toBe(true)
  expect(out).toMatch(/exit 0/)
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'resp.json'), 'utf8')).state
  const id = state.host.instanceId as string
  const m = p.member(id)
  await asMember(m, `docker run -d --pull never --label ${MACHINE}=${id} ${testImages.tiny} sleep 600 >/dev/null`)
  expect(await p.readLease(id)).toMatch(/^held /)

  process.kill(worker.pid!, 'SIGKILL')
  // Another runner waits for the member: it gets it once the lease lapses (ttl 15 s), scrubbed first.
  const r2 = runnerFor(p)
  const t0 = Date.now()
  const prep = await hookPrepare(r2, jobArgs(r2))
  expect(prep.code).toBe(0)
  expect(memberOf(r2)).toBe(id)
  expect(Date.now() - t0).toBeLessThan(15_000 + 40_000)
  expect(prep.stdout + prep.stderr).toMatch(/its last lease lapsed; scrubbing it before use/)
  // The job that died holding it never reached the release that counts a job: counted at the take-over.
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:jobs': '1' })
  // Only the new job's container is left of the member's objects.
  expect(await dockerIds('ps -a', id)).toHaveLength(1)
  expect((await cleanup(r2)).code).toBe(0)
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:jobs': '2' })
  expect((await cleanup(r)).code).toBe(0)
})

test('reuse.maxJobsPerVm: a member that served its jobs is replaced through the group', async () => {
  const p = await pool('pool-recycle', 1)
  const r = runnerFor(p, { reuse: { maxJobsPerVm: 1 } })
  expect((await hookPrepare(r, jobArgs(r))).code).toBe(0)
  const id = memberOf(r)
  const c = await cleanup(r)
  expect(c.code).toBe(0)
  expect(c.stdout + c.stderr).toMatch(/is replaced: /)
  await p.waitMember(id, 'gone', (m) => m.gone, 30_000)
  // The group launched a replacement, and the next job gets it.
  const [next] = await p.waitReady(1, 60_000).then((ms) => ms.filter((x) => x.id !== id))
  expect(next).toBeDefined()
  const r2 = runnerFor(p, { reuse: { maxJobsPerVm: 1 }, waitTimeoutSeconds: 90 })
  const prep = await hookPrepare(r2, jobArgs(r2), { limitMs: 120_000 })
  expect({ code: prep.code, out: prep.code ? dumpRun(prep) : '' }).toEqual({ code: 0, out: '' })
  expect(memberOf(r2)).not.toBe(id)
  expect(memberOf(r2)).toBe(next.id)
  expect((await cleanup(r2)).code).toBe(0)
})

test('a stopped member is started when no running one is free', async () => {
  const p = await pool('pool-stopped', 2)
  const [a, b] = p.members({ live: true })
  await p.stopMember(b.id)
  const r1 = runnerFor(p)
  expect((await hookPrepare(r1, jobArgs(r1))).code).toBe(0)
  expect(memberOf(r1)).toBe(a.id)
  const r2 = runnerFor(p)
  const prep = await hookPrepare(r2, jobArgs(r2), { limitMs: 120_000 })
  expect(prep.code).toBe(0)
  expect(prep.stdout + prep.stderr).toMatch(new RegExp(`starting stopped member ${b.id}`))
  expect(memberOf(r2)).toBe(b.id)
  expect((await cleanup(r2)).code).toBe(0)
  expect((await cleanup(r1)).code).toBe(0)
})

test('a stopped member started for a job is leased even though its sshd listens only seconds after EC2 says running', async () => {
  // Its tags (address, host key) are kept from before the stop, so it looks ready while sshd is down.
  const p = await pool('pool-late-sshd', 1, { behaviour: { resumeSshdDelayMs: 4000 } })
  const [a] = p.members({ live: true })
  await p.stopMember(a.id)
  const r = runnerFor(p, { waitTimeoutSeconds: 90 })
  const prep = await hookPrepare(r, jobArgs(r), { limitMs: 150_000 })
  expect({ code: prep.code, out: prep.code ? dumpRun(prep) : '' }).toEqual({ code: 0, out: '' })
  const out = prep.stdout + prep.stderr
  expect(out).toMatch(new RegExp(`starting stopped member ${a.id}`))
  // positive control: the job did reach it while sshd was down, and said so once
  expect(out.match(new RegExp(`pool member ${a.id}: .*ECONNREFUSED.*; trying the others`, 'g'))).toHaveLength(1)
  expect(memberOf(r)).toBe(a.id)
  expect((await cleanup(r)).code).toBe(0)
})

test('an exhausted pool without scale-out fails loudly with its state, and leaves no lease behind', async () => {
  const p = await pool('pool-full', 1)
  const r1 = runnerFor(p, { scaleOut: { enabled: false }, waitTimeoutSeconds: 5 })
  expect((await hookPrepare(r1, jobArgs(r1))).code).toBe(0)
  const r2 = runnerFor(p, { scaleOut: { enabled: false }, waitTimeoutSeconds: 5 })
  const prep = await hookPrepare(r2, jobArgs(r2))
  expect(prep.code).not.toBe(0)
  expect(errorLines(prep)).toEqual([
    expect.stringMatching(
      /^::error::pool pool-full-\S+: 1 of 1 busy, 0 starting, desired 1 of max 1, scale-out off: no member free after 5 s \(provider\.waitTimeoutSeconds\)$/
    )
  ])
  expect(prep.stdout + prep.stderr).toMatch(/1 of 1 busy/)
  // The waiting job left the member's queue; the holder is untouched.
  const id = memberOf(r1)
  expect(await p.readLease(id)).toMatch(/^held /)
  expect(fs.readFileSync(path.join(p.member(id).workRoot, 'pool', 'queue'), 'utf8')).toBe('')
  expect((await cleanup(r1)).code).toBe(0)
  void dumpRun
})

test('members that must not be used: a wrong host key is skipped, Docker down or a full disk is replaced', async () => {
  const p = await pool('pool-bad', 3, {
    behaviour: ({ ordinal }) => (ordinal === 0 ? { wrongHostKey: true } : ordinal === 1 ? { dockerDown: true } : { diskPercent: 95 })
  })
  const [mitm, noDocker, full] = [0, 1, 2].map((o) => p.members().find((m) => m.ordinal === o)!)
  const r = runnerFor(p, { waitTimeoutSeconds: 20, scaleOut: { enabled: false } })
  const prep = await hookPrepare(r, jobArgs(r))
  // Nothing usable: the job fails with the pool's state, after refusing each member for its own reason.
  expect(prep.code).not.toBe(0)
  const out = prep.stdout + prep.stderr
  expect(out).toMatch(new RegExp(`pool member ${mitm.id}: .*host key`, 'i'))
  // Docker's own words: its DOCKER_HOST names a dead socket
  expect(out).toMatch(new RegExp(`${noDocker.id} is replaced: Docker does not answer: .*Cannot connect to the Docker daemon`))
  expect(out).toMatch(new RegExp(`${full.id} is replaced: disk 9\\d % full \\(reuse.maxDiskPercent 90\\)`))
  expect(errorLines(prep)).toHaveLength(1)
  // The wrong-key member was never leased (no record); the others were tagged and ended through the group.
  expect(await p.readLease(mitm.id)).toBeNull()
  expect((await instanceTags(mitm.id))['remote-container-hooks:recycle']).toBeUndefined()
  for (const [m, why] of [
    [noDocker, /Docker does not answer/],
    [full, /disk 9\d % full/]
  ] as const) {
    expect((await instanceTags(m.id))['remote-container-hooks:recycle']).toMatch(why)
    await p.waitMember(m.id, 'gone', (x) => x.gone, 30_000)
  }
})

test('an exhausted pool scales out within MaxSize and the waiting job gets the new member', async () => {
  const p = await pool('pool-grow', 1, { maxSize: 2 })
  const r1 = runnerFor(p)
  expect((await hookPrepare(r1, jobArgs(r1))).code).toBe(0)
  const r2 = runnerFor(p, { waitTimeoutSeconds: 90 })
  const prep = await hookPrepare(r2, jobArgs(r2), { limitMs: 120_000 })
  expect({ code: prep.code, out: prep.code ? dumpRun(prep) : '' }).toEqual({ code: 0, out: '' })
  expect(prep.stdout + prep.stderr).toMatch(/asking for 2 members \(was 1, max 2\)/)
  expect(memberOf(r2)).not.toBe(memberOf(r1))
  expect((await p.describe())?.desiredCapacity).toBe(2)
  expect((await cleanup(r2)).code).toBe(0)
  expect((await cleanup(r1)).code).toBe(0)
})

test('cleanup_job without state (prepare_job was killed) gives back the member this runner holds, scrubbed', async () => {
  const p = await pool('pool-orphan', 2)
  const r = runnerFor(p)
  expect((await hookPrepare(r, jobArgs(r))).code).toBe(0)
  const id = memberOf(r)
  const other = p.members({ live: true }).find((m) => m.id !== id)!
  // Another runner's lease on the other member must stay as it is.
  const r2 = runnerFor(p)
  expect((await hookPrepare(r2, jobArgs(r2))).code).toBe(0)
  expect(memberOf(r2)).toBe(other.id)
  const c = await hookCall(r, 'cleanup_job', {}, { state: null })
  expect({ code: c.code, out: c.code ? dumpRun(c) : '' }).toEqual({ code: 0, out: '' })
  expect(c.stdout + c.stderr).toMatch(new RegExp(`released ${id}`))
  expect(await p.readLease(id)).toBe('free clean\n')
  expect(await dockerIds('ps -a', id)).toEqual([])
  expect(await p.readLease(other.id)).toMatch(/^held /)
  expect(await dockerIds('ps -a', other.id)).toHaveLength(1)
  expect((await cleanup(r2)).code).toBe(0)
})

test('jobs waiting for a member are served in the order they came', async () => {
  const p = await pool('pool-fair', 1)
  const holder = runnerFor(p)
  expect((await hookPrepare(holder, jobArgs(holder))).code).toBe(0)
  // Three jobs arrive one after the other while the only member is busy: each once the one before
  // is in the member's queue (its line there is the event, not a guessed delay).
  const queueFile = path.join(p.member(memberOf(holder)).workRoot, 'pool', 'queue')
  const queued = (): number => (fs.existsSync(queueFile) ? fs.readFileSync(queueFile, 'utf8').split('\n').filter(Boolean).length : 0)
  const waiters = [0, 1, 2].map(() => runnerFor(p, { waitTimeoutSeconds: 120 }))
  const served: number[] = []
  const runs: Promise<void>[] = []
  for (const [i, r] of waiters.entries()) {
    runs.push(
      (async () => {
        const prep = await hookPrepare(r, jobArgs(r), { limitMs: 150_000 })
        served.push(i)
        expect({ code: prep.code, out: prep.code ? dumpRun(prep) : '' }).toEqual({ code: 0, out: '' })
        expect(prep.stdout + prep.stderr).toMatch(/pool pool-fair-\S+: 1 of 1 busy.*waiting \d+ s/)
        expect((await cleanup(r)).code).toBe(0)
      })()
    )
    expect(await waitUntil(() => queued() === i + 1, 60_000, 100)).toBe(true)
  }
  expect((await cleanup(holder)).code).toBe(0)
  await Promise.all(runs)
  expect(served).toEqual([0, 1, 2])
  // The three jobs run one after another, each allowed 150 s: more than Jest's default 120 s for all.
}, 400_000)

test('maxJobsPerVm 1: a job that frees its own lease record cannot bring a second job onto its member', async () => {
  // One member: without the mark in EC2 the next job would get it back; with it, the group grows instead.
  const p = await pool('pool-single', 1, { maxSize: 2 })
  const r1 = runnerFor(p, { reuse: { maxJobsPerVm: 1 } })
  expect((await hookPrepare(r1, jobArgs(r1))).code).toBe(0)
  const id = memberOf(r1)
  // Marked for replacement in EC2 before the job's code runs.
  expect((await instanceTags(id))['remote-container-hooks:recycle']).toBe('served its one job')
  // The job (root on the member) writes its member's lease record as free and clean.
  const m = p.member(id)
  await asMember(m, `printf 'free clean\\n' > ~/rch/pool/lease`)
  expect(await p.readLease(id)).toBe('free clean\n') // positive control: the record says free
  const r2 = runnerFor(p, { reuse: { maxJobsPerVm: 1 }, waitTimeoutSeconds: 90 })
  const prep = await hookPrepare(r2, jobArgs(r2), { limitMs: 120_000 })
  expect({ code: prep.code, out: prep.code ? dumpRun(prep) : '' }).toEqual({ code: 0, out: '' })
  expect(memberOf(r2)).not.toBe(id)
  expect((await cleanup(r2)).code).toBe(0)
  expect((await cleanup(r1)).code).toBe(0)
})

test('a container action without prepare_job leases a member for its one step (work root ~/rch resolved there) and gives it back', async () => {
  const p = await pool('pool-step', 1)
  const r = runnerFor(p)
  // Longer than a renewal period (ttl 15 s / 3): the hook renews the lease while it runs (seen in
  // the member's record), and the step goes on (the control of the lost lease below).
  const c = r.containerStep({
    image: testImages.tiny,
    entryPoint: 'sh',
    args: ['-c', '"sleep', '7;', 'echo', 'from-action=yes', '>>', '$GITHUB_OUTPUT"']
  })
  const running = hookCall(r, 'run_container_step', c.args, { state: null })
  const [m] = p.members({ live: true })
  const expiry = async (): Promise<string | undefined> => /^held \S+ (\d+)/.exec((await p.readLease(m.id)) ?? '')?.[1]
  // Read once the action's container exists: the acquire's own renewals (during a scrub) come before.
  expect(await waitUntil(async () => (await dockerIds('ps -a', m.id)).length > 0, 30_000, 100)).toBe(true)
  const granted = await expiry()
  expect(granted).toBeDefined()
  // Renewed while the container still runs (the release renews too, after the container is gone).
  const renewedDuringStep = async (): Promise<boolean> =>
    ![granted, undefined].includes(await expiry()) && (await dockerIds('ps -a', m.id)).length > 0
  expect(await waitUntil(renewedDuringStep, 15_000, 200)).toBe(true)
  const run = await running
  expect({ code: run.code, out: run.code ? dumpRun(run) : '' }).toEqual({ code: 0, out: '' })
  expect(fs.readFileSync(c.fc.files.GITHUB_OUTPUT, 'utf8')).toContain('from-action=yes')
  expect(await p.readLease(m.id)).toBe('free clean\n')
  // The step's job folder went with the release (the scrub takes the whole jobs folder).
  expect(fs.existsSync(path.join(m.workRoot, 'jobs'))).toBe(false)
  expect(fs.existsSync(path.join(m.home, '~'))).toBe(false)
})

test('a container action whose member is taken while it runs (its renewal answers "lost") is stopped, and fails saying so', async () => {
  const p = await pool('pool-step-lost', 1)
  const r = runnerFor(p)
  const c = r.containerStep({ image: testImages.tiny, entryPoint: 'sh', args: ['-c', '"sleep', '300"'] })
  const run = hookCall(r, 'run_container_step', c.args, { state: null, limitMs: 90_000 })
  const [m] = p.members({ live: true })
  expect(await waitUntil(async () => (await dockerIds('ps -a', m.id)).length > 0, 60_000, 200)).toBe(true)
  // As if the lease had lapsed and another job had been granted the member.
  await asMember(m, `printf 'free clean\\n' > ~/rch/pool/lease`)
  const t0 = Date.now()
  const res = await run
  expect({ code: res.code, errors: errorLines(res) }).toEqual({
    code: 75,
    errors: [`::error::this machine's lease was not renewed ("lost"): another job may hold the machine now; the step was stopped`]
  })
  // Within a renewal period (ttl 15 s / 3), not at the hook's time limit.
  expect(Date.now() - t0).toBeLessThan(30_000)
  expect(await dockerIds('ps -a', m.id)).toEqual([])
})

test('a group that has no member and may not launch one fails the job at once, stating why', async () => {
  const p = await pool('pool-empty', 0, { maxSize: 0 })
  const r = runnerFor(p, { waitTimeoutSeconds: 120 })
  const t0 = Date.now()
  const prep = await hookPrepare(r, jobArgs(r))
  expect(prep.code).not.toBe(0)
  expect(Date.now() - t0).toBeLessThan(30_000)
  expect(errorLines(prep)).toEqual([
    expect.stringMatching(
      /^::error::pool pool-empty-\S+: 0 of 0 busy, 0 starting, desired 0 of max 0: no member can come \(provider\.autoScalingGroup\)$/
    )
  ])
})

test("members jobs hold are protected from scale-in: a desired capacity lowered under them (another host's stale SetDesiredCapacity) ends idle members only", async () => {
  const p = await pool('pool-protect', 2)
  const [r1, r2] = [runnerFor(p), runnerFor(p)]
  for (const r of [r1, r2]) {
    const prep = await hookPrepare(r, jobArgs(r))
    expect({ code: prep.code, out: prep.code === 0 ? '' : dumpRun(prep) }).toEqual({ code: 0, out: '' })
  }
  const [a, b] = [memberOf(r1), memberOf(r2)]
  expect(a).not.toBe(b)
  const group = async (): Promise<Record<string, boolean>> =>
    Object.fromEntries((await p.describe())!.instances.map((i) => [i.id, i.protectedFromScaleIn]))
  const lower = (): Promise<string> =>
    autoscaling('SetDesiredCapacity', { AutoScalingGroupName: p.name, DesiredCapacity: 0, HonorCooldown: false }, p.endpoint)
  expect(await group()).toEqual({ [a]: true, [b]: true })

  // Both busy: the group may end neither.
  await lower()
  expect(await group()).toEqual({ [a]: true, [b]: true })
  expect((await step(r1, 'echo still-on-a')).stdout).toContain('still-on-a')

  // r1's job ends: its member goes back to the pool unprotected (r2's stays protected).
  const c1 = await cleanup(r1)
  expect({ code: c1.code, errors: errorLines(c1) }).toEqual({ code: 0, errors: [] })
  expect(await group()).toEqual({ [a]: false, [b]: true })

  // Control: the same lowering now ends a member, the idle one only.
  await lower()
  expect(await group()).toEqual({ [b]: true })
  const s = await step(r2, 'echo still-on-b')
  expect({ code: s.code, seen: s.stdout.includes('still-on-b') }).toEqual({ code: 0, seen: true })
  const c2 = await cleanup(r2)
  expect({ code: c2.code, errors: errorLines(c2) }).toEqual({ code: 0, errors: [] })
  expect(await group()).toEqual({ [b]: false })
})

test("a job that rewrites its member's lease record as another job's gets no scale-in protection lifted at its release: it may be that job's", async () => {
  const p = await pool('pool-protect-forged', 1)
  // Positive control: an honest job's release lifts its member's protection.
  const r1 = runnerFor(p)
  const p1 = await hookPrepare(r1, jobArgs(r1))
  expect({ code: p1.code, out: p1.code === 0 ? '' : dumpRun(p1) }).toEqual({ code: 0, out: '' })
  const id = memberOf(r1)
  expect(await protectedNow(p, id)).toBe(true)
  const c1 = await cleanup(r1)
  expect({ code: c1.code, errors: errorLines(c1) }).toEqual({ code: 0, errors: [] })
  expect(await protectedNow(p, id)).toBe(false)

  const r2 = runnerFor(p)
  const p2 = await hookPrepare(r2, jobArgs(r2))
  expect({ code: p2.code, member: memberOf(r2) }).toEqual({ code: 0, member: id })
  expect(await protectedNow(p, id)).toBe(true)
  // The job, root on its member, makes the record say another job holds the member now.
  await asMember(
    p.member(id),
    `printf 'held %s %s 0123456789abcdef 0123456789abcdef 0123456789abcdef\\n' ${'e'.repeat(32)} $(( $(date +%s) + 600 )) > ~/rch/pool/lease`
  )
  const c2 = await cleanup(r2)
  expect(c2.code).toBe(0)
  expect(c2.stdout + c2.stderr).toContain(`the lease of ${id} was no longer this job's at release: marked for replacement`)
  expect(await protectedNow(p, id)).toBe(true)
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:recycle': 'lease lost at release' })
})

// With one job per member no other job may hold it: a record naming another holder is the job's
// own doing, and kept protected the member ran on until reap found it older than any job (days).
test("maxJobsPerVm 1: a job that rewrites its lease record as another job's has its member ended at release all the same", async () => {
  const p = await pool('pool-forged-one', 1)
  const r = runnerFor(p, { reuse: { maxJobsPerVm: 1 } })
  const prep = await hookPrepare(r, jobArgs(r))
  expect({ code: prep.code, out: prep.code === 0 ? '' : dumpRun(prep) }).toEqual({ code: 0, out: '' })
  const id = memberOf(r)
  expect(await protectedNow(p, id)).toBe(true)
  await asMember(
    p.member(id),
    `printf 'held %s %s 0123456789abcdef 0123456789abcdef 0123456789abcdef\\n' ${'e'.repeat(32)} $(( $(date +%s) + 600 )) > ~/rch/pool/lease`
  )
  expect(await p.readLease(id)).toMatch(new RegExp(`^held ${'e'.repeat(32)} `)) // positive control: the forged record is there
  const c = await cleanup(r)
  expect(c.code).toBe(0)
  expect(c.stdout + c.stderr).toContain(`the lease of ${id} was no longer this job's at release: marked for replacement`)
  expect(c.stdout + c.stderr).toContain(
    `${id} is no longer this job's (not-holder), but it was leased for one job and no other may use it: it is ended`
  )
  await p.waitMember(id, 'gone', (m) => m.gone, 30_000)
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:recycle': 'lease lost at release (served its one job)' })
})

test('a member cut off before cleanup_job is still given back: marked for replacement and its protection lifted, the exit loud', async () => {
  const p = await pool('pool-cut-off', 1)
  const r = runnerFor(p)
  const prep = await hookPrepare(r, jobArgs(r))
  expect({ code: prep.code, out: prep.code === 0 ? '' : dumpRun(prep) }).toEqual({ code: 0, out: '' })
  const id = memberOf(r)
  const m = p.member(id)
  // Control: held, it is protected and its lease record is the job's.
  expect(await protectedNow(p, id)).toBe(true)
  expect(await p.readLease(id)).toMatch(/^held /)
  // The member drops off the network (or the job, root there, stops sshd): its sshd and every
  // session of its user end, the job's agent with its connection; new connections are refused.
  const listener = Number(fs.readFileSync(path.join(testenvDir, `inst-${id}`, 'sshd.pid'), 'utf8'))
  process.kill(listener, 'SIGKILL')
  for (const pid of await userPids(m.user)) process.kill(pid, 'SIGKILL')
  const c = await cleanup(r)
  expect(c.code).toBe(75)
  expect(errorLines(c)).toEqual([expect.stringMatching(/^::error::cannot connect to .*: connect ECONNREFUSED /)])
  expect(c.stdout + c.stderr).toMatch(new RegExp(`giving 127\\.0\\.0\\.1:${m.port} back failed too: .*ECONNREFUSED`))
  // Before, the release was never asked for: the member stayed protected, unmarked, for days.
  expect(await instanceTags(id)).toMatchObject({ 'remote-container-hooks:recycle': 'unreachable at release' })
  expect(await protectedNow(p, id)).toBe(false)
})
