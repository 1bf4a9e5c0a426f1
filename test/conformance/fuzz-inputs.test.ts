// A seeded fuzz of the hook's input surface: stdin, every args field of every command, the state
// and the config, with hostile values. A value that must be refused ends the hook with one
// `::error::` naming the field, exit 64/78, no stack trace, and nothing started: the configured host
// and the host a hostile state names are loopback listeners that record every connection, and
// neither may see one; nothing appears under the runner's `_work`, the remote work root or the local
// job folders. Values that are legitimate (env values with quotes, `$()`, newlines, 100k
// characters; odd but valid image names) run on VM a and must arrive byte for byte.
//
// The seed is printed; RCH_FUZZ_SEED=<n> replays a run.
import { spawn, execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, otherOwner, testVm } from '../helpers/conformance'
import { encryptedTestKey, testKeyPair } from '../helpers/keys'
import { rng } from '../soak/rng'

const SEED = process.env.RCH_FUZZ_SEED ? Number(process.env.RCH_FUZZ_SEED) : Date.now() % 1e9

console.log(`fuzz-inputs seed ${SEED} (replay with RCH_FUZZ_SEED=${SEED})`)

const rand = rng(SEED).next
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
const int = (n: number): number => Math.floor(rand() * n)
const word = (n = 1 + int(8)): string => Array.from({ length: n }, () => pick('abcdefghijklmnopqrstuvwxyz0123456789'.split(''))).join('')
const hex = (n: number): string => Array.from({ length: n }, () => pick('0123456789abcdef'.split(''))).join('')
const HUGE = 'x'.repeat(100_000)
/** Characters that never belong in the field (the generator puts at least one in). */
const SHELLY = [
  "'",
  '"',
  '$(touch /tmp/rch-fuzz-pwned)',
  '`id`',
  ';',
  '|',
  '&',
  '>',
  '\\',
  ' ',
  '\t',
  '\n',
  '\r',
  '\0',
  '\x7f',
  '{{.}}',
  '%s',
  '\u2028'
]
/** Somewhere in a random word: at the start, the middle or the end. */
const inject = (bad: string, base = word()): string => {
  const at = int(3)
  return at === 0 ? bad + base : at === 1 ? base.slice(0, 2) + bad + base.slice(2) : base + bad
}
const maybeHuge = (s: string): string => (rand() < 0.08 ? s + HUGE : s)

// ---- the world each case runs in ----------------------------------------------------------------

interface Listener {
  port: number
  connections: number
  server: Server
}
function listen(): Promise<Listener> {
  return new Promise((resolve) => {
    const l: Listener = { port: 0, connections: 0, server: createServer((s) => (l.connections++, s.destroy())) }
    l.server.listen(0, '127.0.0.1', () => {
      l.port = (l.server.address() as { port: number }).port
      resolve(l)
    })
  })
}

const vm = testVm()
const scratch = mkdtempSync('/tmp/rfz-')
const keys = (() => {
  const dir = join(scratch, 'keys')
  mkdirSync(dir)
  const write = (name: string, text: string): string => (writeFileSync(join(dir, name), text, { mode: 0o600 }), join(dir, name))
  return {
    garbage: write('garbage', 'not a key\n'),
    public: write('public', testKeyPair().public),
    encrypted: write('encrypted', encryptedTestKey()),
    empty: write('empty', '')
  }
})()

interface World {
  config: Listener
  other: Listener
  runner: FakeRunner
  tmp: string
  workRoot: string
}

function baseConfig(port: number, workRoot: string): Record<string, any> {
  return {
    provider: {
      kind: 'static',
      acquireTimeoutSeconds: 0,
      hosts: [{ host: '127.0.0.1', port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile }]
    },
    remote: { workRoot },
    timeouts: { connectSeconds: 2, healthSeconds: 10 },
    agent: { idleSeconds: 10 }
  }
}

/** What prepare_job would have written for this runner against the config host. */
function goodState(w: World): Record<string, any> {
  const owner = w.runner.owner
  const jobId = hex(16)
  return {
    v: 2,
    jobId,
    owner,
    host: {
      kind: 'static',
      index: 0,
      slot: 0,
      host: '127.0.0.1',
      port: w.config.port,
      user: vm.user,
      identityFile: vm.identityFile,
      knownHostsFile: vm.knownHostsFile
    },
    jobRoot: `${w.workRoot}/jobs/${owner}-${jobId}`,
    hostWork: w.runner.work,
    externals: null,
    pullRoots: ['_temp', 'repo'],
    network: `rch-${jobId}`,
    container: { id: hex(64), image: testImages.tiny, path: '/usr/local/bin:/usr/bin:/bin' },
    services: [],
    volumes: []
  }
}

function tree(dir: string, skip: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (p === skip) continue
      out.push(p)
      if (e.isDirectory()) walk(p)
    }
  }
  walk(dir)
  return out.sort()
}

// ---- cases --------------------------------------------------------------------------------------

type Cmd = 'prepare_job' | 'run_script_step' | 'run_container_step' | 'cleanup_job'
interface Case {
  name: string
  command: Cmd
  /** Built from the world, so paths and ids fit it; absent for the command's good args. */
  args?: (w: World, good: any) => unknown
  state?: (w: World, good: Record<string, any>) => unknown
  config?: (w: World, good: Record<string, any>) => Record<string, any>
  stdin?: (responseFile: string) => string
  responseFile?: 'symlink' | 'directory' | 'missing' | 'relative' | 'nul'
  code: 64 | 78
  field: string
}

const set = (obj: any, path: string, value: unknown): any => {
  const copy = structuredClone(obj)
  const keys_ = path.split('.')
  let o = copy
  for (const k of keys_.slice(0, -1)) o = o[k]
  o[keys_[keys_.length - 1]] = value
  return copy
}

function goodArgs(command: Cmd, w: World, withState: boolean): any {
  const r = w.runner
  if (command === 'prepare_job')
    return { container: r.jobContainer(testImages.tiny), services: [r.service(testImages.tiny, { portMappings: ['80'] })] }
  if (command === 'run_script_step') return r.scriptStep('echo never-ran\n').args
  if (command === 'run_container_step')
    return r.containerStep({ image: testImages.tiny, entryPoint: 'sh', args: ['-c', 'echo never-ran'] }).args
  void withState
  return {}
}

/** Hostile values per kind of field; every one of them is outside the field's rules. */
const bad = {
  image: (): string =>
    maybeHuge(
      pick([
        () => '-' + word(),
        () => '--privileged',
        () => inject(pick(SHELLY), 'alpine'),
        () => 'a/../b',
        () => '/' + word(),
        () => word() + ':',
        () => 'alpine@sha256:' + hex(8),
        () => 'x'.repeat(300)
      ])()
    ),
  server: (): string =>
    pick([
      () => '-' + word(),
      () => '--config=/tmp',
      () => inject(pick([' ', '\n', '\t', '\0', '$(id)', ';', "'", '"', '`']), 'ghcr.io')
    ])(),
  secretLine: (): string => inject(pick(['\n', '\0', '\r']), 'p' + word()),
  /** A password may span lines (a JSON key file): only NUL is refused. */
  secretWithNul: (): string => inject('\0', 'p' + word()),
  volume: (): string =>
    pick([
      () => '-' + word(),
      () => '.' + word(),
      () => '_' + word(),
      () => '../' + word(),
      () => inject(pick([' ', ':', '/', '$(id)', ';', "'", '\n', '\0']), word())
    ])(),
  outside: (w: World): string =>
    pick([
      () => '/etc',
      () => '/root/.ssh',
      () => `${w.runner.work}/../../etc`,
      () => `${w.runner.work}/..`,
      () => `${w.runner.work}x/y`,
      () => '/var/run/docker.sock.x',
      () => `${w.runner.root}/hooks.json`,
      () => '/'
    ])(),
  target: (): string =>
    pick([() => word(), () => `/${word()}:/etc`, () => `/${word()}\0`, () => `/${word()}\n/x`, () => '', () => `/${word()}:ro`])(),
  port: (): string =>
    pick([
      () => String(65536 + int(100000)),
      () => `${65536 + int(1000)}:80`,
      () => '80:0',
      () => '0',
      () => pick(['http', 'ssh', '-p', '80;id', '80:80/icmp', '80 80', '8080:80\n', '1.2.3:80:80', '10-5']),
      () => inject(pick(SHELLY), '80')
    ])(),
  nul: (): string => maybeHuge(inject('\0')),
  workdir: (): string =>
    pick([
      () => '',
      () => word(),
      () => `${word()}/${word()}`,
      () => `/${word()}\0`,
      () => `/${word()}\n/${word()}`,
      () => `./${word()}`
    ])(),
  envName: (): string =>
    pick([() => '', () => `${word()}=${word()}`, () => inject('\0', 'A'), () => inject('\n', 'A'), () => inject('\r', 'A')])(),
  stateString: (): string => maybeHuge(inject(pick(SHELLY.concat(['..', '../../', '-']))))
}

const containerFields = (prefix: string, command: Cmd, at: (w: World, good: any) => any, put: (good: any, value: any) => any): Case[] => {
  const c = (name: string, field: string, mutate: (w: World, target: any) => any): Case => ({
    name: `${command} ${prefix}${name}`,
    command,
    code: 64,
    field: `${prefix}${field}`,
    args: (w, good) => put(good, mutate(w, structuredClone(at(w, good))))
  })
  return [
    c('image', 'image', (_w, t) => ({ ...t, image: bad.image() })),
    c('registry.serverUrl', 'registry.serverUrl', (_w, t) => ({
      ...t,
      registry: { username: 'u', password: 'p', serverUrl: bad.server() }
    })),
    c('registry.username', 'registry.username', (_w, t) => ({
      ...t,
      registry: { username: bad.secretLine(), password: 'p', serverUrl: 'ghcr.io' }
    })),
    c('registry.password', 'registry.password', (_w, t) => ({
      ...t,
      registry: { username: 'u', password: bad.secretWithNul(), serverUrl: 'ghcr.io' }
    })),
    c('userMountVolumes volume name', 'userMountVolumes.0.sourceVolumePath', (_w, t) => ({
      ...t,
      userMountVolumes: [{ sourceVolumePath: bad.volume(), targetVolumePath: '/data', readOnly: false }]
    })),
    c('userMountVolumes source outside _work', 'userMountVolumes.0.sourceVolumePath', (w, t) => ({
      ...t,
      userMountVolumes: [{ sourceVolumePath: bad.outside(w), targetVolumePath: '/data', readOnly: false }]
    })),
    c('userMountVolumes target', 'userMountVolumes.0.targetVolumePath', (_w, t) => ({
      ...t,
      userMountVolumes: [{ sourceVolumePath: 'vol1', targetVolumePath: bad.target(), readOnly: false }]
    })),
    c('portMappings', 'portMappings.0', (_w, t) => ({ ...t, portMappings: [bad.port()] })),
    c('entryPointArgs', 'entryPointArgs.1', (_w, t) => ({ ...t, entryPointArgs: ['-c', bad.nul()] })),
    c('entryPoint', 'entryPoint', (_w, t) => ({ ...t, entryPoint: bad.nul() })),
    c('workingDirectory', 'workingDirectory', (_w, t) => ({ ...t, workingDirectory: bad.workdir() })),
    c('environmentVariables name', 'environmentVariables', (_w, t) => ({
      ...t,
      environmentVariables: { ...t.environmentVariables, [bad.envName()]: 'v' }
    })),
    c('environmentVariables value', 'environmentVariables.FZ', (_w, t) => ({
      ...t,
      environmentVariables: { ...t.environmentVariables, FZ: bad.nul() }
    })),
    c('createOptions', 'createOptions', (_w, t) => ({ ...t, createOptions: `--cpus 1 ${bad.nul()}` }))
  ]
}

function stateCases(command: Cmd): Case[] {
  const s = (name: string, field: string, mutate: (w: World, st: Record<string, any>) => Record<string, any>): Case => ({
    name: `${command} state.${name}`,
    command,
    code: 64,
    field: `state.${field}`,
    state: mutate
  })
  return [
    s('jobId', 'jobId', (_w, st) => set(st, 'jobId', pick([bad.stateString(), '../../../tmp/x', hex(15), hex(16).toUpperCase() + 'G']))),
    s('owner', 'owner', (_w, st) => set(st, 'owner', pick([otherOwner('someone-else'), bad.stateString(), '../x']))),
    s('host.host', 'host.host', (_w, st) =>
      set(st, 'host.host', pick(['127.0.0.2', 'localhost', '-oProxyCommand=touch /tmp/x', bad.stateString()]))
    ),
    s('host.port (a host the config does not list)', 'host.port', (w, st) => set(st, 'host.port', w.other.port)),
    s('host.user', 'host.user', (_w, st) => set(st, 'host.user', pick(['root', '-oX', bad.stateString()]))),
    s('host.identityFile', 'host.identityFile', (_w, st) =>
      set(st, 'host.identityFile', pick([keys.garbage, '/etc/shadow', `${vm.identityFile}/..`]))
    ),
    s('host.knownHostsFile', 'host.knownHostsFile', (_w, st) => set(st, 'host.knownHostsFile', pick(['/dev/null', keys.garbage]))),
    s('host.index', 'host.index', (_w, st) => set(st, 'host.index', pick([1, -1, 99]))),
    s('host.slot', 'host.slot', (_w, st) => set(st, 'host.slot', pick([1, -1, 64]))),
    s('host.instanceId', 'host.instanceId', (_w, st) =>
      set(st, 'host.instanceId', pick(['i-0123456789abcdef0', 'i-x', bad.stateString()]))
    ),
    s('jobRoot', 'jobRoot', (w, st) =>
      set(
        st,
        'jobRoot',
        pick([
          '/',
          `${w.workRoot}/jobs/..`,
          `${w.workRoot}/jobs/${st.owner}-${st.jobId}/../../..`,
          '/etc',
          `${w.workRoot}/jobs/${otherOwner('x')}-${st.jobId}`
        ])
      )
    ),
    s('hostWork', 'hostWork', (w, st) =>
      set(st, 'hostWork', pick(['/', w.runner.root, `${w.runner.work}/..`, `${w.runner.work}/`, 'relative', '/home']))
    ),
    s('externals.remote', 'externals.remote', (w, st) =>
      set(st, 'externals', {
        host: w.runner.externals,
        remote: pick(['/etc', `${w.workRoot}/externals/../../x`, `${w.workRoot}/externals/${hex(15)}`])
      })
    ),
    s('pullRoots', 'pullRoots.1', (_w, st) => set(st, 'pullRoots', ['_temp', pick(['..', '.', '.ssh', 'a/b', '/etc', bad.stateString()])])),
    s('network', 'network', (_w, st) => set(st, 'network', pick(['host', '--privileged', 'rch-' + hex(16), bad.stateString()]))),
    s('container.id', 'container.id', (_w, st) =>
      set(st, 'container.id', pick([hex(11), hex(65), `${hex(12)};id`, '../x', bad.stateString()]))
    ),
    s('container.image', 'container.image', (_w, st) => set(st, 'container.image', bad.image())),
    s('container.path', 'container.path', (_w, st) => set(st, 'container.path', inject(pick(['\n', '\0', '\r'])))),
    s('services', 'services.0.id', (_w, st) => set(st, 'services', [{ id: pick(['x', bad.stateString()]), image: 'redis' }])),
    s('volumes', 'volumes.0', (_w, st) => set(st, 'volumes', [bad.volume()])),
    s('v', 'v', (_w, st) => set(st, 'v', pick([0, 1, 3, '2']))),
    {
      name: `${command} state with an unknown key`,
      command,
      code: 64,
      field: 'state',
      state: (_w, st) => ({ ...st, [word()]: bad.stateString() })
    }
  ]
}

function configCases(command: Cmd): Case[] {
  const c = (name: string, field: string, mutate: (w: World, cfg: Record<string, any>) => Record<string, any>): Case => ({
    name: `${command} config ${name}`,
    command,
    code: 78,
    field,
    config: mutate
  })
  return [
    c('remote.workRoot', 'remote.workRoot', (_w, cfg) =>
      set(
        cfg,
        'remote.workRoot',
        pick([
          '/..',
          '/',
          '/srv/../etc',
          '/srv/rch/..',
          'relative',
          '/srv/rch/',
          '/srv//rch',
          '/srv/rch\0',
          '/srv/$(id)',
          "/srv/it's",
          '/srv/a b',
          '/srv/-x\n'
        ])
      )
    ),
    c('host', 'provider.hosts.0.host', (_w, cfg) =>
      set(
        cfg,
        'provider.hosts.0.host',
        pick(['-oProxyCommand=touch /tmp/x', 'a b', 'a;b', '$(id)', '', 'a_b', '[::1]', maybeHuge(inject(pick(SHELLY)))])
      )
    ),
    c('user', 'provider.hosts.0.user', (_w, cfg) =>
      set(cfg, 'provider.hosts.0.user', pick(['Root', '-oX', 'a b', 'ci$', '', '1x', maybeHuge(inject(pick(SHELLY)))]))
    ),
    c('port', 'provider.hosts.0.port', (_w, cfg) => set(cfg, 'provider.hosts.0.port', pick([0, 70000, -1, 1.5, '22']))),
    c('identityFile (not a usable private key)', 'provider.hosts.0.identityFile', (_w, cfg) =>
      set(cfg, 'provider.hosts.0.identityFile', pick([keys.garbage, keys.public, keys.encrypted, keys.empty, vm.knownHostsFile]))
    ),
    c('identityFile (missing or relative)', 'provider.hosts.0.identityFile', (_w, cfg) =>
      set(cfg, 'provider.hosts.0.identityFile', pick(['/nonexistent/id', 'id_ed25519', `${scratch}/keys`]))
    )
  ]
}

function envelopeCases(): Case[] {
  const e = (name: string, field: string, stdin: (rf: string) => string): Case => ({
    name: `stdin ${name}`,
    command: 'cleanup_job',
    code: 64,
    field,
    stdin
  })
  return [
    e('not JSON', 'stdin', () => pick(['{"command":', 'hello', '{"command":"cleanup_job",}', '\u0000', '{' + HUGE])),
    e('not an object', 'stdin', () => pick(['[1,2]', '42', '"cleanup_job"', 'true'])),
    e('unknown command', 'command', (rf) =>
      JSON.stringify({ command: pick(['frob', 'prepare_job\0', '-x', 'cleanup_job ', HUGE]), responseFile: rf, args: {}, state: null })
    ),
    e('state of the wrong type', 'state', (rf) =>
      JSON.stringify({ command: 'cleanup_job', responseFile: rf, args: {}, state: pick(['x', 1, [1], true]) })
    ),
    e('args of the wrong type', 'args', (rf) =>
      JSON.stringify({ command: 'run_script_step', responseFile: rf, args: pick(['x', 1, [1], { entryPoint: 1 }]), state: null })
    ),
    e('no responseFile', 'responseFile', () => JSON.stringify({ command: 'cleanup_job', args: {}, state: null })),
    ...(['symlink', 'directory', 'missing', 'relative', 'nul'] as const).map((mode): Case => ({
      name: `responseFile ${mode}`,
      command: pick(['cleanup_job', 'prepare_job', 'run_script_step'] as const),
      code: 64,
      field: 'responseFile',
      responseFile: mode
    }))
  ]
}

function allTemplates(): Case[] {
  const templates: Case[] = [...envelopeCases()]
  // prepare_job: job container and a service
  templates.push(
    ...containerFields(
      'args.container.',
      'prepare_job',
      (_w, g) => g.container,
      (g, v) => ({ ...g, container: v })
    )
  )
  templates.push(
    ...containerFields(
      'args.services.0.',
      'prepare_job',
      (_w, g) => g.services[0],
      (g, v) => ({ ...g, services: [v] })
    )
  )
  templates.push(
    {
      name: 'prepare_job /__w mount elsewhere',
      command: 'prepare_job',
      code: 64,
      field: 'args.container.systemMountVolumes.1.sourceVolumePath',
      args: (w, g) => set(g, 'container.systemMountVolumes.1.sourceVolumePath', bad.outside(w))
    },
    {
      name: 'prepare_job /__e mount at /',
      command: 'prepare_job',
      code: 64,
      field: 'args.container.systemMountVolumes.2.sourceVolumePath',
      args: (_w, g) => set(g, 'container.systemMountVolumes.2.sourceVolumePath', pick(['/', '/a/../b', '/a/']))
    },
    {
      name: 'prepare_job service contextName',
      command: 'prepare_job',
      code: 64,
      field: 'args.services.0.contextName',
      args: (_w, g) => set(g, 'services.0.contextName', pick(['--privileged', '-x', 'a b', 'a/b', 'x'.repeat(200), inject(pick(SHELLY))]))
    },
    {
      name: 'prepare_job unterminated quote in createOptions',
      command: 'prepare_job',
      code: 64,
      field: 'args.container.createOptions',
      args: (_w, g) => set(g, 'container.createOptions', `--label "x ${word()}`)
    }
  )
  // run_script_step
  const script = (name: string, field: string, mutate: (g: any) => any): Case => ({
    name: `run_script_step ${name}`,
    command: 'run_script_step',
    code: 64,
    field,
    args: (_w, g) => mutate(structuredClone(g))
  })
  templates.push(
    script('entryPoint', 'args.entryPoint', (g) => ({ ...g, entryPoint: pick(['', bad.nul()]) })),
    script('entryPointArgs', 'args.entryPointArgs.1', (g) => ({ ...g, entryPointArgs: ['-e', bad.nul()] })),
    script('workingDirectory', 'args.workingDirectory', (g) => ({ ...g, workingDirectory: bad.workdir() })),
    script('environmentVariables name', 'args.environmentVariables', (g) => ({
      ...g,
      environmentVariables: { ...g.environmentVariables, [bad.envName()]: 'v' }
    })),
    script('environmentVariables value', 'args.environmentVariables.FZ', (g) => ({
      ...g,
      environmentVariables: { ...g.environmentVariables, FZ: bad.nul() }
    })),
    script('prependPath', 'args.prependPath.0', (g) => ({ ...g, prependPath: [inject(pick(['\0', '\n']), '/opt/bin')] }))
  )
  // run_container_step, with and without state (state-less: nothing is leased before the check)
  for (const withState of [false, true]) {
    const tag = withState ? '' : ' (no state)'
    const cs = containerFields(
      'args.',
      'run_container_step',
      (_w, g) => g,
      (_g, v) => v
    ).map((c) => ({ ...c, name: c.name + tag, ...(withState ? {} : { state: () => null }) }))
    templates.push(...cs.filter((c) => !c.name.includes('createOptions')))
    templates.push(
      {
        name: `run_container_step dockerfile outside _work${tag}`,
        command: 'run_container_step',
        code: 64,
        field: 'args.dockerfile',
        args: (w, g) => ({
          ...g,
          image: null,
          dockerfile: pick([`${bad.outside(w)}/Dockerfile`, 'Dockerfile', `${w.runner.work}/../Dockerfile`])
        }),
        ...(withState ? {} : { state: () => null })
      },
      {
        name: `run_container_step system mount outside _work${tag}`,
        command: 'run_container_step',
        code: 64,
        field: 'args.systemMountVolumes.5.sourceVolumePath',
        args: (w, g) => set(g, 'systemMountVolumes.5.sourceVolumePath', bad.outside(w)),
        ...(withState ? {} : { state: () => null })
      }
    )
  }
  for (const cmd of ['run_script_step', 'run_container_step', 'cleanup_job'] as const) templates.push(...stateCases(cmd))
  for (const cmd of ['prepare_job', 'run_script_step', 'run_container_step', 'cleanup_job'] as const) templates.push(...configCases(cmd))
  return templates
}

// ---- running a case -----------------------------------------------------------------------------

interface Outcome {
  name: string
  problems: string[]
  configConnections: number
}

async function runCase(c: Case): Promise<Outcome> {
  const [config, other] = [await listen(), await listen()]
  const tmp = mkdtempSync(join(scratch, 't'))
  const workRoot = join(tmp, 'vmwork')
  const base = baseConfig(config.port, workRoot)
  const w0 = { config, other, tmp, workRoot } as Omit<World, 'runner'>
  const probe = new FakeRunner({ config: base })
  const w: World = { ...w0, runner: probe }
  const cfg = c.config ? c.config(w, base) : base
  if (c.config) writeFileSync(probe.configFile, JSON.stringify({ ...JSON.parse(readFileSync(probe.configFile, 'utf8')), ...cfg }))
  const problems: string[] = []
  try {
    const good = goodArgs(c.command, w, true)
    const args = c.args ? c.args(w, good) : good
    const state0 = c.command === 'prepare_job' ? null : goodState(w)
    const state = c.state ? c.state(w, state0 ?? goodState(w)) : state0
    const respDir = join(probe.temp, '_runner_hook_responses')
    mkdirSync(respDir, { recursive: true })
    let responseFile = join(respDir, `${randomUUID()}.json`)
    const outsideTarget = join(tmp, 'outside-target')
    writeFileSync(outsideTarget, 'untouched')
    if (c.responseFile === 'symlink') symlinkSync(outsideTarget, responseFile)
    else if (c.responseFile === 'directory') mkdirSync(responseFile)
    else if (c.responseFile === 'relative') responseFile = 'response.json'
    else if (c.responseFile === 'nul') responseFile += '\0x'
    else if (c.responseFile !== 'missing') writeFileSync(responseFile, '')
    const before = tree(probe.work, respDir)
    const stdin = c.stdin ? c.stdin(responseFile) : JSON.stringify({ command: c.command, responseFile, args, state }) + '\n'
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [probe.hook], {
        cwd: probe.workspace,
        env: probe.env({ TMPDIR: tmp }),
        stdio: ['pipe', 'pipe', 'pipe']
      })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      child.stdin.on('error', () => undefined)
      child.stdin.end(stdin)
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      child.on('close', (code) => (clearTimeout(timer), resolve({ code, out })))
    })
    const errors = errorLines({ stdout: r.out, stderr: '' })
    if (r.code !== c.code) problems.push(`exit ${r.code}, expected ${c.code}`)
    if (errors.length !== 1) problems.push(`${errors.length} ::error:: lines`)
    else if (!errors[0].includes(c.field)) problems.push(`the error does not name ${c.field}: ${errors[0].slice(0, 300)}`)
    if (/^ {4}at /m.test(r.out)) problems.push('a stack trace was printed')
    if (other.connections) problems.push(`${other.connections} connection(s) to the host the state named`)
    // cleanup_job with a refused state falls back to this runner's state-less cleanup: it may reach the configured host.
    const fallback = c.command === 'cleanup_job' && c.field.startsWith('state')
    if (config.connections && !fallback) problems.push(`${config.connections} connection(s) to the configured host`)
    const after = tree(probe.work, respDir)
    const created = after.filter((p) => !before.includes(p))
    if (created.length) problems.push(`created under _work: ${created.slice(0, 3).join(', ')}`)
    if (existsSync(workRoot)) problems.push('the remote work root was created')
    const localRoot = join(tmp, `rch-${process.getuid!()}`)
    const jobDirs = existsSync(localRoot) ? readdirSync(localRoot).filter((n) => n.startsWith(probe.owner)) : []
    if (jobDirs.length) problems.push(`local job folders left: ${jobDirs.join(', ')}`)
    if (readFileSync(outsideTarget, 'utf8') !== 'untouched') problems.push('a file outside was written through the response file')
    if (problems.length) problems.push(`output: ${JSON.stringify(r.out.slice(0, 600))}`)
    return { name: c.name, problems, configConnections: config.connections }
  } finally {
    config.server.close()
    other.server.close()
    probe.dispose()
  }
}

async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++
        out[i] = await fn(items[i])
      }
    })
  )
  return out
}

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('fuzz: hostile input is refused before anything starts', () => {
  test('positive controls: the untouched inputs do reach the configured host, and a state host is recorded when it is the configured one', async () => {
    const reached = async (command: Cmd, withState: boolean, useOther = false): Promise<number> => {
      const [config, other] = [await listen(), await listen()]
      const tmp = mkdtempSync(join(scratch, 'c'))
      const target = useOther ? other : config
      const runner = new FakeRunner({ config: baseConfig(target.port, join(tmp, 'vmwork')) })
      try {
        const w: World = { config: target, other, runner, tmp, workRoot: join(tmp, 'vmwork') }
        const state = withState ? goodState(w) : null
        const r = await runner.call(command, goodArgs(command, w, withState), { state, env: { TMPDIR: tmp } })
        expect({ command, code: r.code === 0 ? 0 : 'failed', errors: errorLines(r).length }).toEqual({ command, code: 'failed', errors: 1 })
        return target.connections
      } finally {
        config.server.close()
        other.server.close()
        runner.dispose()
      }
    }
    expect(await reached('prepare_job', false)).toBeGreaterThan(0)
    expect(await reached('run_script_step', true)).toBeGreaterThan(0)
    expect(await reached('run_container_step', false)).toBeGreaterThan(0)
    expect(await reached('run_container_step', true)).toBeGreaterThan(0)
    expect(await reached('cleanup_job', true, true)).toBeGreaterThan(0)
  })

  test('cleanup_job never deletes the local folder a state names (localDir is ignored, valid state or not)', async () => {
    for (const refused of [false, true]) {
      const [config, other] = [await listen(), await listen()]
      const tmp = mkdtempSync(join(scratch, 'l'))
      const runner = new FakeRunner({ config: baseConfig(config.port, join(tmp, 'vmwork')) })
      const victim = join(tmp, 'victim')
      mkdirSync(victim)
      writeFileSync(join(victim, 'keep'), 'keep')
      try {
        const w: World = { config, other, runner, tmp, workRoot: join(tmp, 'vmwork') }
        const state = { ...goodState(w), localDir: victim, ...(refused ? { network: 'host' } : {}) }
        expect(existsSync(join(victim, 'keep'))).toBe(true) // the folder the attack aims at is there
        const r = await runner.call('cleanup_job', {}, { state, env: { TMPDIR: tmp } })
        expect({ refused, code: r.code === 0 ? 0 : 'failed', errors: errorLines(r).length }).toEqual({ refused, code: 'failed', errors: 1 })
        if (refused) expect(errorLines(r)[0]).toContain('state.network')
        expect(config.connections).toBeGreaterThan(0) // it did go on to clean up (and so to remove folders)
        expect(readFileSync(join(victim, 'keep'), 'utf8')).toBe('keep')
      } finally {
        config.server.close()
        other.server.close()
        runner.dispose()
      }
    }
  })

  test(`${process.env.RCH_FUZZ_CASES ?? 320} generated must-reject cases (seed printed above)`, async () => {
    const templates = allTemplates()
    const n = Math.max(templates.length, Number(process.env.RCH_FUZZ_CASES ?? 320))
    // Every template at least once, then random ones (their values are drawn anew each time).
    const cases = Array.from({ length: n }, (_, i) => (i < templates.length ? templates[i] : pick(templates)))
    const t0 = Date.now()
    const outcomes = await pool(cases, 4, runCase)
    const failed = outcomes.filter((o) => o.problems.length)

    console.log(
      `fuzz-inputs: ${outcomes.length} cases from ${templates.length} templates in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${failed.length} failed (seed ${SEED})`
    )
    // The fallback of cleanup_job with a refused state really ran (it is what reaches the configured host).
    expect(outcomes.filter((o) => o.name.startsWith('cleanup_job state') && o.configConnections > 0).length).toBeGreaterThan(0)
    expect(failed.map((o) => `${o.name}: ${o.problems.join('; ')}`)).toEqual([])
  }, 300_000)
})

describe('fuzz: legitimate odd values pass through exactly (VM a)', () => {
  const runner = new FakeRunner()
  const oddImage = `localhost:5000/rch-fuzz/a__b.c--d/tiny-${hex(6)}:t_1.x-Y`
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
    try {
      execFileSync('docker', ['image', 'rm', oddImage], { stdio: 'ignore' })
    } catch {
      // not tagged
    }
  })

  /** Random values made of the characters a shell or a parser could trip on; never NUL. */
  const values = (() => {
    const chars = [
      "'",
      '"',
      '$',
      '(',
      ')',
      '`',
      '\\',
      '\n',
      '\r\n',
      ' ',
      '\t',
      ';',
      '|',
      '&',
      '*',
      '?',
      '~',
      '#',
      '=',
      '%',
      '{',
      '}',
      '[',
      ']',
      '<',
      '>',
      '!',
      'é',
      '日本',
      '🎉',
      '-',
      '--x',
      '\x01',
      '\x1b[31m'
    ]
    const out: Record<string, string> = {
      FZ_QUOTES: `it's "quoted" and 'single'`,
      FZ_SUBST: '$(touch /tmp/rch-fuzz-pwned) `id` ${HOME} $HOME',
      FZ_LINES: 'line one\nline two\r\n\nlast',
      FZ_HUGE: HUGE.slice(0, 50_000) + '\n$(id)\n' + 'y'.repeat(50_000),
      FZ_LONG_LINE: `"${'z'.repeat(100_000)}' $(id)`,
      FZ_EMPTY: '',
      FZ_DASH: '-e -n --help'
    }
    for (let i = 0; i < 8; i++)
      out[`FZ_R${i}`] = Array.from({ length: 1 + int(40) }, () => (rand() < 0.5 ? pick(chars) : word(1 + int(4)))).join('')
    return out
  })()
  const dumpScript = (dir: string): string =>
    Object.keys(values)
      .map((k) => `printf '%s' "$${k}" > ${dir}/out-${k}`)
      .join('\n') + '\n'
  const expectExact = (): void => {
    const got: Record<string, string> = {}
    for (const k of Object.keys(values)) got[k] = readFileSync(join(runner.temp, `out-${k}`), 'utf8')
    expect(got).toEqual(values)
    for (const k of Object.keys(values)) rmSync(join(runner.temp, `out-${k}`))
  }

  test('prepare_job with an odd-but-valid image name and odd env values in the job container', async () => {
    execFileSync('docker', ['tag', testImages.tiny, oddImage])
    const containerEnv = values
    const r = await runner.prepare({
      container: runner.jobContainer(oddImage, { environmentVariables: { HOME: '/github/home', ...containerEnv } }),
      services: []
    })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    const { args } = runner.scriptStep(
      Object.keys(containerEnv)
        .map((k) => `printf '%s' "$${k}" > /__w/_temp/out-${k}`)
        .join('\n') + '\n'
    )
    const s = await runner.call('run_script_step', args)
    expect({ code: s.code, errors: errorLines(s) }).toEqual({ code: 0, errors: [] })
    for (const [k, v] of Object.entries(containerEnv))
      expect({ k, v: readFileSync(join(runner.temp, `out-${k}`), 'utf8') }).toEqual({ k, v })
  })

  test('run_script_step: step env values arrive byte for byte', async () => {
    const { args } = runner.scriptStep(dumpScript('/__w/_temp'), { env: values })
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expectExact()
  })

  test('run_container_step (odd image name): env values arrive byte for byte', async () => {
    const guid = randomUUID()
    writeFileSync(join(runner.temp, `${guid}.sh`), dumpScript('/github/runner_temp'))
    const c = runner.containerStep({ image: oddImage, entryPoint: 'sh', args: [`/github/runner_temp/${guid}.sh`], env: values })
    const r = await runner.call('run_container_step', c.args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expectExact()
  })
})
