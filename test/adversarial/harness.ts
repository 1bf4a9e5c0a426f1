// Hostile jobs run through dist/index.js like the runner runs them, on the loopback VM. Every
// attack is checked from both sides: on the VM (positive control: the attack really happened there)
// and on the runner host (canaries beside `_work` unchanged, nothing created or deleted outside it).
import { createHash } from 'node:crypto'
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner, type HookRun, type RunnerOptions } from '../helpers/fake-runner'
import { scanCmdlines, staticProvider, testVm } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import { waitUntil } from '../helpers/wait'

/**
 * How steps reach the VM: through the job's agent, with the agent disabled in the config, or with
 * the agent killed after prepare_job (the next hook process starts a new one, from its own env).
 */
export type Mode = 'agent' | 'no-agent' | 'agent-gone'
export const MODES: Mode[] = ['agent', 'no-agent', 'agent-gone']

/** Everything under `root` except `_work` and the config: type, mode, content hash or link target. */
export function snapshotOutside(root: string, skip: readonly string[] = ['_work', 'hooks.json']): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (rel: string): void => {
    const abs = rel ? join(root, rel) : root
    const st = lstatSync(abs)
    const mode = (st.mode & 0o7777).toString(8)
    if (st.isSymbolicLink()) out.set(rel, `l ${readlinkSync(abs)}`)
    else if (st.isFile()) out.set(rel, `f ${mode} ${st.nlink} ${createHash('sha256').update(readFileSync(abs)).digest('hex')}`)
    else if (st.isDirectory()) {
      out.set(rel, `d ${mode}`)
      for (const n of readdirSync(abs)) if (!(rel === '' && skip.includes(n))) walk(rel ? `${rel}/${n}` : n)
    } else out.set(rel, `other ${st.mode.toString(8)}`)
  }
  walk('')
  return out
}

/** Secrets a hostile job would love to read or overwrite, beside the runner's `_work`. */
export class Canaries {
  readonly secret = `canary-${Math.random().toString(36).slice(2)}`
  private before: Map<string, string>

  constructor(readonly root: string) {
    writeFileSync(join(root, '.credentials'), `{"token":"${this.secret}"}\n`, { mode: 0o600 })
    mkdirSync(join(root, 'outside', 'dir'), { recursive: true })
    writeFileSync(join(root, 'outside', 'secret.txt'), `${this.secret}\n`)
    writeFileSync(join(root, 'outside', 'dir', 'keep.txt'), 'keep\n')
    this.before = snapshotOutside(root)
  }

  /** What changed outside `_work` since the canaries were laid (empty when nothing did). */
  changes(): string[] {
    const now = snapshotOutside(this.root)
    const diff: string[] = []
    for (const [p, v] of now) if (this.before.get(p) !== v) diff.push(`${p}: ${this.before.get(p) ?? '(absent)'} -> ${v}`)
    for (const p of this.before.keys()) if (!now.has(p)) diff.push(`${p}: deleted`)
    return diff
  }
}

/** A job whose steps are hostile, with canaries around its runner's `_work`. */
export class HostileJob {
  readonly runner: FakeRunner
  readonly canaries: Canaries

  constructor(
    readonly mode: Mode,
    opts: RunnerOptions = {}
  ) {
    const agent = mode === 'no-agent' ? { agent: { enabled: false } } : {}
    // Several slots: the suites run side by side, and some tests here hold two jobs at once.
    const provider = { provider: staticProvider(testVm(), { slots: 8 }, { acquireTimeoutSeconds: 120 }) }
    this.runner = new FakeRunner({ ...opts, config: { ...provider, ...agent, ...(opts.config ?? {}) } })
    this.canaries = new Canaries(this.runner.root)
  }

  async prepare(image: string = testImages.glibc): Promise<HookRun> {
    const r = await this.runner.prepare({ container: this.runner.jobContainer(image), services: [] })
    // No state is a failure too: a hook that ran nothing (an empty file) exits 0 without one.
    if (r.code !== 0 || !r.response?.state) throw new Error(`prepare_job failed (${r.code}): ${r.stdout}\n${r.stderr}`)
    return r
  }

  get state(): { jobId: string; jobRoot: string } {
    return this.runner.state as unknown as { jobId: string; jobRoot: string }
  }

  /** The job's `_work` on the VM (the VM is this machine, so its files can be looked at directly). */
  get remoteWork(): string {
    return `${this.state.jobRoot}/w`
  }

  /** Kills the job's agent processes (by PID), so the next hook command has to start a new one. */
  async killAgents(): Promise<number> {
    const needle = `${this.runner.owner}-${this.state.jobId}`
    const pids = scanCmdlines(needle)
      .filter((p) => p.cmdline.includes('__agent'))
      .map((p) => p.pid)
    // Positive control: an agent was there to kill (else 'agent-gone' would quietly be 'agent'), and it is gone.
    expect(pids.length).toBeGreaterThan(0)
    for (const pid of pids) process.kill(pid, 'SIGKILL')
    expect(await waitUntil(() => !scanCmdlines(needle).some((p) => p.cmdline.includes('__agent')), 10_000, 20)).toBe(true)
    return pids.length
  }

  /** A `run:` step (bash by default); in agent-gone mode the agent is killed before it. */
  async step(script: string, opts: { env?: Record<string, string>; hookEnv?: Record<string, string>; shell?: 'sh' | 'bash' } = {}) {
    if (this.mode === 'agent-gone') await this.killAgents()
    const s = this.runner.scriptStep(script, { shell: opts.shell ?? 'bash', env: opts.env })
    const r = await this.runner.call('run_script_step', s.args, { env: opts.hookEnv })
    return { r, fc: s.fc }
  }

  async finish(): Promise<void> {
    await this.runner.cleanup()
    this.runner.dispose()
  }
}

/** lstat of a path on the VM side, or null. */
export function remoteStat(path: string): { kind: 'file' | 'dir' | 'symlink' | 'fifo' | 'other'; target?: string; size: number } | null {
  try {
    const st = lstatSync(path)
    const kind = st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isFIFO() ? 'fifo' : 'other'
    return { kind, size: st.size, ...(kind === 'symlink' ? { target: readlinkSync(path) } : {}) }
  } catch {
    return null
  }
}

/** `::error::` lines of a hook run. */
export function errors(r: Pick<HookRun, 'stdout' | 'stderr'>): string[] {
  return `${r.stdout}\n${r.stderr}`.split(/\r?\n/).filter((l) => l.startsWith('::error::'))
}

/** A job of its own for one test, cleaned up whatever happens (a leaked lease would block the VM). */
export async function withJob<T>(mode: Mode, fn: (job: HostileJob) => Promise<T>, opts: RunnerOptions = {}): Promise<T> {
  const job = new HostileJob(mode, opts)
  try {
    await job.prepare()
    return await fn(job)
  } finally {
    await job.finish()
  }
}
