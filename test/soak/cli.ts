// `npm run soak`: the long chaos soak (SOAK_JOBS, default 200, in rounds of SOAK_ROUND, default 20) with a summary; exit 1 when anything
// is left after the reap cycle or a job without chaos failed. SOAK_SEED replays a run.
import { writeFileSync } from 'node:fs'
import { total } from './leftovers'
import { seedFrom } from './rng'
import { runSoak } from './soak'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

async function main(): Promise<number> {
  const seed = seedFrom(process.env)
  const jobs = Number(process.env.SOAK_JOBS || 200)
  const concurrency = Number(process.env.SOAK_CONCURRENCY || 4)
  const round = Number(process.env.SOAK_ROUND || 20)
  process.stdout.write(`chaos soak seed ${seed}: ${jobs} jobs, ${concurrency} at once, a reap cycle after every ${round}\n`)
  const r = await runSoak({ jobs, concurrency, seed, round, log: (l) => process.stdout.write(`[soak] ${l}\n`) })
  process.stdout.write(`\n${r.summary}\n`)
  if (process.env.SOAK_RESULT) writeFileSync(process.env.SOAK_RESULT, JSON.stringify(r, null, 2))
  const cleanFailed = r.jobs.filter((j) => j.plan.chaos === 'none' && j.outcome !== 'ok')
  const problems = [
    ...(total(r.before) === 0 && r.jobs.some((j) => j.diedAt)
      ? ['positive control: runners were killed but nothing was left before reap']
      : []),
    ...(total(r.after) ? [`left after reap: ${JSON.stringify(r.after)}`] : []),
    ...r.reap
      .filter((p) => p.code !== 0)
      .map((p) => `reap exited ${p.code} (${p.config}): ${p.raw ?? JSON.stringify(p.rows.filter((x) => x.action === 'failed'))}`),
    ...cleanFailed.map((j) => `job ${j.plan.n} (${j.plan.kind}, no chaos) ${j.outcome}: ${JSON.stringify(j.errors)}`)
  ]
  for (const p of problems) process.stdout.write(`FAIL: ${p}\n`)
  process.stdout.write(problems.length ? `chaos soak FAILED (seed ${seed})\n` : `chaos soak passed (seed ${seed})\n`)
  return problems.length ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`chaos soak: ${(e as Error).stack ?? String(e)}\n`)
    process.exit(1)
  }
)
