// The runner host's side of a hostile job, through dist/index.js as the runner runs it:
// - a job that adds a folder with its own tar/rsync/ssh to GITHUB_PATH (the runner prepends it to
//   the hook's PATH) never gets them run, with or without the per-job agent;
// - the agent gets a minimal environment, and a step request carries only allow-listed variables;
// - a private local folder that another local user made first is refused before anything is sent.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { TAR_COPY_MAX } from '../../src/job'
import { loadMoto } from '../helpers/ec2-env'
import { errorLines, runnerProcesses, staticProvider, testVm } from '../helpers/conformance'
import { createLocalUser, type LocalUser } from '../helpers/local-user'
import { waitUntil } from '../helpers/wait'
import { builtAgentSocket } from '../helpers/build-id'
import { F, frame } from '../../src/remote/mux-frames'
import { STEP_ENV_NAMES } from '../../src/runner-env'
import { SYSTEM_PATH } from '../../src/tools'
import { LOW_MEMORY_TUNABLES } from '../../src/session'

const CANARY = 'canary-aws-secret-7f3e1d'
// Short: the job's agent socket path under TMPDIR=<scratch>/tmp-XXXXXX must stay within 107 bytes.
const scratch = mkdtempSync(join(tmpdir(), 'rch-tc-'))
chmodSync(scratch, 0o755) // the other local user below must reach its sticky folder
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** The job's evil tar/rsync/ssh in `_work/_temp/evilbin`: each leaves a marker outside _work, then runs the real tool. */
function evilPath(runner: FakeRunner): { env: Record<string, string>; markers: string } {
  const bin = join(runner.temp, 'evilbin')
  const markers = mkdtempSync(join(scratch, 'markers-'))
  mkdirSync(bin, { recursive: true })
  for (const name of ['tar', 'rsync', 'ssh']) {
    writeFileSync(join(bin, name), `#!/bin/sh\necho "$$ $*" >> ${markers}/${name}\nexec /usr/bin/${name} "$@"\n`)
    chmodSync(join(bin, name), 0o755)
  }
  const PATH = `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`
  // positive control: a shell started with this PATH picks the job's programs
  const picked = spawnSync('/bin/sh', ['-c', 'for n in tar rsync ssh; do command -v $n; done'], { env: { PATH }, encoding: 'utf8' })
    .stdout.trim()
    .split('\n')
  expect(picked).toEqual(['tar', 'rsync', 'ssh'].map((n) => join(bin, n)))
  return { env: { PATH, AWS_SECRET_ACCESS_KEY: CANARY, AWS_ACCESS_KEY_ID: 'AKIACANARY' }, markers }
}

/** Other suites lease the same test VM: wait for its slot longer than FakeRunner's 30 s. */
const patient = (extra: Record<string, unknown> = {}) =>
  new FakeRunner({
    config: { provider: staticProvider(testVm(), {}, { acquireTimeoutSeconds: 300 }), remote: { workRoot: testVm().workRoot }, ...extra }
  })

async function done(runner: FakeRunner): Promise<void> {
  if (runner.state) await runner.cleanup().catch(() => undefined)
  runner.dispose()
}

const ok = (r: HookRun) => ({ code: r.code, errors: errorLines(r) })

/** A step that needs the push (its script is a new file in _temp) and the pull (it writes to the workspace). */
async function syncedStep(runner: FakeRunner, env: Record<string, string>, tag: string): Promise<HookRun> {
  const { args } = runner.scriptStep(`echo ${tag} > /__w/repo/repo/${tag}.txt\necho step-${tag}-ran\n`)
  const r = await runner.call('run_script_step', args, { env })
  expect(ok(r)).toEqual({ code: 0, errors: [] })
  expect(r.stdout).toContain(`step-${tag}-ran`)
  expect(readFileSync(join(runner.workspace, `${tag}.txt`), 'utf8')).toBe(`${tag}\n`)
  return r
}

/**
 * An agent's environment as /proc shows it, and the names in it. glibc rewrites GLIBC_TUNABLES as it
 * reads it, one tunable after another NUL: those pieces are not variables of their own.
 */
function agentEnvironment(pid: number): { raw: string; names: string[] } {
  const raw = readFileSync(`/proc/${pid}/environ`).toString('utf8')
  const names = raw
    .split('\0')
    .filter((e) => e && !e.startsWith('glibc.'))
    .map((e) => e.slice(0, e.indexOf('=')))
    .sort()
  return { raw, names }
}

function agentsOf(runner: FakeRunner): Promise<{ pid: number; cmdline: string }[]> {
  return runnerProcesses(runner, 0).then((ps) => ps.filter((p) => p.cmdline.includes('__agent')))
}

describe("a job's tar, rsync and ssh first on the hook's PATH are never run", () => {
  test('agent disabled: prepare_job (rsync over ssh), steps (tar) and cleanup_job', async () => {
    const runner = patient({ agent: { enabled: false } })
    try {
      const { env, markers } = evilPath(runner)
      // Past the tar copy's limit: the first copy is rsync over OpenSSH, both found by the hook itself.
      writeFileSync(join(runner.workspace, 'big.bin'), Buffer.alloc(TAR_COPY_MAX.bytes + 1))
      const p = await runner.call('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null, env })
      expect(ok(p)).toEqual({ code: 0, errors: [] })
      expect(p.stdout).toMatch(/copied \d+ files .* \(rsync; /)
      runner.state = p.response.state
      await syncedStep(runner, env, 'one')
      await syncedStep(runner, env, 'two')
      expect(ok(await runner.call('cleanup_job', {}, { env }))).toEqual({ code: 0, errors: [] })
      runner.state = null
      expect(readdirSync(markers)).toEqual([])
    } finally {
      await done(runner)
    }
  }, 900_000)

  test('agent killed before the step: the hook starts a new agent, which has a minimal environment', async () => {
    const runner = patient({ agent: { idleSeconds: 120 } })
    try {
      const { env, markers } = evilPath(runner)
      const p = await runner.call('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null, env })
      expect(ok(p)).toEqual({ code: 0, errors: [] })
      runner.state = p.response.state
      const first = await agentsOf(runner)
      expect(first.length).toBe(1)
      process.kill(first[0].pid, 'SIGTERM')
      await waitUntil(async () => (await agentsOf(runner)).length === 0, 5000, 100)
      expect(await agentsOf(runner)).toEqual([])

      // No agent answers: this hook process runs the step and starts a new agent.
      const s1 = await syncedStep(runner, env, 'after-kill')
      expect(s1.stdout).toContain('[remote-hooks] connecting to')
      const agents = await agentsOf(runner)
      expect(agents.length).toBe(1)
      // This one runs inside the new agent (no new connection).
      const s2 = await syncedStep(runner, env, 'in-agent')
      expect(s2.stdout).not.toContain('connecting to')

      const { raw, names } = agentEnvironment(agents[0].pid)
      expect(raw.split('\0')).toContain(`RUNNER_TRACKING_ID=${runner.trackingId}`) // positive control: the agent's own environment
      expect(raw.split('\0')).toContain(`PATH=${SYSTEM_PATH}`)
      expect(raw).not.toContain(CANARY)
      // agent.lowMemory is on by default.
      expect(raw.replace(/\0/g, ':')).toContain(`GLIBC_TUNABLES=${LOW_MEMORY_TUNABLES}:`)
      expect(names).toEqual(['GLIBC_TUNABLES', 'HOME', 'LANG', 'PATH', 'RUNNER_TRACKING_ID', 'TMPDIR'])

      expect(ok(await runner.call('cleanup_job', {}, { env }))).toEqual({ code: 0, errors: [] })
      runner.state = null
      expect(readdirSync(markers)).toEqual([])
    } finally {
      await done(runner)
    }
  }, 900_000)
})

test("agent.lowMemory: false: the agent runs with glibc's own allocator settings", async () => {
  const runner = patient({ agent: { lowMemory: false } })
  try {
    const { env } = evilPath(runner)
    const p = await runner.call('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null, env })
    expect(ok(p)).toEqual({ code: 0, errors: [] })
    runner.state = p.response.state
    await syncedStep(runner, env, 'plain')
    const agents = await agentsOf(runner)
    expect(agents.length).toBe(1)
    const { raw, names } = agentEnvironment(agents[0].pid)
    expect(raw).not.toContain('GLIBC_TUNABLES')
    expect(raw).not.toContain(CANARY)
    expect(names).toEqual(['HOME', 'LANG', 'PATH', 'RUNNER_TRACKING_ID', 'TMPDIR'])
    expect(ok(await runner.call('cleanup_job', {}, { env }))).toEqual({ code: 0, errors: [] })
    runner.state = null
  } finally {
    await done(runner)
  }
}, 900_000)

/** A job state as prepare_job writes it, with its local folder under `tmp`/rch-<uid>. */
function fakeState(runner: FakeRunner, tmp: string) {
  const owner = runner.owner
  const jobId = '0123456789abcdef'
  const uid = process.getuid!()
  const localDir = join(tmp, `rch-${uid}`, `${owner}-${jobId}`)
  const cfg = JSON.parse(readFileSync(runner.configFile, 'utf8'))
  const h = cfg.provider.hosts[0]
  const host = {
    kind: 'static',
    index: 0,
    slot: 0,
    host: h.host,
    port: h.port,
    user: h.user,
    identityFile: h.identityFile,
    knownHostsFile: h.knownHostsFile
  }
  const jobRoot = `${cfg.remote.workRoot}/jobs/${owner}-${jobId}`
  const state = {
    v: 2,
    jobId,
    owner,
    host,
    jobRoot,
    hostWork: runner.work,
    externals: null,
    pullRoots: ['_temp'],
    network: `rch-${jobId}`,
    container: { id: 'a'.repeat(64), image: testImages.tiny, path: '/usr/bin:/bin' },
    services: [],
    volumes: [],
    localDir
  }
  return { state, localDir, socket: builtAgentSocket(localDir, host) }
}

/** A stand-in agent: records every request and answers "exit 0" like a real one. */
function fakeAgent(socket: string): Promise<{ server: Server; requests: string[] }> {
  const requests: string[] = []
  const server = createServer((c) => {
    let text = ''
    c.on('data', (d: Buffer) => {
      text += d.toString()
      if (text.includes('\n')) {
        requests.push(text.slice(0, text.indexOf('\n')))
        c.end(frame(F.EXIT, JSON.stringify({ code: 0, signal: null })))
      }
    })
    c.on('error', () => undefined)
  })
  return new Promise((resolve) => server.listen(socket, () => resolve({ server, requests })))
}

async function canReach(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socket)
    let connected = false
    c.on('connect', () => ((connected = true), c.write(JSON.stringify({ op: 'ping' }) + '\n')))
    c.on('data', () => undefined)
    // resolved once the (fake) agent has answered and closed, so its record of this ping is complete
    c.on('close', () => resolve(connected))
    c.on('error', () => undefined)
  })
}

describe('step requests to the agent', () => {
  test('carry only the allow-listed variables: no AWS credentials, no PATH', async () => {
    const runner = new FakeRunner()
    const tmp = mkdtempSync(join(scratch, 'tmp-'))
    const { state, localDir, socket } = fakeState(runner, tmp)
    mkdirSync(localDir, { recursive: true, mode: 0o700 })
    chmodSync(join(tmp, `rch-${process.getuid!()}`), 0o700)
    const agent = await fakeAgent(socket)
    try {
      const { args } = runner.scriptStep('echo hi\n')
      const r = await runner.call('run_script_step', args, {
        state,
        env: { TMPDIR: tmp, AWS_SECRET_ACCESS_KEY: CANARY, AWS_SESSION_TOKEN: 'tok', LD_PRELOAD: '/nope.so' }
      })
      expect(ok(r)).toEqual({ code: 0, errors: [] })
      expect(agent.requests.length).toBe(1) // positive control: the step went to the (fake) agent
      const req = JSON.parse(agent.requests[0])
      expect(req.op).toBe('run')
      expect(JSON.parse(req.raw).command).toBe('run_script_step')
      expect(Object.keys(req.env).filter((k) => !(STEP_ENV_NAMES as readonly string[]).includes(k))).toEqual([])
      expect(req.env.REMOTE_HOOKS_CONFIG).toBe(runner.configFile)
      expect(agent.requests[0]).not.toContain(CANARY)
    } finally {
      agent.server.close()
      runner.dispose()
    }
  })
})

describe('private local folders made by another local user', () => {
  let other: LocalUser
  let shared: string
  beforeAll(() => {
    other = createLocalUser()
    shared = mkdtempSync(join(scratch, 'shared-'))
    chmodSync(shared, 0o1777)
  })
  afterAll(() => other?.remove())

  /** TMPDIR for one hook call: a sticky, world-writable folder like /tmp. */
  const freshTmp = (): string => {
    const d = join(shared, `t${Math.random().toString(36).slice(2, 8)}`)
    mkdirSync(d)
    chmodSync(d, 0o1777)
    return d
  }

  test('the local root (rch-<uid>) owned by another user: no connection to its "agent", one ::error:: naming it', async () => {
    const runner = new FakeRunner()
    const tmp = freshTmp()
    const { state, localDir, socket } = fakeState(runner, tmp)
    const root = join(tmp, `rch-${process.getuid!()}`)
    other.run(['mkdir', '-m', '0777', root])
    other.run(['mkdir', '-m', '0777', localDir])
    const agent = await fakeAgent(socket)
    try {
      // positive controls: the folder is theirs, and their "agent" answers
      expect(spawnSync('stat', ['-c', '%u', root], { encoding: 'utf8' }).stdout.trim()).toBe(String(other.uid))
      expect(await canReach(socket)).toBe(true)
      agent.requests.length = 0
      const { args } = runner.scriptStep('echo hi\n')
      const r = await runner.call('run_script_step', args, { state, env: { TMPDIR: tmp, AWS_SECRET_ACCESS_KEY: CANARY } })
      expect(agent.requests).toEqual([])
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors.length).toBe(1)
      expect(errors[0]).toContain(`private folder ${root} is owned by uid ${other.uid}`)
      expect(errors[0]).toContain('set TMPDIR to a private folder')
    } finally {
      agent.server.close()
      runner.dispose()
    }
  })

  test('a symlinked local root is refused the same way', async () => {
    const runner = new FakeRunner()
    const tmp = freshTmp()
    const real = mkdtempSync(join(scratch, 'real-'))
    const root = join(tmp, `rch-${process.getuid!()}`)
    symlinkSync(real, root)
    const { state, localDir, socket } = fakeState(runner, tmp)
    mkdirSync(localDir, { mode: 0o700 })
    const agent = await fakeAgent(socket)
    try {
      expect(await canReach(socket)).toBe(true) // positive control: reachable through the symlink
      agent.requests.length = 0
      const { args } = runner.scriptStep('echo hi\n')
      const r = await runner.call('run_script_step', args, { state, env: { TMPDIR: tmp } })
      expect(agent.requests).toEqual([])
      expect(r.code).not.toBe(0)
      expect(errorLines(r)).toEqual([expect.stringContaining(`private folder ${root} is a symlink`)])
    } finally {
      agent.server.close()
      runner.dispose()
    }
  })

  test('the log folder owned by another user fails the command before anything else, naming it', async () => {
    const runner = new FakeRunner()
    const tmp = freshTmp()
    const logDir = join(tmp, `remote-container-hooks-${process.getuid!()}`)
    other.run(['mkdir', '-m', '0777', logDir])
    const { state } = fakeState(runner, tmp)
    const { args } = runner.scriptStep('echo hi\n')
    const r = await runner.call('run_script_step', args, { state, env: { TMPDIR: tmp } })
    expect(r.code).not.toBe(0)
    expect(errorLines(r)).toEqual([expect.stringContaining(`private folder ${logDir} is owned by uid ${other.uid}`)])
    expect(readdirSync(logDir)).toEqual([])
    expect(existsSync(join(tmp, `rch-${process.getuid!()}`, `${state.owner}-${state.jobId}`))).toBe(false)
    runner.dispose()
  })
})

// Every step copies _temp (and the workspace) to the VM: a TMPDIR or log.file there would hand the
// job the hook's keys, sockets, sync base and other jobs' log lines.
describe("the hook's own files are never inside the runner's work folder", () => {
  test.each([
    ['TMPDIR in _work/_temp', 'TMPDIR'],
    ['log.file in _work', 'log.file']
  ])('%s: the command fails at once naming it, nothing is made there or on the VM', async (_name, field) => {
    const runner = new FakeRunner({ name: `kept-${field.replace('.', '-')}-${process.pid}` })
    try {
      const where = field === 'TMPDIR' ? join(runner.temp, 'tmp') : join(runner.work, 'logs')
      mkdirSync(where, { recursive: true, mode: 0o700 })
      const env: Record<string, string> = field === 'TMPDIR' ? { TMPDIR: where } : {}
      if (field === 'log.file') {
        const config = JSON.parse(readFileSync(runner.configFile, 'utf8')) as Record<string, unknown>
        writeFileSync(runner.configFile, JSON.stringify({ ...config, log: { file: join(where, 'hook.log') } }))
      }
      const r = await runner.call('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null, env })
      expect(r.code).toBe(78)
      expect(errorLines(r)).toEqual([
        expect.stringMatching(
          new RegExp(`^::error::invalid configuration: ${field.replace('.', '\\.')}: ${where}.* is inside the runner's work folder `)
        )
      ])
      expect(readdirSync(where)).toEqual([])
      // control: the same folder outside _work is taken (the runner's own TMPDIR or log folder)
      const outside = mkdtempSync(join(scratch, 'outside-'))
      chmodSync(outside, 0o700)
      if (field === 'log.file') {
        const config = JSON.parse(readFileSync(runner.configFile, 'utf8')) as Record<string, unknown>
        writeFileSync(runner.configFile, JSON.stringify({ ...config, log: { file: join(outside, 'hook.log') } }))
      }
      const ok = await runner.call(
        'prepare_job',
        { container: null, services: [] },
        { state: null, env: field === 'TMPDIR' ? { TMPDIR: outside } : {} }
      )
      expect({ code: ok.code, errors: errorLines(ok) }).toEqual({ code: 0, errors: [] })
    } finally {
      // What a regression would leave on the VM (the hook then took the job).
      await runner.cleanup()
      runner.dispose()
    }
  })
})

test('TMPDIR a symlink into _work/_temp (its rch-<uid> not made yet): refused as well, nothing made there', async () => {
  const runner = new FakeRunner({ name: `kept-link-${process.pid}` })
  const link = join(scratch, `link-${process.pid}`)
  try {
    const where = join(runner.temp, 'tmp')
    mkdirSync(where, { recursive: true, mode: 0o700 })
    symlinkSync(where, link)
    const r = await runner.call(
      'prepare_job',
      { container: runner.jobContainer(testImages.tiny), services: [] },
      { state: null, env: { TMPDIR: link } }
    )
    expect(r.code).toBe(78)
    expect(errorLines(r)).toEqual([
      expect.stringMatching(new RegExp(`^::error::invalid configuration: TMPDIR: ${link}/rch-.* is inside the runner's work folder `))
    ])
    expect(readdirSync(where)).toEqual([])
  } finally {
    rmSync(link, { force: true })
    await runner.cleanup()
    runner.dispose()
  }
})

describe("programs the hook's libraries start", () => {
  // The AWS SDK runs a profile's credential_process through a shell with the hook's environment; a
  // bare command name there was looked up on the PATH the runner gave the hook, job entries first.
  test("a credential_process named without a path is never found in the job's GITHUB_PATH folder", async () => {
    const runner = new FakeRunner({
      config: {
        provider: { kind: 'ec2', region: 'eu-west-1', endpoint: loadMoto().endpoint, imageId: 'ami-12c6146b', instanceTypes: ['t3.micro'] },
        remote: { workRoot: '/var/tmp/rch-adv-ec2' }
      }
    })
    try {
      const bin = join(runner.temp, 'evilbin')
      const marker = join(scratch, `cred-${process.pid}`)
      mkdirSync(bin, { recursive: true })
      writeFileSync(
        join(bin, 'rch-evil-cred'),
        `#!/bin/sh\necho ran > ${marker}\necho '{"Version":1,"AccessKeyId":"testing","SecretAccessKey":"testing"}'\n`
      )
      chmodSync(join(bin, 'rch-evil-cred'), 0o755)
      const awsConfig = join(runner.root, 'aws-config')
      writeFileSync(awsConfig, '[default]\ncredential_process = rch-evil-cred\n')
      const PATH = `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`
      // positive control: with this PATH a shell finds the job's program
      expect(spawnSync('/bin/sh', ['-c', 'command -v rch-evil-cred'], { env: { PATH }, encoding: 'utf8' }).stdout.trim()).toBe(
        join(bin, 'rch-evil-cred')
      )
      const env = {
        PATH,
        AWS_CONFIG_FILE: awsConfig,
        AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
        AWS_REGION: 'eu-west-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
      }
      const r = await runner.call('cleanup_job', {}, { state: null, env })
      expect(existsSync(marker)).toBe(false)
      // it fails loudly for want of credentials, instead of running the job's program
      expect(r.code).not.toBe(0)
      expect(errorLines(r)).toEqual([expect.stringMatching(/Could not load credentials/)])
      // positive control: the hook reads this AWS config and runs its credential_process (named by its path here)
      writeFileSync(awsConfig, `[default]\ncredential_process = ${join(bin, 'rch-evil-cred')}\n`)
      await runner.call('cleanup_job', {}, { state: null, env })
      expect(existsSync(marker)).toBe(true)
    } finally {
      runner.dispose()
    }
  })
})
