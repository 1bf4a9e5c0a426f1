// The step-output row of `npm run bench`: one command printing 20 MB, run through the hook (a
// run_script_step served by the job's agent) and under local `docker exec` into the same container,
// each writing to a pipe that is read to the end as the runner reads the hook's stdout; and, for
// reference, under the docker CLI over OpenSSH's forwarding of the VM's Docker socket (the same SSH
// hop with OpenSSH's client). Also samples the hook's and the agent's memory during the step.
import { makePipes, spawnPiped } from '../test/helpers/pipes'
import { randomUUID } from 'node:crypto'
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitUntil } from '../src/retry'
import type { FakeRunner } from '../test/helpers/fake-runner'
import { opensshArgs, type TestVm } from '../test/helpers/testenv'
import { median, ratiosText } from './stats'

export const STREAM_BYTES = 20_000_000
const FILE = '/tmp/rch-bench-stream.txt'
/** The two commands timed: one that makes its 20.2 MB as it prints (15 MB of random bytes as base64 lines of 100), one that only reads a file. */
export const STREAM_COMMANDS = {
  generated: {
    script: 'head -c 15000000 /dev/urandom | base64 -w 100',
    label: '`head -c 15000000 /dev/urandom \\| base64 -w 100` (20.2 MB)'
  },
  cat: { script: `cat ${FILE}`, label: 'cat of a 20 MB file (the path alone)' }
} as const
export type StreamCommand = keyof typeof STREAM_COMMANDS
/** e.g. `--cpu-prof --cpu-prof-dir=…` to profile the hook's side of the stream. */
const NODE_ARGS = (process.env.RCH_BENCH_HOOK_NODE_ARGS ?? '').split(' ').filter(Boolean)

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

/**
 * The process's proportional share of its resident memory (Pss of /proc/<pid>/smaps_rollup), in
 * KiB: its private pages plus each shared page divided by the processes that map it (the node
 * binary's pages are shared with every other node process running then, the bench's own among them).
 */
function pssKb(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

/** The job's agent: the one `__agent` process whose command line names the job's local folder. */
export function agentPid(localDir: string): number | null {
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try {
      const c = readFileSync(`/proc/${p}/cmdline`, 'utf8')
      if (c.includes('__agent') && c.includes(localDir)) return Number(p)
    } catch {
      // gone
    }
  }
  return null
}

interface Drained {
  ms: number
  /** From the first byte read to the last. */
  flowMs: number
  bytes: number
  code: number | null
  stderr: string
}

/** Runs a process whose stdout is counted and dropped (a reader that keeps up, like the runner's). */
function drain(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; input?: string; onStart?: (pid: number) => void } = {}
): Promise<Drained> {
  return new Promise((resolve, reject) => {
    // Pipes, as the runner gives the hook (and, for the same reader, docker exec too); made before the clock starts.
    const pipes = makePipes()
    const t = process.hrtime.bigint()
    const { child, closed } = spawnPiped(cmd, args, { env: opts.env, cwd: opts.cwd }, pipes)
    let bytes = 0
    let stderr = ''
    let first = 0n
    let last = 0n
    child.stdout.on('data', (c: Buffer) => {
      last = process.hrtime.bigint()
      if (!bytes) first = last
      bytes += c.length
    })
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin!.end(opts.input ?? '')
    child.on('error', reject)
    opts.onStart?.(child.pid!)
    void closed.then(({ code }) =>
      resolve({ ms: Number(process.hrtime.bigint() - t) / 1e6, flowMs: Number(last - first) / 1e6, bytes, code, stderr })
    )
  })
}

/** A process's CPU time so far (user + system), in ms: /proc/<pid>/stat counts it in clock ticks of 10 ms. */
function cpuMs(pid: number): number {
  // The fields after the command name, which is in parentheses and may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}

/** Samples VmRSS of the given pids every few ms until stopped; returns the peaks in KiB. */
function sampler(pids: () => number[]): { stop(): Promise<Map<number, number>> } {
  const peak = new Map<number, number>()
  let on = true
  const loop = (async () => {
    while (on) {
      for (const pid of pids()) {
        const kb = statusKb(pid, 'VmRSS') ?? 0
        if (kb > (peak.get(pid) ?? 0)) peak.set(pid, kb)
      }
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  return {
    stop: async () => {
      on = false
      await loop
      return peak
    }
  }
}

export interface StreamResult {
  ours: number[]
  local: number[]
  /** The docker CLI over OpenSSH's forwarding of the VM's Docker socket (the same SSH hop, OpenSSH's client). */
  forwarded: number[]
  oursFlow: number[]
  localFlow: number[]
  hookPeakMb: number
  agentPeakMb: number
  /** The agent's CPU time (user + system) per step, from /proc/<pid>/stat. */
  agentCpuMs: number[]
  /** The agent between steps: after a no-op step, and after the streams; VmRSS and its private part (RssAnon). */
  agentIdleMb: number
  agentIdlePrivateMb: number
  agentSteadyMb: number
  agentSteadyPrivateMb: number
  /** The same two moments' proportional share (Pss). */
  agentIdlePssMb: number
  agentSteadyPssMb: number
}

/** Hook input for one run_script_step, as the runner writes it (fresh response file). */
function stepInput(runner: FakeRunner, script: string): string {
  const { args } = runner.scriptStep(script)
  const dir = join(runner.temp, '_runner_hook_responses')
  mkdirSync(dir, { recursive: true })
  const responseFile = join(dir, `${randomUUID()}.json`)
  writeFileSync(responseFile, '')
  return JSON.stringify({ command: 'run_script_step', responseFile, args, state: runner.state }) + '\n'
}

/**
 * OpenSSH's client forwarding the VM's Docker socket to a socket in `dir` (a folder only we can
 * enter: the socket is root on the VM); resolves once it answers, with a stop function.
 */
async function forwardDocker(vm: TestVm, dir: string): Promise<{ socket: string; stop(): void }> {
  const socket = join(dir, 'docker.sock')
  // -F /dev/null: no ControlMaster or other setting of the user's own config in the timing.
  const p = spawn(
    'ssh',
    [
      '-F',
      '/dev/null',
      ...opensshArgs(vm),
      '-o',
      'ExitOnForwardFailure=yes',
      '-N',
      '-L',
      `${socket}:/var/run/docker.sock`,
      `${vm.user}@${vm.host}`
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] }
  )
  let err = ''
  let failed: Error | null = null
  p.on('error', (e) => (failed = e))
  p.stderr.on('data', (c: Buffer) => (err += c.toString()))
  const stop = (): void => void p.kill()
  const answers = (): boolean => {
    try {
      execFileSync('docker', ['-H', `unix://${socket}`, 'version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 5_000 })
      return true
    } catch {
      return false
    }
  }
  try {
    await waitUntil(
      async () => {
        if (failed) throw new Error(`cannot run ssh: ${String(failed)}`)
        if (p.exitCode !== null || p.signalCode !== null) throw new Error(`ssh forwarding ended (${p.exitCode ?? p.signalCode}): ${err}`)
        return answers() ? true : undefined
      },
      { timeoutMs: 15_000, minDelayMs: 100, maxDelayMs: 200, onTimeout: () => new Error(`ssh forwarding did not answer: ${err}`) }
    )
  } catch (e) {
    stop()
    throw e
  }
  return { socket, stop }
}

/** Every order of three sides: over 6 rounds each side goes first, second and last twice, and follows each other side equally often. */
const ORDERS = [
  [0, 1, 2],
  [1, 2, 0],
  [2, 0, 1],
  [0, 2, 1],
  [1, 0, 2],
  [2, 1, 0]
] as const

/**
 * At least `minRounds` runs of each side, rounded up to a multiple of 6 (see ORDERS). For `cat`, the 20 MB are made once in
 * the job container (random base64 lines of 100 characters), so both sides time only the path.
 */
export async function measureStream(
  runner: FakeRunner,
  containerId: string,
  localDir: string,
  minRounds: number,
  hook: string,
  command: StreamCommand,
  vm: TestVm,
  /** Also time the same command over OpenSSH's forwarding of the VM's Docker socket. */
  reference = true,
  /** Untimed runs of the step first, so that a new agent's code is as warm as a long-running one's. */
  warmRuns = 0
): Promise<StreamResult> {
  const script = STREAM_COMMANDS[command].script
  const make = await drain('docker', [
    'exec',
    containerId,
    'sh',
    '-c',
    `head -c ${STREAM_BYTES} /dev/urandom | base64 -w 100 | head -c ${STREAM_BYTES} > ${FILE}`
  ])
  if (make.code !== 0) throw new Error(`stream bench: cannot make the file: ${make.stderr}`)
  // The agent exists once a step ran through the hook.
  const warm = await drain(process.execPath, [hook], { env: runner.env(), cwd: runner.workspace, input: stepInput(runner, 'true\n') })
  if (warm.code !== 0) throw new Error(`stream bench: warm-up step failed: ${warm.stderr}`)
  const agent = agentPid(localDir)
  if (agent === null) throw new Error('stream bench: no agent process for the job')
  const idle = statusKb(agent, 'VmRSS') ?? 0
  const idlePrivate = statusKb(agent, 'RssAnon') ?? 0
  const idlePss = pssKb(agent) ?? 0
  for (let i = 0; i < warmRuns; i++) {
    const r = await drain(process.execPath, [hook], { env: runner.env(), cwd: runner.workspace, input: stepInput(runner, `${script}\n`) })
    if (r.code !== 0) throw new Error(`stream bench: warm-up run failed: ${r.stderr}`)
  }
  const ours: number[] = []
  const local: number[] = []
  const forwarded: number[] = []
  const oursFlow: number[] = []
  const localFlow: number[] = []
  const agentCpuMs: number[] = []
  let hookPeak = 0
  let agentPeak = 0
  const runOurs = async (): Promise<void> => {
    let hookPid = 0
    const s = sampler(() => (hookPid ? [hookPid, agent] : [agent]))
    const cpu0 = cpuMs(agent)
    const r = await drain(process.execPath, [...NODE_ARGS, hook], {
      env: runner.env(),
      cwd: runner.workspace,
      input: stepInput(runner, `${script}\n`),
      onStart: (p) => (hookPid = p)
    })
    const peaks = await s.stop()
    agentCpuMs.push(cpuMs(agent) - cpu0)
    if (r.code !== 0 || r.bytes < STREAM_BYTES) throw new Error(`stream bench: step exit ${r.code}, ${r.bytes} bytes: ${r.stderr}`)
    hookPeak = Math.max(hookPeak, peaks.get(hookPid) ?? 0)
    agentPeak = Math.max(agentPeak, peaks.get(agent) ?? 0)
    ours.push(r.ms)
    oursFlow.push(r.flowMs)
  }
  const runLocal = async (): Promise<void> => {
    const r = await drain('docker', ['exec', containerId, 'sh', '-c', script])
    if (r.code !== 0 || r.bytes < STREAM_BYTES) throw new Error(`stream bench: docker exec exit ${r.code}, ${r.bytes} bytes: ${r.stderr}`)
    local.push(r.ms)
    localFlow.push(r.flowMs)
  }
  const fwdDir = mkdtempSync(join(tmpdir(), 'rch-bench-fwd-'))
  let fwd: { socket: string; stop(): void } | null = null
  try {
    fwd = reference ? await forwardDocker(vm, fwdDir) : null
    const socket = fwd?.socket
    const runForwarded = async (): Promise<void> => {
      const r = await drain('docker', ['-H', `unix://${socket}`, 'exec', containerId, 'sh', '-c', script])
      if (r.code !== 0 || r.bytes < STREAM_BYTES)
        throw new Error(`stream bench: forwarded docker exec exit ${r.code}, ${r.bytes} bytes: ${r.stderr}`)
      forwarded.push(r.ms)
    }
    const sides = [runOurs, runLocal, reference ? runForwarded : async () => undefined]
    const rounds = Math.max(1, Math.ceil(minRounds / ORDERS.length)) * ORDERS.length
    for (let i = 0; i < rounds; i++) for (const k of ORDERS[i % ORDERS.length]) await sides[k]()
  } finally {
    fwd?.stop()
    rmSync(fwdDir, { recursive: true, force: true })
  }
  // Steady: the agent between steps, a second after the last stream.
  await new Promise((r) => setTimeout(r, 1000))
  const steady = statusKb(agent, 'VmRSS') ?? 0
  const steadyPrivate = statusKb(agent, 'RssAnon') ?? 0
  const steadyPss = pssKb(agent) ?? 0
  await drain('docker', ['exec', containerId, 'rm', '-f', FILE])
  const mb = (kb: number): number => kb / 1024
  return {
    ours,
    local,
    forwarded,
    oursFlow,
    localFlow,
    hookPeakMb: mb(hookPeak),
    agentPeakMb: mb(agentPeak),
    agentCpuMs,
    agentIdleMb: mb(idle),
    agentIdlePrivateMb: mb(idlePrivate),
    agentSteadyMb: mb(steady),
    agentSteadyPrivateMb: mb(steadyPrivate),
    agentIdlePssMb: mb(idlePss),
    agentSteadyPssMb: mb(steadyPss)
  }
}

export function streamRow(
  command: StreamCommand,
  r: StreamResult,
  /** A configuration other than the defaults, named in the row (its throughput then has no target). */
  variant?: string
): {
  name: string
  ours: number
  baseline: number
  baselineName: string
  unit: string
  target: string
  note: string
  ratio: number
  ok?: boolean
} {
  const bytes = command === 'cat' ? STREAM_BYTES : 20_200_000
  const mbps = (ms: number): number => bytes / 1e6 / (ms / 1000)
  const ours = mbps(median(r.ours))
  const local = mbps(median(r.local))
  return {
    name: `a step printing 20 MB: ${STREAM_COMMANDS[command].label}${variant ? `, ${variant}` : ''}`,
    ours,
    baseline: local,
    baselineName: 'local docker exec, same command and container',
    unit: 'MB/s',
    target: variant ? '-' : '≥ 0.7×',
    ratio: ours / local,
    ok: variant ? undefined : ours / local >= 0.7,
    note:
      `wall ${Math.round(median(r.ours))} ms against ${Math.round(median(r.local))} ms, ${r.ours.length} rounds (per-round ratios ${ratiosText(r.ours.map((o, i) => r.local[i] / o))}); first to last byte ${Math.round(median(r.oursFlow))} ms against ` +
      `${Math.round(median(r.localFlow))} ms (${(mbps(median(r.oursFlow)) / mbps(median(r.localFlow))).toFixed(2)}×). Peak RSS (VmRSS every 5 ms): hook ${r.hookPeakMb.toFixed(0)} MB, agent ${r.agentPeakMb.toFixed(0)} MB. Agent CPU per step (user + system): ${Math.round(median(r.agentCpuMs))} ms. ` +
      `Agent between steps: ${r.agentIdleMb.toFixed(0)} MB (private ${r.agentIdlePrivateMb.toFixed(0)} MB, PSS ${r.agentIdlePssMb.toFixed(0)} MB) after a no-op step, ${r.agentSteadyMb.toFixed(0)} MB (private ${r.agentSteadyPrivateMb.toFixed(0)} MB, PSS ${r.agentSteadyPssMb.toFixed(0)} MB) after these` +
      (r.forwarded.length === 0 ? '' : '. ') +
      (r.forwarded.length === 0
        ? ''
        : `Reference, the same SSH hop with OpenSSH's client: docker CLI over ssh -L of the VM's Docker socket ${Math.round(median(r.forwarded))} ms, ` +
          `${(median(r.local) / median(r.forwarded)).toFixed(2)}× local (per-round ratios ${ratiosText(r.forwarded.map((f, i) => r.local[i] / f))})`)
  }
}
