// The chaos soak: N jobs through dist/index.js, several at once, static and EC2 mixed, with a seeded
// plan of chaos (the runner killed mid-command or between commands, the job's agent killed, the
// instance terminated under a step); then one reap cycle, and what is left before and after it.
import { TerminateInstancesCommand } from '@aws-sdk/client-ec2'
import { type FakeRunner } from '../helpers/fake-runner'
import { newRunner, PhaseClock, runJob, type JobPlan, type JobResult, type Phase } from './job'
import { describeLeftovers, leftovers, liveInstancesOf, total, type Leftovers } from './leftovers'
import { alive, killPid, processesOf } from './procs'
import { reapConfig, reapPass, type ReapPass } from './reap'
import { rng, type Rng } from './rng'
import { DEAD_AFTER_MINUTES, openSoakEnv, type SoakEnv } from './soak-env'
import { waitUntil } from '../helpers/wait'

export interface SoakOptions {
  jobs: number
  concurrency: number
  seed: number
  /**
   * Jobs per round (default: all in one): each round ends with its own reap cycle and checks. A
   * killed job's network lives until reap, and docker's default address pools hold ~30 bridge
   * networks on a machine other tests share, so a long soak reaps as it goes, as a timer would.
   */
  round?: number
  /** progress lines (default: none) */
  log?: (line: string) => void
}

export interface SoakResult {
  seed: number
  jobs: JobResult[]
  before: Leftovers
  reap: ReapPass[]
  after: Leftovers
  /** leftovers after reap that the soak removed itself, so that the machine is clean for what runs next */
  wallMs: number
  reapMs: number
  summary: string
}

/** Chaos by quota, not by independent draws: every run, even a short one, has each kind of chaos. */
export function planJobs(n: number, r: Rng): JobPlan[] {
  const plans: JobPlan[] = Array.from({ length: n }, (_, i) => ({
    n: i,
    kind: i % 2 === 0 ? 'static' : 'ec2',
    chaos: 'none',
    phase: 'step 1',
    at: 0.1 + 0.8 * r.next(),
    stepMs: r.int(100, 900),
    reverseHosts: r.next() < 0.5
  }))
  r.shuffle(plans)
  const ec2 = plans.filter((p) => p.kind === 'ec2')
  const quota = (share: number) => Math.max(1, Math.round(n * share))
  // At least two of each kind below that a check needs struck once: one may miss.
  for (const p of ec2.slice(0, Math.max(2, quota(0.08)))) {
    p.chaos = 'terminate'
    p.phase = r.pick(['step 1', 'step 2'] as const)
  }
  const rest = r.shuffle(plans.filter((p) => p.chaos === 'none'))
  const phases: Phase[] = ['prepare_job', 'step 1', 'step 2', 'cleanup_job']
  const hookKills = quota(0.25)
  rest.slice(0, hookKills).forEach((p, i) => {
    p.chaos = 'kill-hook'
    p.phase = phases[i % phases.length]
    // The strike is timed by the phase's typical length: a step of this job's own that is as long
    // as any makes it land mid-command, not after (a run whose hook kills all came after failed).
    if (p.phase.startsWith('step')) p.stepMs = 900
  })
  for (const p of rest.slice(hookKills, hookKills + Math.max(2, quota(0.1)))) {
    p.chaos = 'kill-agent'
    p.phase = r.pick(['step 1', 'step 2'] as const)
  }
  return plans.sort((a, b) => a.n - b.n)
}

const count = <T>(xs: T[], key: (x: T) => string): Record<string, number> => {
  const m: Record<string, number> = {}
  for (const x of xs) m[key(x)] = (m[key(x)] ?? 0) + 1
  return m
}
const fmt = (m: Record<string, number>) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none'

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => undefined)
  const tag = `${opts.seed.toString(36)}-${process.pid.toString(36)}`
  const env = await openSoakEnv(tag)
  const t0 = Date.now()
  const plans = planJobs(opts.jobs, rng(opts.seed))
  const clock = new PhaseClock()
  const results: JobResult[] = []
  const before: Leftovers[] = []
  const after: Leftovers[] = []
  const reap: ReapPass[] = []
  let jobsMs = 0
  let reapMs = 0
  try {
    const size = Math.max(1, opts.round ?? plans.length)
    for (let from = 0; from < plans.length; from += size) {
      const round = await runRound(env, plans.slice(from, from + size), clock, opts.concurrency, log)
      results.push(...round.jobs)
      before.push(round.before)
      after.push(round.after)
      reap.push(...round.reap)
      jobsMs += round.jobsMs
      reapMs += round.reapMs
    }
    results.sort((a, b) => a.plan.n - b.plan.n)
    // Once more over every job of every round: nothing of an earlier round came back.
    after.push(await leftovers(env, results))
    const merged = { before: merge(before), after: merge(after) }
    const summary = summarize(opts, results, merged.before, reap, merged.after, jobsMs, reapMs)
    return { seed: opts.seed, jobs: results, ...merged, reap, wallMs: Date.now() - t0, reapMs, summary }
  } finally {
    await scrub(env, results)
    await env.close()
  }
}

const merge = (ls: Leftovers[]): Leftovers =>
  Object.fromEntries(Object.keys(ls[0]).map((k) => [k, [...new Set(ls.flatMap((l) => l[k as keyof Leftovers]))]])) as unknown as Leftovers

interface Round {
  jobs: JobResult[]
  before: Leftovers
  reap: ReapPass[]
  after: Leftovers
  jobsMs: number
  reapMs: number
}

async function runRound(env: SoakEnv, plans: JobPlan[], clock: PhaseClock, concurrency: number, log: (l: string) => void): Promise<Round> {
  const t0 = Date.now()
  const results: JobResult[] = []
  let next = 0
  const lane = async () => {
    while (next < plans.length) {
      const plan = plans[next++]
      const res = await runJob(env, plan, clock)
      results.push(res)
      log(
        `job ${plan.n} ${plan.kind} ${plan.chaos}${plan.chaos !== 'none' ? ` (${res.struck})` : ''}: ${res.outcome} in ${(res.ms / 1000).toFixed(1)} s` +
          (Object.keys(res.errors).length ? ` ${JSON.stringify(res.errors)}` : '')
      )
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, plans.length) }, lane))
  const jobsMs = Date.now() - t0

  // The round's jobs are over; what died is still there. A live job is not among them: the rest all finished.
  const before = await leftovers(env, results)
  log(`before reap: ${describeLeftovers(before)}`)

  const r0 = Date.now()
  const reap = await reapCycle(env, results, log)
  // A terminated stand-in takes its containers and sshd with it once the booter sees it (it polls), and an
  // abandoned agent ends at its idle timeout: both get that long before they count as left.
  let after = await leftovers(env, results)
  if (total(after) > 0) await waitUntil(async () => total((after = await leftovers(env, results))) === 0, 30_000, 1000)
  log(`after reap: ${describeLeftovers(after)}`)
  // the booter stops watching the round's instances once they are checked gone
  if (total(after) === 0) for (const j of results) env.owners.delete(j.owner)
  return { jobs: results, before, reap, after, jobsMs, reapMs: Date.now() - r0 }
}

async function reapCycle(env: SoakEnv, jobs: JobResult[], log: (l: string) => void): Promise<ReapPass[]> {
  const configs: string[] = []
  for (const kind of ['static', 'ec2'] as const) {
    const j = jobs.find((x) => x.plan.kind === kind)
    if (!j) continue
    const runner: FakeRunner = newRunner(env, j.plan)
    configs.push(reapConfig(runner, env.tmp, kind))
    runner.dispose()
  }
  const passes: ReapPass[] = []
  // reap judges a job dead once its last sign of life is deadAfterMinutes old and it has itself
  // watched that sign unchanged as long: pass 0 starts the watch, and the passes that remove come
  // once the last runner killed is that long silent and the watch that long too.
  const watchFrom = Date.now()
  for (const c of configs) {
    const p = await reapPass(c, env.tmp)
    passes.push(p)
    log(`reap pass 0 (${c.replace(/.*reap-/, '')}): exit ${p.code}, ${p.rows.length} rows${p.raw ? `: ${p.raw}` : ''}`)
  }
  const lastDeath = Math.max(0, ...jobs.map((j) => j.diedAt ?? 0))
  const readyAt = Math.max(lastDeath, watchFrom) + DEAD_AFTER_MINUTES * 60_000 + 2_000
  if (readyAt > Date.now())
    log(`waiting ${Math.round((readyAt - Date.now()) / 1000)} s until the dead jobs are ${DEAD_AFTER_MINUTES} min silent and watched`)
  await new Promise((r) => setTimeout(r, Math.max(0, readyAt - Date.now())))
  for (const pass of [1, 2]) {
    for (const c of configs) {
      const p = await reapPass(c, env.tmp)
      passes.push(p)
      log(`reap pass ${pass} (${c.replace(/.*reap-/, '')}): exit ${p.code}, ${p.rows.length} rows${p.raw ? `: ${p.raw}` : ''}`)
    }
    if (pass === 1) await new Promise((r) => setTimeout(r, graceMs(env)))
  }
  return passes
}

const graceMs = (env: SoakEnv): number => {
  const reap = (env.fleet as { reap?: { graceMinutes?: number } }).reap
  return Math.max(1000, (reap?.graceMinutes ?? 0) * 60_000 + 1000)
}

/** After the checks: whatever is still there is removed (the soak's own things only), so the machine is clean for what runs next. */
async function scrub(env: SoakEnv, jobs: JobResult[]): Promise<void> {
  for (const j of jobs) for (const p of [j.workerPid, ...j.hookPids]) if (alive(p)) killPid(p)
  for (const p of processesOf(jobs.map((j) => j.trackingId))) killPid(p.pid)
  const owners = new Set(jobs.map((j) => j.owner))
  const ids = (await liveInstancesOf(env, owners).catch(() => [])).map((i) => i.InstanceId!)
  if (ids.length) await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: ids })).catch(() => undefined)
  const { removeLabelledDockerObjects } = await import('../helpers/fake-instance')
  for (const j of jobs) await removeLabelledDockerObjects(`label=dev.remote-container-hooks.runner=${j.runner}`)
}

function summarize(
  opts: SoakOptions,
  jobs: JobResult[],
  before: Leftovers,
  reap: ReapPass[],
  after: Leftovers,
  jobsMs: number,
  reapMs: number
): string {
  const chaos = jobs.filter((j) => j.plan.chaos !== 'none')
  const struck = (j: JobResult) => (j.struck ?? 'none').replace(/ pid [\d,]+/, '').replace(/i-[0-9a-f]+/, 'instance')
  const reapRows = reap.flatMap((p) => p.rows)
  const action = (row: Record<string, unknown>) => (typeof row.action === 'string' ? row.action : '?')
  const clean = jobs.filter((j) => j.plan.chaos === 'none')
  return [
    `chaos soak: seed ${opts.seed} (SOAK_SEED=${opts.seed} replays it), ${jobs.length} jobs, ${opts.concurrency} at once, a reap cycle after every ${opts.round ?? jobs.length}`,
    `jobs: ${fmt(count(jobs, (j) => j.plan.kind))}`,
    `chaos: ${fmt(count(chaos, (j) => `${j.plan.chaos} ${struck(j)}`))}`,
    `outcomes: ${fmt(count(jobs, (j) => j.outcome))}; jobs without chaos: ${fmt(count(clean, (j) => j.outcome))}`,
    `left before reap: ${describeLeftovers(before)} (${total(before)})`,
    `reap: ${reap.map((p) => `exit ${p.code}`).join(', ')}; actions: ${fmt(count(reapRows, action))}`,
    `left after reap: ${describeLeftovers(after)} (${total(after)})`,
    `wall time: jobs ${(jobsMs / 1000).toFixed(0)} s, reap cycle and checks ${(reapMs / 1000).toFixed(0)} s`
  ].join('\n')
}
