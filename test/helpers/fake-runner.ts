// A fake GitHub Actions runner: the runner's host directory layout, and hook calls made
// exactly as the runner makes them (one process per command, one JSON line on stdin then EOF, a
// pre-created empty response file, cwd = the workspace).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  chmodSync
} from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadVm, repoRoot, testenvDir, type VmName } from './testenv'
import { makePipes, spawnPiped } from './pipes'

export const HOOK = join(repoRoot, 'dist', 'index.js')
/** The fleet ledger of every job the tests run (scripts/test.sh empties it before a run). */
export const TEST_LEDGER = join(testenvDir, 'ledger')

export interface HookRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  response: any
  responseText: string
  ms: number
}

/** Externals with a real node20 (the host's node, which runs in the glibc test image). */
export function sharedExternals(): string {
  const dir = join(testenvDir, 'externals')
  const node = join(dir, 'node20', 'bin', 'node')
  if (!existsSync(node)) {
    mkdirSync(join(dir, 'node20', 'bin'), { recursive: true })
    mkdirSync(join(dir, 'node20_alpine', 'bin'), { recursive: true })
    copyFileSync(process.execPath, node)
    chmodSync(node, 0o755)
  }
  return dir
}

/** The hook's owner id for a runner (src/labels.ts, derived here on its own): name, runner host, `_work`. */
export function runnerOwnerId(name: string, work: string, host = hostname()): string {
  return createHash('sha256').update(`runner\0${name}\0${host}\0${work}`).digest('hex').slice(0, 16)
}

export interface RunnerOptions {
  /** The hook bundle to run (default dist/index.js). */
  hook?: string
  vm?: VmName
  name?: string
  /** The config, or a function of the runner's owner id that makes it (for names derived from it). */
  config?: Record<string, unknown> | ((owner: string) => Record<string, unknown>)
  /** The folder the runner's root (its _work and config) is made in (default: the temp folder). */
  parent?: string
}

export class FakeRunner {
  readonly root: string
  readonly work: string
  readonly temp: string
  readonly workspace: string
  readonly externals: string
  readonly configFile: string
  readonly name: string
  /** The hook's owner id for this runner. */
  readonly owner: string
  readonly trackingId = randomUUID()
  readonly hook: string
  state: Record<string, unknown> | null = null

  constructor(opts: RunnerOptions = {}) {
    this.root = mkdtempSync(join(opts.parent ?? tmpdir(), 'rch-runner-'))
    this.work = join(this.root, '_work')
    this.temp = join(this.work, '_temp')
    this.workspace = join(this.work, 'repo', 'repo')
    this.externals = sharedExternals()
    this.name = opts.name ?? `test-runner-${randomUUID().slice(0, 8)}`
    this.owner = runnerOwnerId(this.name, this.work)
    this.hook = opts.hook ?? HOOK
    for (const d of ['_temp/_github_home', '_temp/_github_workflow', '_temp/_runner_file_commands', '_actions', '_tool', 'repo/repo']) {
      mkdirSync(join(this.work, d), { recursive: true })
    }
    writeFileSync(join(this.temp, '_github_workflow', 'event.json'), JSON.stringify({ action: 'test', number: 1 }))
    const given: Record<string, unknown> & { fleet?: object } =
      typeof opts.config === 'function' ? opts.config(this.owner) : (opts.config ?? {})
    const override = given as { provider?: unknown; remote?: unknown }
    const vm = override.provider && override.remote ? null : loadVm(opts.vm ?? ((process.env.RCH_TEST_VM as VmName) || 'a'))
    const config = {
      // A busy host fails a test within 30 s instead of the default 10 minutes.
      ...(vm
        ? {
            provider: {
              kind: 'static',
              acquireTimeoutSeconds: 30,
              // Several slots: npm test runs two files at once, and a suite may hold a job for its whole length.
              hosts: [
                { host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, slots: 4 }
              ]
            },
            remote: { workRoot: vm.workRoot }
          }
        : {}),
      timeouts: { healthSeconds: 60, connectSeconds: 10 },
      // Agents of jobs a test abandons end soon instead of after the default 30 minutes.
      // RCH_TEST_AGENT=off runs a suite with agent.enabled: false (test/conformance/*-no-agent.test.ts).
      agent: { idleSeconds: 120, ...(process.env.RCH_TEST_AGENT === 'off' ? { enabled: false } : {}) },
      ...given,
      // Reservations go to the test environment's ledger (a test's own fleet.ledger wins), never to
      // the machine's default under $TMPDIR/rch-<uid>, which a real runner of this user shares.
      fleet: { ledger: { kind: 'local', path: TEST_LEDGER }, ...(given.fleet ?? {}) }
    }
    this.configFile = join(this.root, 'hooks.json')
    writeFileSync(this.configFile, JSON.stringify(config, null, 2))
  }

  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      RUNNER_TEMP: this.temp,
      RUNNER_WORKSPACE: join(this.work, 'repo'),
      GITHUB_WORKSPACE: this.workspace,
      RUNNER_NAME: this.name,
      RUNNER_TRACKING_ID: this.trackingId,
      REMOTE_HOOKS_CONFIG: this.configFile,
      GITHUB_ACTIONS: 'true',
      CI: 'true',
      ...extra
    }
  }

  /** Starts the hook; resolve `done` for the result. The child is exposed for signals. */
  start(
    command: string,
    args: unknown,
    opts: {
      state?: unknown
      env?: Record<string, string>
      stdin?: string
      noResponseFile?: boolean
      callerReadsStdout?: boolean
      /** The input is written but stdin left open: the caller ends it (the hook waits for its end). */
      holdStdin?: boolean
    } = {}
  ): { child: ChildProcess; done: Promise<HookRun> } {
    const dir = join(this.temp, '_runner_hook_responses')
    mkdirSync(dir, { recursive: true })
    const responseFile = join(dir, `${randomUUID()}.json`)
    if (!opts.noResponseFile) writeFileSync(responseFile, '')
    const state = opts.state === undefined ? this.state : opts.state
    const input = opts.stdin ?? JSON.stringify({ command, responseFile, args, state }) + '\n'
    const pipes = process.env.RCH_TEST_STDIO === 'socket' ? null : makePipes()
    const started = Date.now()
    // stdout and stderr are pipes, as the runner's (see pipes.ts); RCH_TEST_STDIO=socket gives Node's socketpair.
    const { child, closed } =
      process.env.RCH_TEST_STDIO === 'socket'
        ? {
            child: spawn(process.execPath, [this.hook], { cwd: this.workspace, env: this.env(opts.env), stdio: ['pipe', 'pipe', 'pipe'] }),
            closed: null
          }
        : spawnPiped(
            process.execPath,
            [this.hook],
            { cwd: this.workspace, env: this.env(opts.env), sharedPipe: process.env.RCH_TEST_STDIO === 'shared-pipe' },
            pipes ?? undefined
          )
    let stdout = ''
    let stderr = ''
    // callerReadsStdout: the caller reads the hook's stdout itself, at its own pace (HookRun.stdout stays empty).
    if (!opts.callerReadsStdout) child.stdout.on('data', (c) => (stdout += c))
    child.stderr.on('data', (c) => (stderr += c))
    if (opts.holdStdin) child.stdin!.write(input)
    else child.stdin!.end(input)
    const done = new Promise<HookRun>((resolve) => {
      const onClose = (code: number | null, signal: NodeJS.Signals | null): void => {
        let responseText = ''
        try {
          responseText = readFileSync(responseFile, 'utf8')
        } catch {
          // absent
        }
        let response: any
        try {
          response = responseText.trim() ? JSON.parse(responseText) : null
        } catch {
          response = { unparsable: responseText }
        }
        resolve({ code, signal, stdout, stderr, response, responseText, ms: Date.now() - started })
      }
      if (closed)
        void closed.then(
          ({ code, signal }) => onClose(code, signal),
          (e: Error) => {
            stderr += `could not start the hook: ${e.message}`
            onClose(null, null)
          }
        )
      else child.on('close', onClose)
    })
    return { child, done }
  }

  call(
    command: string,
    args: unknown,
    opts: { state?: unknown; env?: Record<string, string>; stdin?: string; noResponseFile?: boolean } = {}
  ): Promise<HookRun> {
    return this.start(command, args, opts).done
  }

  mount(source: string | null, target: string, readOnly = false, userProvidedValue: string | null = null) {
    return { userProvidedValue, sourceVolumePath: source, targetVolumePath: target, readOnly }
  }

  /** The job container as the runner describes it in prepare_job's args. */
  jobContainer(image: string, extra: Record<string, unknown> = {}) {
    return {
      image,
      dockerfile: null,
      entryPointArgs: [],
      entryPoint: null,
      workingDirectory: '/__w/repo/repo',
      createOptions: null,
      registry: null,
      environmentVariables: { HOME: '/github/home' },
      portMappings: [],
      systemMountVolumes: [
        this.mount('/var/run/docker.sock', '/var/run/docker.sock'),
        this.mount(this.work, '/__w'),
        this.mount(this.externals, '/__e', true),
        this.mount(this.temp, '/__w/_temp'),
        this.mount(join(this.work, '_actions'), '/__w/_actions'),
        this.mount(join(this.work, '_tool'), '/__w/_tool'),
        this.mount(join(this.temp, '_github_home'), '/github/home'),
        this.mount(join(this.temp, '_github_workflow'), '/github/workflow')
      ],
      userMountVolumes: [],
      ...extra
    }
  }

  service(image: string, extra: Record<string, unknown> = {}) {
    return {
      image,
      dockerfile: null,
      entryPointArgs: [],
      entryPoint: null,
      workingDirectory: null,
      createOptions: null,
      registry: null,
      environmentVariables: {},
      portMappings: [],
      systemMountVolumes: [],
      userMountVolumes: [],
      ...extra
    }
  }

  async prepare(args: unknown): Promise<HookRun> {
    const r = await this.call('prepare_job', args, { state: null })
    if (r.code === 0 && r.response?.state) this.state = r.response.state
    return r
  }

  /** Like the runner before each step: fresh file-command files (artifacts_list pre-filled). */
  newFileCommands(): { guid: string; files: Record<string, string>; env: Record<string, string> } {
    const guid = randomUUID()
    const dir = join(this.temp, '_runner_file_commands')
    // As the runner: the folder stays and the earlier step's files go (a test may have put
    // something else in the folder's place: that goes whole).
    if (lstatSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true })
    } else {
      rmSync(dir, { recursive: true, force: true })
      mkdirSync(dir, { recursive: true })
    }
    const names: Record<string, string> = {
      GITHUB_PATH: 'add_path',
      GITHUB_ENV: 'set_env',
      GITHUB_OUTPUT: 'set_output',
      GITHUB_STATE: 'save_state',
      GITHUB_STEP_SUMMARY: 'step_summary',
      GITHUB_ARTIFACTS_LIST: 'artifacts_list'
    }
    const files: Record<string, string> = {}
    const env: Record<string, string> = {}
    for (const [k, n] of Object.entries(names)) {
      const f = join(dir, `${n}_${guid}`)
      writeFileSync(f, n === 'artifacts_list' ? '{"version":1,"subjects":[{"name":"x"}]}' : '')
      files[k] = f
      env[k] = `/__w/_temp/_runner_file_commands/${n}_${guid}`
    }
    return { guid, files, env }
  }

  /** A `run:` step: the script is written to _temp like ScriptHandler does. */
  scriptStep(
    script: string,
    opts: { shell?: 'sh' | 'bash'; env?: Record<string, string>; workingDirectory?: string; prependPath?: string[] | string } = {}
  ) {
    const fc = this.newFileCommands()
    const guid = randomUUID()
    writeFileSync(join(this.temp, `${guid}.sh`), script)
    const shell = opts.shell ?? 'sh'
    const scriptPath = `/__w/_temp/${guid}.sh`
    return {
      fc,
      args: {
        entryPointArgs: shell === 'sh' ? ['-e', scriptPath] : ['--noprofile', '--norc', '-e', '-o', 'pipefail', scriptPath],
        entryPoint: shell,
        environmentVariables: {
          ...fc.env,
          GITHUB_WORKSPACE: '/__w/repo/repo',
          RUNNER_TEMP: '/__w/_temp',
          GITHUB_EVENT_PATH: '/github/workflow/event.json',
          ...(opts.env ?? {})
        },
        prependPath: opts.prependPath ?? [],
        workingDirectory: opts.workingDirectory ?? '/__w/repo/repo'
      }
    }
  }

  /** A container action's args, as run_container_step gets them. */
  containerStep(opts: {
    image?: string | null
    dockerfile?: string | null
    entryPoint?: string | null
    args?: string[]
    env?: Record<string, string>
  }) {
    const fc = this.newFileCommands()
    const env: Record<string, string> = {
      HOME: '/github/home',
      GITHUB_WORKSPACE: '/github/workspace',
      RUNNER_TEMP: '/github/runner_temp',
      GITHUB_EVENT_PATH: '/github/workflow/event.json'
    }
    for (const [k, v] of Object.entries(fc.env)) env[k] = v.replace('/__w/_temp/_runner_file_commands', '/github/file_commands')
    return {
      fc,
      args: {
        image: opts.image ?? null,
        dockerfile: opts.dockerfile ?? null,
        entryPointArgs: opts.args ?? [],
        entryPoint: opts.entryPoint ?? null,
        workingDirectory: '/github/workspace',
        createOptions: null,
        registry: null,
        environmentVariables: { ...env, ...(opts.env ?? {}) },
        portMappings: [],
        systemMountVolumes: [
          this.mount('/var/run/docker.sock', '/var/run/docker.sock'),
          this.mount(this.temp, '/github/runner_temp'),
          this.mount(join(this.temp, '_github_home'), '/github/home'),
          this.mount(join(this.temp, '_github_workflow'), '/github/workflow'),
          this.mount(join(this.temp, '_runner_file_commands'), '/github/file_commands'),
          this.mount(this.workspace, '/github/workspace')
        ],
        userMountVolumes: []
      }
    }
  }

  async cleanup(): Promise<HookRun> {
    return this.call('cleanup_job', {})
  }

  dispose(): void {
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** Docker objects on this machine's engine carrying a label (the VMs share this dockerd). */
export function dockerIds(filter: string): Promise<string[]> {
  return new Promise((resolve) => {
    const c = spawn('docker', ['ps', '-aq', '--filter', filter])
    let out = ''
    c.stdout.on('data', (d) => (out += d))
    c.on('close', () => resolve(out.split('\n').filter(Boolean)))
  })
}
