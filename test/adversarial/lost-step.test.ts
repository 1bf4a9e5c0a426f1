// A step lost with its connection: the job's agent dies mid-step (as when its SSH connection drops
// and it winds down), the hook fails the step (exit 75), and docker goes on running the step's
// process on the VM, since it does not end an exec whose client went away. The job's next step
// must stop it before it runs, so a lost step never runs beside the steps after it (a post step,
// an `if: always()` step) writing the workspace they pull back.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { scanCmdlines } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { withJob } from './harness'
import { testImages } from '../helpers/testenv'

jest.setTimeout(180_000)

test("a step lost with its agent is stopped by the job's next step, which says so once; the loss is in hook.log", async () => {
  const logDir = mkdtempSync(join(tmpdir(), 'rch-lost-log-'))
  const logFile = join(logDir, 'hook.log')
  await withJob(
    'agent',
    async (job) => {
      // The VM is this machine: the step's process shows in /proc by its unique command line.
      const seconds = 300000 + Math.floor(Math.random() * 100000)
      const needle = `sleep\0${seconds}\0`
      const lost = job.step(`sleep ${seconds}`)
      expect(await waitUntil(() => scanCmdlines(needle).length > 0, 60_000, 50)).toBe(true)
      await job.killAgents()
      const { r } = await lost
      expect(r.code).toBe(75)
      // Said by the hook process itself (its fast path lost the agent), before any command's log: in the file log too.
      expect(r.stdout).toContain("::error::lost the job's agent during the step")
      expect(readFileSync(logFile, 'utf8')).toMatch(/ error lost the job's agent during the step/)
      // Control: docker left the step running after its hook gave up on it.
      await new Promise((res) => setTimeout(res, 1000))
      expect(scanCmdlines(needle).length).toBeGreaterThan(0)
      const next = await job.step('echo next')
      expect(next.r.code).toBe(0)
      expect(next.r.stdout + next.r.stderr).toMatch(
        /::warning::an earlier step of this job whose end was never known \(its connection was lost, or the process running it ended\): any process of it left was stopped/
      )
      expect(scanCmdlines(needle)).toEqual([])
      const third = await job.step('echo third')
      expect(third.r.code).toBe(0)
      expect(third.r.stdout + third.r.stderr).not.toContain('an earlier step')
    },
    { config: { log: { file: logFile } } }
  )
  rmSync(logDir, { recursive: true, force: true })
})

// The same for a container action: docker runs its container on when the attach stream's client is
// gone. The job's next step (here a container action, then a `run:` step finds nothing) removes it.
test("a container action lost with its agent is removed by the job's next step, which says so once", async () => {
  await withJob('agent', async (job) => {
    const seconds = 400000 + Math.floor(Math.random() * 100000)
    const needle = `sleep\0${seconds}\0`
    const { args } = job.runner.containerStep({ image: testImages.tiny, entryPoint: 'sleep', args: [String(seconds)] })
    const lost = job.runner.call('run_container_step', args)
    expect(await waitUntil(() => scanCmdlines(needle).length > 0, 60_000, 50)).toBe(true)
    await job.killAgents()
    const r = await lost
    expect(r.code).toBe(75)
    // Control: docker left the action's container running after its hook gave up on it.
    await new Promise((res) => setTimeout(res, 1000))
    expect(scanCmdlines(needle).length).toBeGreaterThan(0)
    const next = job.runner.containerStep({ image: testImages.tiny, entryPoint: 'sh', args: ['-c', 'echo next'] })
    const n = await job.runner.call('run_container_step', next.args)
    expect(n.code).toBe(0)
    expect(n.stdout + n.stderr).toMatch(
      /::warning::an earlier step of this job whose end was never known \(its connection was lost, or the process running it ended\): any process of it left was stopped/
    )
    expect(await waitUntil(() => scanCmdlines(needle).length === 0, 10_000, 50)).toBe(true)
    const third = await job.step('echo third')
    expect(third.r.code).toBe(0)
    expect(third.r.stdout + third.r.stderr).not.toContain('an earlier step')
  })
})

// The job can make a step's input larger than the agent takes (a value appended to GITHUB_ENV comes
// back in every later step's input); the agent drops such a request. That must not read as a lost
// agent (exit 75, the machine looked up, the ledger told the machine was lost): the hook runs it.
test('a step input over what the agent takes is run by the hook itself, never a lost agent; the agent serves the next step', async () => {
  await withJob('agent', async (job) => {
    const big = await job.step('echo "${#BIG}"', { env: { BIG: 'x'.repeat(17 * 1024 * 1024) } })
    expect(big.r.stdout + big.r.stderr).not.toMatch(/lost the job's agent/)
    expect(big.r.code).not.toBe(75)
    const next = await job.step('echo next')
    expect(next.r.code).toBe(0)
    expect(next.r.stdout).toContain('next')
  })
})
