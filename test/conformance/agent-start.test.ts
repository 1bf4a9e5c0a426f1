// prepare_job does not wait for the job's agent: it works over its own direct connection while the
// agent starts alongside. The agent must still be there for the first step, and a prepare_job that
// fails or is cancelled while the agent is starting must not leave it running.
import { randomBytes } from 'node:crypto'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, leftovers, NOTHING, runnerProcesses, scanCmdlines, scanWhile, staticProvider } from '../helpers/conformance'
import { settlesWithin, waitUntil } from '../helpers/wait'
import { MuxRemote } from '../../src/remote/mux-client'

const runners: FakeRunner[] = []
function newRunner(config: Record<string, unknown> = {}): FakeRunner {
  // Several slots: other suites share the test VMs and may hold slot 0.
  const r = new FakeRunner({ config: { provider: staticProvider(undefined, { slots: 8 }, { acquireTimeoutSeconds: 120 }), ...config } })
  runners.push(r)
  return r
}
afterAll(async () => {
  for (const r of runners) {
    await r.cleanup()
    r.dispose()
  }
})

/** This runner's agent processes (their command line names the job folder, which names the owner). */
const agentsOf = (runner: FakeRunner): { pid: number; cmdline: string }[] =>
  scanCmdlines(runner.owner).filter((p) => p.cmdline.includes('__agent'))

test('the first step after prepare_job is served by the agent prepare_job started', async () => {
  const runner = newRunner()
  const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const agents = agentsOf(runner)
  expect(agents).toHaveLength(1)
  const s = await runner.call('run_script_step', runner.scriptStep('echo hi-from-step').args)
  expect(s.code).toBe(0)
  expect(s.stdout).toContain('hi-from-step')
  // No second agent was started: the step found the first one answering.
  expect(s.stdout).not.toContain('connecting to')
  expect(agentsOf(runner).map((a) => a.pid)).toEqual(agents.map((a) => a.pid))
})

test('a prepare_job that fails while the agent is starting leaves no agent behind', async () => {
  const runner = newRunner({ images: { pullPolicy: 'never' } })
  const image = `rch-test/absent-${randomBytes(4).toString('hex')}:1`
  const done = runner.call('prepare_job', { container: runner.jobContainer(image), services: [] }, { state: null })
  const seen = await scanWhile(runner.owner, done, 3, 10)
  const r = await done
  expect({ failed: r.code !== 0, errors: errorLines(r).length }).toEqual({ failed: true, errors: 1 })
  expect(errorLines(r)[0]).toContain(image)
  // Positive control: an agent really was being started during this prepare_job.
  expect(seen.hits.some((h) => h.cmdline.includes('__agent'))).toBe(true)
  expect(agentsOf(runner)).toEqual([])
  expect(await runnerProcesses(runner)).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test('a prepare_job cancelled while the agent is starting leaves no agent behind', async () => {
  const runner = newRunner()
  const { child, done } = runner.start('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null })
  // Positive control: the cancel lands once this job's agent process exists (it takes far longer
  // to answer on its socket than to appear).
  const appeared = await waitUntil(() => agentsOf(runner).length > 0, 20_000, 5)
  child.kill('SIGINT')
  expect(appeared).toBe(true)
  const exitedInTime = await settlesWithin(done, 5000)
  if (!exitedInTime) child.kill('SIGKILL')
  const r = await done
  expect({ exitedInTime, code: r.code }).toEqual({ exitedInTime: true, code: 130 })
  expect(agentsOf(runner)).toEqual([])
  expect(await runnerProcesses(runner)).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test('a TMPDIR too long for the agent socket: a warning, then the job runs without an agent', async () => {
  // Long enough that TMPDIR/rch-<uid>/<owner>-<job>/agent-<hash>-<build>.sock passes 107 bytes.
  const long = `/tmp/rch-long-tmpdir-${'x'.repeat(40)}`
  require('node:fs').mkdirSync(long, { recursive: true, mode: 0o700 })
  class LongTmp extends FakeRunner {
    override env(extra: Record<string, string> = {}): Record<string, string> {
      return super.env({ TMPDIR: long, ...extra })
    }
  }
  // not in runners: the cleanup in afterAll would make its folders under the long TMPDIR again
  const runner = new LongTmp({ config: { provider: staticProvider(undefined, { slots: 8 }, { acquireTimeoutSeconds: 120 }) } })
  try {
    const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    expect(p.stdout).toMatch(/::warning::the job's agent would listen at a path of 1\d\d bytes, over the 107/)
    expect(agentsOf(runner)).toEqual([])
    const s = await runner.call('run_script_step', runner.scriptStep('echo hi-without-agent').args)
    expect(s.code).toBe(0)
    expect(s.stdout).toContain('hi-without-agent')
    expect(agentsOf(runner)).toEqual([])
  } finally {
    await runner.cleanup()
    runner.dispose()
    require('node:fs').rmSync(long, { recursive: true, force: true })
  }
})

test("cleanup_job of a job whose agent is stuck: it goes on without the agent and removes everything (the agent's own end is the runner's)", async () => {
  const runner = newRunner()
  const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const [agent] = agentsOf(runner)
  const sock = /"socketPath":"([^"]+)"/.exec(agent.cmdline)?.[1] as string
  expect(sock).toMatch(/\.sock$/)
  // Stuck as an agent whose event loop is busy: connections are accepted, nothing answers.
  process.kill(agent.pid, 'SIGSTOP')
  try {
    // Positive control: a ping without a limit waits on it.
    const ping = MuxRemote.ping(sock)
    expect(await settlesWithin(ping, 1_500)).toBe(false)
    const t0 = Date.now()
    const c = await runner.call('cleanup_job', {})
    expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
    // the agent's answer waited for (10 s), then the shutdown's (10 s), and nothing more
    expect(Date.now() - t0).toBeLessThan(60_000)
    expect(await leftovers(runner)).toEqual(NOTHING)
  } finally {
    process.kill(agent.pid, 'SIGKILL') // a stopped process too
  }
  runner.state = null
})
