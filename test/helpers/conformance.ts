// Shared checks for the conformance tests: what is left on the "VM" after a command, workflow-command
// lines in the hook's output, process scans, raw hook calls. Everything looks at the real machine
// (the VMs are loopback sshds driving this machine's dockerd, so the VM's files and processes are
// this machine's).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { FakeRunner, HOOK, runnerOwnerId, type HookRun } from './fake-runner'
import { loadVm, testImages, type TestVm, type VmName } from './testenv'
import { waitUntil } from './wait'

export const LABEL_RUNNER = 'dev.remote-container-hooks.runner'

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export function testVmName(): VmName {
  return (process.env.RCH_TEST_VM as VmName) || 'a'
}

export function testVm(): TestVm {
  return loadVm(testVmName())
}

/**
 * A runner of the describe block's own (cleaned up after it) and the prepare_job args of a job
 * container with one service, both the tiny image: the job the undo tests make and undo.
 */
export function jobWithService(name: string): { runner: FakeRunner; args: () => Parameters<FakeRunner['prepare']>[0] } {
  const runner = new FakeRunner({ name })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })
  const args = (): Parameters<FakeRunner['prepare']>[0] => ({
    container: runner.jobContainer(testImages.tiny),
    services: [runner.service(testImages.tiny, { entryPoint: 'sleep', entryPointArgs: ['3600'] })]
  })
  return { runner, args }
}

/** The provider block FakeRunner writes, for tests that need to change one field of it. */
export function staticProvider(vm: TestVm = testVm(), host: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    kind: 'static',
    hosts: [{ host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, ...host }],
    ...extra
  }
}

/** The owner id of another runner, named `runnerName`, in another runner folder on this host (FakeRunner.owner is a runner's own). */
export const otherOwner = (runnerName: string, work = '/home/other/_work'): string => runnerOwnerId(runnerName, work)

/** `::error::` lines on the hook's stdout and stderr. */
export function errorLines(r: Pick<HookRun, 'stdout' | 'stderr'>): string[] {
  return `${r.stdout}\n${r.stderr}`.split(/\r?\n/).filter((l) => l.startsWith('::error::'))
}

export function cmd(
  file: string,
  args: string[],
  opts: { input?: string; maxBuffer?: number } = {}
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = execFile(file, args, { maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
    if (opts.input !== undefined) c.stdin?.end(opts.input)
    else c.stdin?.end()
  })
}

export async function dockerLines(args: string[]): Promise<string[]> {
  const r = await cmd('docker', args)
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout.split('\n').filter(Boolean)
}

export interface Leftovers {
  containers: string[]
  networks: string[]
  volumes: string[]
  /** folders <workRoot>/jobs/<owner>-* */
  jobFolders: string[]
  /** <workRoot>/leases/slot-* whose owner file names this runner */
  leases: string[]
}

export const NOTHING: Leftovers = { containers: [], networks: [], volumes: [], jobFolders: [], leases: [] }

/** Lease folders (slot-N) on the VM whose owner file's `field` (the owner id, or the job id) is `value`. */
export function leaseSlots(vm: TestVm, field: 'owner' | 'job', value: string): string[] {
  const dir = join(vm.workRoot, 'leases')
  if (!existsSync(dir)) return []
  return readdirSync(dir).filter((d) => {
    try {
      return readFileSync(join(dir, d, 'owner'), 'utf8').split(' ')[field === 'owner' ? 0 : 1] === value
    } catch {
      return false
    }
  })
}

/** Lease folders (slot-N) held by an owner id on the VM. */
export const leasesOf = (vm: TestVm, owner: string): string[] => leaseSlots(vm, 'owner', owner)

/** Everything of this runner on the docker engine and in the VM's work root. */
export async function leftovers(runner: FakeRunner, vm: TestVm = testVm()): Promise<Leftovers> {
  const f = `label=${LABEL_RUNNER}=${runner.name}`
  const owner = runner.owner
  const jobs = join(vm.workRoot, 'jobs')
  return {
    containers: await dockerLines(['ps', '-aq', '--filter', f]),
    networks: await dockerLines(['network', 'ls', '-q', '--filter', f]),
    volumes: await dockerLines(['volume', 'ls', '-q', '--filter', f]),
    jobFolders: existsSync(jobs) ? readdirSync(jobs).filter((d) => d.startsWith(`${owner}-`)) : [],
    leases: leasesOf(vm, owner)
  }
}

/** The slot number the hook printed in its "using HOST:PORT slot N" progress line. */
export function leasedSlot(r: Pick<HookRun, 'stdout'>): number | null {
  const m = /\[remote-hooks\] using \S+ slot (\d+)/.exec(r.stdout)
  return m ? Number(m[1]) : null
}

/** PIDs whose /proc/PID/cmdline contains needle (every process on this machine, the VM included). */
export function scanCmdlines(needle: string): { pid: number; cmdline: string }[] {
  const hits: { pid: number; cmdline: string }[] = []
  const want = Buffer.from(needle)
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    let c: Buffer
    try {
      c = readFileSync(`/proc/${p}/cmdline`)
    } catch {
      continue
    }
    if (c.includes(want)) hits.push({ pid: Number(p), cmdline: c.toString('utf8').replace(/\0/g, ' ') })
  }
  return hits
}

/** Scans /proc/*\/cmdline for needle until `until` settles (at least minScans times). */
export async function scanWhile(
  needle: string,
  until: Promise<unknown>,
  minScans = 3,
  everyMs = 40
): Promise<{ scans: number; hits: { pid: number; cmdline: string }[] }> {
  let finished = false
  until.then(
    () => (finished = true),
    () => (finished = true)
  )
  let scans = 0
  const hits: { pid: number; cmdline: string }[] = []
  while (!finished || scans < minScans) {
    hits.push(...scanCmdlines(needle))
    scans++
    await sleep(everyMs)
  }
  return { scans, hits }
}

/** Resolves once the child's stdout has contained `marker`; rejects if the child closes first. */
export function waitForOutput(child: ChildProcess, marker: string, timeoutMs = 60000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(
      () => reject(new Error(`no "${marker}" on the hook's stdout within ${timeoutMs} ms; got: ${seen.slice(-2000)}`)),
      timeoutMs
    )
    const onData = (c: Buffer): void => {
      seen = (seen + c.toString()).slice(-100000)
      if (seen.includes(marker)) {
        clearTimeout(timer)
        child.stdout!.off('data', onData)
        resolve()
      }
    }
    child.stdout!.on('data', onData)
    child.once('close', () => {
      clearTimeout(timer)
      reject(new Error(`the hook exited before printing "${marker}"; stdout tail: ${seen.slice(-2000)}`))
    })
  })
}

/** One field (in kB) of /proc/PID/status, or null when the process is gone. */
export function procStatusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

/** A TCP port nothing listens on right now (for host port bindings). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

/** How the runner turns a service/container `command:` string into entryPointArgs (split on ' ', empties dropped). */
export function runnerSplit(s: string): string[] {
  return s
    .split(' ')
    .map((x) => x.trim())
    .filter(Boolean)
}

/** A second set of file-command files for a concurrent step (FakeRunner.newFileCommands wipes the folder). */
export function extraFileCommands(runner: FakeRunner): { files: Record<string, string>; env: Record<string, string> } {
  const guid = randomUUID()
  const dir = join(runner.temp, '_runner_file_commands')
  mkdirSync(dir, { recursive: true })
  const names: Record<string, string> = {
    GITHUB_PATH: 'add_path',
    GITHUB_ENV: 'set_env',
    GITHUB_OUTPUT: 'set_output',
    GITHUB_STATE: 'save_state',
    GITHUB_STEP_SUMMARY: 'step_summary'
  }
  const files: Record<string, string> = {}
  const env: Record<string, string> = {}
  for (const [k, n] of Object.entries(names)) {
    files[k] = join(dir, `${n}_${guid}`)
    writeFileSync(files[k], '')
    env[k] = `/__w/_temp/_runner_file_commands/${n}_${guid}`
  }
  return { files, env }
}

/** A `run:` script written to _temp without touching the file-command files. */
export function writeScript(runner: FakeRunner, script: string): string {
  const guid = randomUUID()
  writeFileSync(join(runner.temp, `${guid}.sh`), script)
  return `/__w/_temp/${guid}.sh`
}

export interface RawRun {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  responseFile: string
  responseExists: boolean
  responseText: string
}

/**
 * Calls the hook with a hand-made envelope (any JSON value; `responseFile` is filled in unless the
 * envelope sets it) and an env where `unset` names are removed. The response file is pre-created
 * empty like the runner does.
 */
export function callRaw(
  runner: FakeRunner,
  envelope: Record<string, unknown> | null,
  opts: { stdin?: string; unset?: string[]; env?: Record<string, string>; trailer?: string } = {}
): Promise<RawRun> {
  const dir = join(runner.temp, '_runner_hook_responses')
  mkdirSync(dir, { recursive: true })
  const responseFile = join(dir, `${randomUUID()}.json`)
  writeFileSync(responseFile, '')
  const input = opts.stdin ?? JSON.stringify({ responseFile, ...(envelope ?? {}) }) + (opts.trailer ?? '\n')
  const env: Record<string, string> = runner.env(opts.env)
  for (const k of opts.unset ?? []) delete env[k]
  const child = spawn(process.execPath, [HOOK], { cwd: runner.workspace, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => (stdout += c))
  child.stderr.on('data', (c) => (stderr += c))
  child.stdin.end(input)
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      const responseExists = existsSync(responseFile)
      const responseText = responseExists ? readFileSync(responseFile, 'utf8') : ''
      resolve({ code, signal, stdout, stderr, responseFile, responseExists, responseText })
    })
  })
}

/**
 * Live processes started on behalf of a runner: their environment carries its RUNNER_TRACKING_ID
 * (the runner kills exactly those at job end). Waits up to `graceMs` for exiting ones to go.
 */
export async function runnerProcesses(runner: FakeRunner, graceMs = 3000): Promise<{ pid: number; cmdline: string }[]> {
  const needle = Buffer.from(`RUNNER_TRACKING_ID=${runner.trackingId}\0`)
  const scan = (): { pid: number; cmdline: string }[] => {
    const out: { pid: number; cmdline: string }[] = []
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p) || Number(p) === process.pid) continue
      try {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
        if (/^\d+ \(.*\) Z /.test(stat)) continue // a zombie is gone already
        if (readFileSync(`/proc/${p}/environ`).includes(needle))
          out.push({ pid: Number(p), cmdline: readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ') })
      } catch {
        // exited meanwhile
      }
    }
    return out
  }
  let found = scan()
  await waitUntil(() => (found = scan()).length === 0, graceMs, 100)
  return found
}
