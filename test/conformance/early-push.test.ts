// sync.earlyPush through the real parts: the job's agent sends what the runner writes into _temp
// between two steps (the next step's script and file-command files) before that step's hook starts,
// so the step itself has nothing left to send. With the key off, nothing moves until the hook asks.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { hookLocalRoot, localDirOf } from '../../src/paths'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'

const runner = new FakeRunner()
let containerId = ''

beforeAll(async () => {
  const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  containerId = r.response.context.container.id
})

afterAll(async () => {
  await runner.cleanup()
  runner.dispose()
})

const inContainer = (path: string): boolean => spawnSync('docker', ['exec', containerId, 'test', '-f', path]).status === 0

function setEarlyPush(on: boolean): void {
  const config = JSON.parse(readFileSync(runner.configFile, 'utf8')) as { sync?: Record<string, unknown> }
  config.sync = { ...(config.sync ?? {}), earlyPush: on }
  writeFileSync(runner.configFile, JSON.stringify(config))
}

/** The job's local folder listing and the tail of each agent log in it. */
function agentLogs(): string {
  const { owner, jobId } = runner.state as { owner: string; jobId: string }
  const dir = localDirOf(hookLocalRoot(), owner, jobId)
  const names = readdirSync(dir)
  const logs = names.filter((n) => n.startsWith('agent') && n.endsWith('.log'))
  return [names.join(' '), ...logs.map((n) => `${n}:\n${readFileSync(join(dir, n), 'utf8').slice(-4000)}`)].join('\n')
}

/** What the step's own push sent, from its RUNNER_DEBUG timing line. */
const sentByStep = (stdout: string): number => Number(/sync: up (\d+) files/.exec(stdout)?.[1] ?? NaN)

test('what the runner writes after a step is in the job container before the next hook starts; that step sends nothing', async () => {
  setEarlyPush(true)
  // A step run to its end arms the watch in the agent.
  expect((await runner.call('run_script_step', runner.scriptStep('true\n').args)).code).toBe(0)
  const { args, fc } = runner.scriptStep('cat /__w/_temp/early-note.txt\n')
  writeFileSync(join(runner.temp, 'early-note.txt'), 'written between steps\n')
  const script = args.entryPointArgs[args.entryPointArgs.length - 1]
  const fileCommand = fc.env.GITHUB_OUTPUT
  const arrived = await waitUntil(
    () => inContainer(script) && inContainer('/__w/_temp/early-note.txt') && inContainer(fileCommand),
    10_000,
    20
  )
  // On a miss, what the job's agent says (an early push that failed, or none at all) goes with it.
  expect(arrived || agentLogs()).toBe(true)
  const r = await runner.call('run_script_step', args, { env: { RUNNER_DEBUG: '1' } })
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  expect(r.stdout).toContain('written between steps')
  expect(sentByStep(r.stdout)).toBe(0)
})

test('control: with sync.earlyPush false the files wait for the hook, whose push sends them', async () => {
  setEarlyPush(false)
  try {
    // This step's end disarms the watch the step before armed.
    expect((await runner.call('run_script_step', runner.scriptStep('true\n').args)).code).toBe(0)
    const { args } = runner.scriptStep('cat /__w/_temp/late-note.txt\n')
    writeFileSync(join(runner.temp, 'late-note.txt'), 'sent by the step\n')
    // Nothing to wait for when nothing happens: a bounded look, far longer than an early push takes.
    expect(await waitUntil(() => inContainer('/__w/_temp/late-note.txt'), 1500, 50)).toBe(false)
    const r = await runner.call('run_script_step', args, { env: { RUNNER_DEBUG: '1' } })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.stdout).toContain('sent by the step')
    expect(sentByStep(r.stdout)).toBeGreaterThanOrEqual(2)
  } finally {
    setEarlyPush(true)
  }
})
