// One soak job: a runner (its own name, so nothing of another job is ever pruned on its behalf),
// its worker, prepare_job, two run_script_step, cleanup_job, and the chaos the plan gives it.
import { TerminateInstancesCommand } from '@aws-sdk/client-ec2'
import { EC2_HOOK_ENV, ec2RunnerConfig } from '../helpers/fake-instance'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { agentsOf, killPid } from './procs'
import { instanceNameOf, SOAK_REGION, type SoakEnv } from './soak-env'
import { JobWorker } from './worker'

export type Kind = 'static' | 'ec2'
export type Chaos = 'none' | 'kill-hook' | 'kill-agent' | 'terminate'
export type Phase = 'prepare_job' | 'step 1' | 'step 2' | 'cleanup_job'

export interface JobPlan {
  n: number
  kind: Kind
  chaos: Chaos
  /** where the chaos strikes (kill-hook: any phase; kill-agent, terminate: a step) */
  phase: Phase
  /** when, as a fraction of that phase's typical length so far */
  at: number
  /** how long each step's script sleeps (ms) */
  stepMs: number
  /** static hosts in this order (spreads the jobs over both VMs) */
  reverseHosts: boolean
}

export type Outcome = 'ok' | 'step failed' | 'prepare failed' | 'cleanup failed' | 'runner killed'

export interface JobResult {
  plan: JobPlan
  runner: string
  owner: string
  trackingId: string
  outcome: Outcome
  /** what the chaos really hit: 'mid prepare_job', 'after step 1', 'agent pid 123 in step 1', 'i-… in step 2', or 'missed: …' */
  struck: string | null
  instanceId?: string
  /** the hook processes the soak's worker started (all must be gone at the end) */
  hookPids: number[]
  workerPid: number
  /** when its runner died (epoch ms): its last sign of life in the ledger is no later */
  diedAt?: number
  ms: number
  /** failures a clean job must not have: phase → first error line */
  errors: Record<string, string>
}

/** Typical phase lengths by kind, from the jobs so far: a kill lands inside the phase, not after it. */
export class PhaseClock {
  private readonly seen = new Map<string, number[]>()
  private static readonly GUESS: Record<Phase, number> = { prepare_job: 2500, 'step 1': 700, 'step 2': 700, cleanup_job: 800 }
  note(kind: Kind, phase: Phase, ms: number): void {
    const k = `${kind} ${phase}`
    this.seen.set(k, [...(this.seen.get(k) ?? []).slice(-40), ms])
  }
  typical(kind: Kind, phase: Phase): number {
    const xs = [...(this.seen.get(`${kind} ${phase}`) ?? [])].sort((a, b) => a - b)
    return xs.length ? xs[Math.floor(xs.length / 2)] : PhaseClock.GUESS[phase] * (kind === 'ec2' && phase === 'prepare_job' ? 2 : 1)
  }
}

const firstError = (r: HookRun): string =>
  `${r.stdout}\n${r.stderr}`.split('\n').find((l) => l.startsWith('::error::')) ?? `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}`

export function newRunner(env: SoakEnv, plan: JobPlan): FakeRunner {
  const name = `soak-${env.tag}-${plan.n}`
  const common = {
    timeouts: { healthSeconds: 60, connectSeconds: 10 },
    // An abandoned agent ends soon after its runner died, so the stray-process check need not wait long.
    agent: { idleSeconds: 20 },
    fleet: env.fleet
  }
  if (plan.kind === 'ec2') {
    // The instance's sshd and work root are named from the owner id, all the booter knows of the job.
    const config = (owner: string): Record<string, unknown> => ({
      ...ec2RunnerConfig({
        endpoint: env.motoEndpoint,
        imageId: env.ami,
        name: instanceNameOf(owner),
        provider: { region: SOAK_REGION, acquireTimeoutSeconds: 180 }
      }),
      ...common
    })
    return new FakeRunner({ name, config, parent: env.tmp })
  }
  const hosts = env.vms.map((vm) => ({
    host: vm.host,
    port: vm.port,
    user: vm.user,
    identityFile: vm.identityFile,
    knownHostsFile: vm.knownHostsFile,
    slots: 64
  }))
  return new FakeRunner({
    name,
    parent: env.tmp,
    config: {
      provider: { kind: 'static', acquireTimeoutSeconds: 60, hosts: plan.reverseHosts ? hosts.reverse() : hosts },
      remote: { workRoot: env.workRoot },
      ...common
    }
  })
}

export async function runJob(env: SoakEnv, plan: JobPlan, clock: PhaseClock): Promise<JobResult> {
  const runner = newRunner(env, plan)
  const owner = runner.owner
  if (plan.kind === 'ec2') env.owners.add(owner)
  const worker = new JobWorker()
  const started = Date.now()
  const res: JobResult = {
    plan,
    runner: runner.name,
    owner,
    trackingId: runner.trackingId,
    outcome: 'ok',
    struck: null,
    hookPids: [],
    workerPid: worker.pid,
    ms: 0,
    errors: {}
  }
  const hookEnv = {
    ...(plan.kind === 'ec2' ? EC2_HOOK_ENV : {}),
    GITHUB_REPOSITORY: 'acme/soak',
    GITHUB_JOB: `job${plan.n % 7}`,
    TMPDIR: env.tmp
  }

  /** Runs one command; false when the runner died in it (or right after it). */
  const command = async (phase: Phase, cmd: string, args: unknown, state: unknown): Promise<HookRun | null> => {
    const run = worker.start(runner, cmd, args, { state, env: hookEnv })
    const pid = await run.pid
    if (pid < 0) {
      res.outcome = 'runner killed'
      return null
    }
    res.hookPids.push(pid)
    let timer: NodeJS.Timeout | undefined
    let sideEffect: Promise<void> = Promise.resolve()
    const strikes = plan.phase === phase && plan.chaos !== 'none'
    /** The chaos itself; `when` says where it landed. */
    const strike = async (when: string): Promise<void> => {
      if (plan.chaos === 'kill-hook') {
        if (when.startsWith('mid')) killPid(pid)
        worker.kill()
        res.diedAt = Date.now()
        res.struck = when
      } else if (plan.chaos === 'kill-agent') {
        const agents = agentsOf(runner.trackingId)
        for (const a of agents) killPid(a.pid)
        res.struck = agents.length ? `agent pid ${agents.map((a) => a.pid).join(',')} ${when}` : `missed: no agent ${when}`
      } else if (plan.chaos === 'terminate' && res.instanceId) {
        const id = res.instanceId
        res.struck = `${id} ${when}`
        await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
        await env.booter.kill(id)
      }
    }
    if (strikes) {
      const delay = Math.round(plan.at * clock.typical(plan.kind, phase))
      timer = setTimeout(() => {
        sideEffect = strike(`mid ${phase}`).catch((e) => void (res.errors['chaos'] = String(e)))
      }, delay)
    }
    const r = await run.done
    clearTimeout(timer)
    await sideEffect
    if (!r.killed) clock.note(plan.kind, phase, r.ms)
    // The command ended before the chaos struck: it strikes right after it instead (between commands).
    if (strikes && !res.struck) await strike(`after ${phase}`).catch((e) => void (res.errors['chaos'] = String(e)))
    if (r.killed || !worker.alive) {
      res.outcome = 'runner killed'
      return null
    }
    return r
  }

  try {
    const prep = await command('prepare_job', 'prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, null)
    if (!prep) return res
    const state = prep.code === 0 ? ((prep.response as { state?: Record<string, unknown> } | null)?.state ?? null) : null
    if (!state) {
      res.outcome = 'prepare failed'
      res.errors['prepare_job'] = firstError(prep)
    } else {
      const host = state.host as { instanceId?: string } | undefined
      if (host?.instanceId) res.instanceId = host.instanceId
      for (const phase of ['step 1', 'step 2'] as const) {
        const s = runner.scriptStep(`echo ${phase} >> soak.txt\nsleep ${(plan.stepMs / 1000).toFixed(2)}\ncat soak.txt\n`)
        const r = await command(phase, 'run_script_step', s.args, state)
        if (!r) return res
        if (r.code !== 0) {
          res.outcome = 'step failed'
          res.errors[phase] = firstError(r)
        }
      }
    }
    // The runner always runs its "Stop containers" step, with the state it has (none after a failed prepare_job).
    const c = await command('cleanup_job', 'cleanup_job', {}, state)
    if (!c) return res
    if (c.code !== 0) {
      res.outcome = 'cleanup failed'
      res.errors['cleanup_job'] = firstError(c)
    }
    return res
  } finally {
    res.ms = Date.now() - started
    if (res.outcome !== 'runner killed') {
      await worker.end()
      runner.dispose()
    }
    // a dead runner's folders stay, as on a runner host that went away (until the soak's own folder goes)
  }
}
