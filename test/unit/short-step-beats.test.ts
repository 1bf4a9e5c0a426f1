// reap ends a launched machine once its reservation has had no heartbeat for
// fleet.reap.deadAfterMinutes (15 by default). A step beats every period while it runs, the first
// after one period (main.ts): a job whose steps each end within the period (a run of quick steps,
// common in a long job: 10,000 steps in 5 days average 43 s) beat nothing after prepare_job, and
// reap ended its machine under it. A step that starts a period or more after the job's last step
// beat now beats at once (beatDue, and the stamp beatOnce leaves in the job's folder).
import { chmodSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BEAT_STAMP, beatDue } from '../../src/fleet/beat-period'
import { openLedger } from '../../src/fleet/open-ledger'
import { FleetSchema } from '../../src/config'
import { stepJob } from '../../src/agent-client'
import { ownerId, statedOwners } from '../../src/labels'
import { cleanupTempDirs, tempDir } from './_helpers'
import { buildBundle } from './_bundle'
import { spawn } from 'node:child_process'
import { closeStandIn, dynamoStandIn } from './loopback-dynamo'
import type { AddressInfo } from 'node:net'

afterAll(cleanupTempDirs)

const PERIOD = 60_000
const RUNNER = 'runner-1'
const WORK = '/home/r/runner-1/_work'
const JOB = '0123456789abcdef'

const LOCAL = (root: string) => ({ ledger: { kind: 'local', path: join(root, 'ledger') } })

/**
 * A kind ec2 configuration in `root` (its ledger `fleet`; nothing listens at its EC2 endpoint) and
 * a reservation of this job in the local ledger of `root`: the configuration's path and the id.
 */
async function reserved(root: string, localRoot: string, fleet: object = LOCAL(root)): Promise<{ config: string; id: string }> {
  const config = join(root, 'config.json')
  writeFileSync(
    config,
    JSON.stringify({
      provider: { kind: 'ec2', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9', imageId: 'ami-0123', instanceTypes: ['m7i.large'] },
      remote: { workRoot: '/srv/rch' },
      fleet
    })
  )
  const ledger = await openLedger(FleetSchema.parse(LOCAL(root)), { localRoot })
  const res = await ledger.reserve({
    instanceType: 'm7i.large',
    vcpus: 2,
    maxLifetimeMinutes: 60,
    repository: 'acme/w',
    workflow: 'CI',
    runId: '1',
    job: 'build',
    runner: RUNNER,
    jobId: JOB
  })
  ledger.close()
  if (!res.ok) throw new Error('no reservation')
  return { config, id: res.id }
}

async function setUp(): Promise<{ env: Record<string, string>; localRoot: string; raw: string; id: string; jobDir: string }> {
  const dir = tempDir()
  const localRoot = join(dir, 'local')
  mkdirSync(localRoot, { mode: 0o700 })
  chmodSync(localRoot, 0o700)
  const { config, id } = await reserved(dir, localRoot)
  const res = { id }
  const raw = JSON.stringify({
    command: 'run_script_step',
    responseFile: null,
    state: { jobId: JOB, owner: ownerId(RUNNER, WORK), host: { user: 'ec2-user', host: '10.0.0.5', port: 22, reservation: res.id } },
    args: {}
  })
  const job = stepJob(raw, localRoot, statedOwners(RUNNER, WORK))
  if (!job) throw new Error('no job folder')
  mkdirSync(job.dir, { mode: 0o700 })
  return { env: { REMOTE_HOOKS_CONFIG: config, RUNNER_NAME: RUNNER }, localRoot, raw, id: res.id, jobDir: job.dir }
}

/** step-beat.ts keeps the ledger it opened for its process (one job's): a fresh module per test. */
async function beatOnce(raw: string, env: Record<string, string>, localRoot: string, jobDir: string): Promise<void> {
  let m!: typeof import('../../src/fleet/step-beat')
  jest.isolateModules(() => {
    m = require('../../src/fleet/step-beat') as typeof import('../../src/fleet/step-beat')
  })
  await m.beatOnce(raw, env, localRoot, jobDir)
}

async function heartbeatOf(env: Record<string, string>, localRoot: string, id: string): Promise<number | undefined> {
  const { loadConfig } = await import('../../src/config')
  const { readFileSync } = await import('node:fs')
  const config = loadConfig(env, { readFile: (p) => readFileSync(p, 'utf8'), canRead: () => null })
  const ledger = await openLedger(config.fleet, { localRoot })
  try {
    return (await ledger.records()).find((r) => r.id === id)?.heartbeatAt
  } finally {
    ledger.close()
  }
}

describe('a job of steps each shorter than the heartbeat period', () => {
  test("the step's job folder is the one the hook derives (this runner's owner, the job id)", async () => {
    const { raw, localRoot, jobDir } = await setUp()
    expect(jobDir).toBe(join(localRoot, `${ownerId(RUNNER, WORK)}-${JOB}`))
    expect(stepJob(raw.replace(ownerId(RUNNER, WORK), '0000000000000000'), localRoot, statedOwners(RUNNER, WORK))).toBeNull()
  })

  test('no beat yet: the first step beats at once; then none is due until a period has passed', async () => {
    const { env, localRoot, raw, id, jobDir } = await setUp()
    expect(beatDue(jobDir, PERIOD)).toBe(true)
    expect(await heartbeatOf(env, localRoot, id)).toBeUndefined()
    await beatOnce(raw, env, localRoot, jobDir)
    const at = await heartbeatOf(env, localRoot, id)
    expect(at).toBeDefined()
    expect(beatDue(jobDir, PERIOD)).toBe(false)
    // A period and a millisecond on: Date.now() is cut to the millisecond and the stamp's mtime is
    // not, so a check in the stamp's own millisecond saw it up to 1 ms younger than a period.
    expect(beatDue(jobDir, PERIOD, Date.now() + PERIOD + 1)).toBe(true)
  })

  test('20 minutes of 40-second steps: a beat at least every other step, no gap near deadAfterMinutes', async () => {
    const { jobDir } = await setUp()
    // The stamp as 40-second steps leave it: each step start that finds it a period old beats.
    const start = Date.now() - 20 * 60_000
    const beats: number[] = []
    for (let clock = start; clock <= Date.now() - 40_000; clock += 40_000) {
      if (beatDue(jobDir, PERIOD, clock)) {
        beats.push(clock)
        writeFileSync(join(jobDir, BEAT_STAMP), '')
        utimesSync(join(jobDir, BEAT_STAMP), clock / 1000, clock / 1000)
      }
    }
    expect(beats.length).toBeGreaterThanOrEqual(14)
    // No two beats further apart than two steps (the timer alone would give none after the first).
    expect(Math.max(...beats.slice(1).map((b, i) => b - beats[i]))).toBeLessThanOrEqual(80_000)
    // A stamp from the future (the clock set back since) is due at once.
    utimesSync(join(jobDir, BEAT_STAMP), (Date.now() + 3_600_000) / 1000, (Date.now() + 3_600_000) / 1000)
    expect(beatDue(jobDir, PERIOD)).toBe(true)
    // One written a moment ago: Date.now() is cut to the millisecond, the mtime is not (CI once saw
    // a fresh stamp 0.x ms "ahead" and beat again). Not due; a second ahead is.
    const t = 1_800_000_000_000
    utimesSync(join(jobDir, BEAT_STAMP), (t + 0.7) / 1000, (t + 0.7) / 1000)
    expect(beatDue(jobDir, PERIOD, t)).toBe(false)
    utimesSync(join(jobDir, BEAT_STAMP), (t + 1500) / 1000, (t + 1500) / 1000)
    expect(beatDue(jobDir, PERIOD, t)).toBe(true)
  })
})

describe('the hook as the runner starts it (the real bundle)', () => {
  let bundle: string
  beforeAll(() => {
    bundle = buildBundle()
  }, 180_000)

  /** A job of kind ec2 with a reservation in a local ledger, and its local folder as prepare_job leaves it. */
  async function job(dynamo?: string): Promise<{ run(): Promise<number>; heartbeat(): Promise<number | undefined>; jobDir: string }> {
    const root = tempDir()
    const tmp = join(root, 'tmp')
    mkdirSync(tmp, { mode: 0o700 })
    const localRoot = join(tmp, `rch-${process.getuid!()}`)
    mkdirSync(localRoot, { mode: 0o700 })
    const local = LOCAL(root)
    // Nothing listens at the endpoint or at the machine's address: the step fails at once.
    const { config, id } = await reserved(
      root,
      localRoot,
      dynamo ? { ledger: { kind: 'dynamodb', table: 'rch', region: 'us-east-1', endpoint: dynamo } } : local
    )
    const res = { id }
    // The hook derives the owner from RUNNER_TEMP's parent, as the runner sets it.
    const owner = ownerId(RUNNER, join(root, '_work'))
    const jobDir = join(localRoot, `${owner}-${JOB}`)
    mkdirSync(jobDir, { mode: 0o700 })
    const responseFile = join(root, 'response.json')
    const state = { jobId: JOB, owner, host: { user: 'ec2-user', host: '127.0.0.1', port: 9, reservation: res.id } }
    const env = {
      PATH: '/usr/bin:/bin',
      TMPDIR: tmp,
      RUNNER_NAME: RUNNER,
      RUNNER_TEMP: join(root, '_work', '_temp'),
      REMOTE_HOOKS_CONFIG: config,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
    }
    return {
      jobDir,
      // Not spawnSync: the ledger stand-in answers from this process.
      run: () =>
        new Promise<number>((resolve) => {
          const child = spawn(process.execPath, [bundle], { cwd: root, env, stdio: ['pipe', 'ignore', 'ignore'] })
          child.on('close', (code) => resolve(code ?? -1))
          child.stdin.end(
            JSON.stringify({ command: 'run_script_step', responseFile, args: { entryPoint: 'true', workingDirectory: '/w' }, state })
          )
        }),
      heartbeat: async () => {
        const l = await openLedger(FleetSchema.parse(local), { localRoot })
        try {
          return (await l.records()).find((r) => r.id === res.id)?.heartbeatAt
        } finally {
          l.close()
        }
      }
    }
  }

  test('a step that ends at once records a heartbeat when the last one is a period old, and stamps it', async () => {
    const j = await job()
    expect(await j.heartbeat()).toBeUndefined()
    expect(await j.run()).not.toBe(0) // nothing answers: the step itself fails at once
    const first = await j.heartbeat()
    expect(first).toBeDefined()
    expect(beatDue(j.jobDir, PERIOD)).toBe(false)
    // Control: the next step, within the period, records none.
    expect(await j.run()).not.toBe(0)
    expect(await j.heartbeat()).toBe(first)
    // A stamp a period old: the step beats again.
    const old = (Date.now() - PERIOD - 1000) / 1000
    utimesSync(join(j.jobDir, BEAT_STAMP), old, old)
    expect(await j.run()).not.toBe(0)
    expect(await j.heartbeat()).toBeGreaterThan(first!)
  }, 120_000)

  test("a heartbeat still on its way when the step ends is waited for: the ledger's answer lands before the hook exits", async () => {
    // A DynamoDB stand-in that answers every call after 1 s: the step fails long before.
    const ops: string[] = []
    const server = await dynamoStandIn((op, _input, send) => {
      ops.push(op)
      setTimeout(() => send(200, '{}'), 1000)
    })
    try {
      const j = await job(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
      expect(await j.run()).not.toBe(0)
      expect(ops).toEqual(['UpdateItem'])
      // The stamp is written once the beat is answered: the hook waited for it.
      expect(beatDue(j.jobDir, PERIOD)).toBe(false)
    } finally {
      await closeStandIn(server)
    }
  }, 120_000)
})
