/**
 * The short chaos soak inside `npm test` (SOAK_JOBS, default 12; `npm run soak` runs 200): jobs
 * with the runner killed, agents killed and instances terminated under them, then one reap cycle.
 * Positive control: the kills really left things behind before reap. Then nothing is left.
 * SOAK_SEED replays a run (the seed is printed).
 */
import { runSoak, type SoakResult } from './soak'
import { seedFrom } from './rng'
import { total } from './leftovers'
import { heavyTurn } from '../helpers/heavy-lock'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
const JOBS = Number(process.env.SOAK_JOBS || 12)
jest.setTimeout(Math.max(240_000, JOBS * 20_000))

let soak: SoakResult
let endTurn: (() => Promise<void>) | undefined

// never beside the pool load test (test/helpers/heavy-lock.ts), and its EC2 jobs' calls on a moto
// of its own, where they do not hold up other files' (ec2-env.ts); apart from the soak's own limit
beforeAll(async () => {
  endTurn = await heavyTurn(600_000)
}, 640_000)

beforeAll(async () => {
  const seed = seedFrom(process.env)
  // Printed first: a run that fails or hangs can be replayed with it.
  process.stdout.write(`chaos soak seed ${seed}\n`)
  soak = await runSoak({
    jobs: JOBS,
    concurrency: Number(process.env.SOAK_CONCURRENCY || 4),
    seed,
    log: process.env.SOAK_VERBOSE ? (l) => process.stdout.write(`${l}\n`) : undefined
  })
  process.stdout.write(`${soak.summary}\n`)
})
afterAll(async () => {
  await endTurn?.()
})

test('the chaos happened: runners killed mid-command, an agent killed, an instance terminated under a step', () => {
  const struck = soak.jobs.filter((j) => j.struck && !j.struck.startsWith('missed'))
  expect(struck.filter((j) => j.plan.chaos === 'kill-hook').length).toBeGreaterThanOrEqual(Math.round(JOBS * 0.2))
  expect(struck.some((j) => j.plan.chaos === 'kill-hook' && j.struck!.startsWith('mid '))).toBe(true)
  expect(struck.some((j) => j.plan.chaos === 'kill-agent')).toBe(true)
  expect(struck.some((j) => j.plan.chaos === 'terminate')).toBe(true)
})

test('positive control: before reap, the killed runners left instances, reservations or slots behind', () => {
  expect(soak.before.instances.length + soak.before.reservations.length + soak.before.leases.length).toBeGreaterThan(0)
  expect(total(soak.before)).toBeGreaterThan(0)
})

test('jobs no chaos touched all succeeded; an agent killed or an instance gone never failed a cleanup', () => {
  const bad = soak.jobs.filter(
    (j) => (j.plan.chaos === 'none' && j.outcome !== 'ok') || (j.plan.chaos !== 'kill-hook' && j.errors.cleanup_job)
  )
  expect(bad.map((j) => `${j.runner} ${j.plan.kind} ${j.plan.chaos}: ${j.outcome} ${JSON.stringify(j.errors)}`)).toEqual([])
})

test('after one reap cycle: no instance, no unsettled reservation, no container, job folder, slot or stray process is left', () => {
  expect(soak.reap.map((p) => p.code)).toEqual(soak.reap.map(() => 0))
  expect(soak.after).toEqual({
    instances: [],
    reservations: [],
    containers: [],
    networks: [],
    volumes: [],
    jobFolders: [],
    leases: [],
    instanceHosts: [],
    processes: []
  })
})
