// Attack: the job is root on its VM, so it can make the SSH user's commands never return (a
// `docker` that sleeps, a start-up file that waits). cleanup_job ran them with no bound, so the
// hook, and the runner waiting for it, hung for as long as the VM liked. Defense:
// timeouts.cleanupSeconds bounds cleanup_job's remote work; then it fails, naming the key.
//
// The hostile VM is a loopback sshd of its own ("rev1") that runs a wrapper before every command;
// in "hang" mode any command that runs docker sleeps instead.
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { errors, HostileJob } from './harness'
import { loadVm, repoRoot, testImages } from '../helpers/testenv'
import { staticProvider } from '../helpers/conformance'

const PORT = 2251
const DIR = '/var/tmp/rch-rev1'
const RC = `${DIR}/rc`
const MODE = `${DIR}/mode`
const PIDS = `${DIR}/pids`

function vmScript(...args: string[]): void {
  execFileSync('bash', [join(repoRoot, 'scripts/testenv/vm.sh'), ...args], { env: { ...process.env, VM_FORCE_COMMAND: RC }, stdio: 'pipe' })
}

beforeAll(() => {
  rmSync(DIR, { recursive: true, force: true })
  mkdirSync(DIR, { recursive: true })
  chmodSync(DIR, 0o777) // the SSH user records its sleepers here
  writeFileSync(
    RC,
    [
      '#!/bin/bash',
      `if [ "$(cat ${MODE} 2>/dev/null)" = hang ] && [[ "$SSH_ORIGINAL_COMMAND" == *docker* ]]; then echo $$ >> ${PIDS}; exec sleep 120; fi`,
      // "all": every command sleeps (a start-up file the job made wait).
      `if [ "$(cat ${MODE} 2>/dev/null)" = all ]; then echo $$ >> ${PIDS}; exec sleep 120; fi`,
      'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"',
      ''
    ].join('\n')
  )
  chmodSync(RC, 0o755)
  writeFileSync(MODE, '')
  vmScript('start', 'rev1', String(PORT))
})

/** The sleepers this file's VM started so far, by PID (the file is only appended to). */
function sleepers(): number[] {
  try {
    return readFileSync(PIDS, 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

afterAll(() => {
  for (const pid of sleepers()) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  vmScript('stop', 'rev1')
  rmSync(DIR, { recursive: true, force: true })
})

/** A job on the hostile VM, with cleanupSeconds 3. */
function hangJob(): HostileJob {
  const vm = loadVm('rev1')
  return new HostileJob('agent', {
    config: {
      provider: staticProvider(vm, {}, { acquireTimeoutSeconds: 30 }),
      remote: { workRoot: vm.workRoot },
      timeouts: { healthSeconds: 60, connectSeconds: 10, cleanupSeconds: 3 }
    }
  })
}

/** A job on the hanging VM for one test; after it the VM answers again and what the job left is cleaned up (state-less when it has none). */
async function withHangJob(use: (job: HostileJob) => Promise<void>): Promise<void> {
  const job = hangJob()
  try {
    await use(job)
  } finally {
    writeFileSync(MODE, '')
    await job.runner.cleanup()
    job.runner.dispose()
  }
}

/** The VM really held a command (positive control), and cleanup failed in time, naming the key, touching nothing on the runner host. */
function expectStoppedAtDeadline(
  job: HostileJob,
  r: { code: number | null; stdout: string; stderr: string },
  took: number,
  sleepersBefore: number
): void {
  expect(sleepers().length).toBeGreaterThan(sleepersBefore)
  expect(r.code).not.toBe(0)
  expect(errors(r).join('\n')).toContain('timeouts.cleanupSeconds')
  expect(took).toBeLessThan(20_000)
  expect(job.canaries.changes()).toEqual([])
}

test('cleanup_job on a VM whose docker never returns ends after timeouts.cleanupSeconds, naming it', async () => {
  await withHangJob(async (job) => {
    await job.prepare()
    const before = sleepers().length
    writeFileSync(MODE, 'hang')
    const t0 = Date.now()
    const r = await job.runner.cleanup()
    const took = Date.now() - t0
    expectStoppedAtDeadline(job, r, took, before)
  })
}, 120_000)

// cleanup_job without state (after a failed prepare_job, or a runner that lost its jobs) finds this
// runner's leftovers on every host of its config: each host's tidying and slot release is bounded
// the same way, and the runner host's own leftovers go whatever the VM does.
test('cleanup_job without state on a VM whose every command hangs ends after timeouts.cleanupSeconds, naming it, its local folders removed', async () => {
  await withHangJob(async (job) => {
    await job.prepare()
    const { owner, jobId } = job.runner.state as { owner: string; jobId: string }
    const localDir = join(tmpdir(), `rch-${process.getuid!()}`, `${owner}-${jobId}`)
    // Positive control: the job's local folder is there before the cleanup.
    expect(existsSync(localDir)).toBe(true)
    const before = sleepers().length
    writeFileSync(MODE, 'all')
    const t0 = Date.now()
    const r = await job.runner.call('cleanup_job', {}, { state: null })
    const took = Date.now() - t0
    expectStoppedAtDeadline(job, r, took, before)
    expect(existsSync(localDir)).toBe(false)
  })
}, 120_000)

// A container action without prepare_job leases a machine for its one step and tidies up after it:
// that teardown is bounded the same way (the step's own result stands, the hang is warned about).
test('a container action without state: a VM that hangs its teardown holds the hook at most timeouts.cleanupSeconds', async () => {
  await withHangJob(async (job) => {
    const before = sleepers().length
    const { args } = job.runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: ['-c', 'echo action-started; sleep 1; echo action-done']
    })
    const run = job.runner.start('run_container_step', args, { state: null })
    let out = ''
    await new Promise<void>((resolve, reject) => {
      run.child.stdout!.on('data', (d) => {
        out += d
        if (out.includes('action-started')) resolve()
      })
      run.child.once('close', () => reject(new Error(`the action ended before it started: ${out}`)))
    })
    // From now on the VM holds every command that runs docker: the job folder's removal does.
    writeFileSync(MODE, 'hang')
    const t0 = Date.now()
    const r = await run.done
    const took = Date.now() - t0
    expect(sleepers().length).toBeGreaterThan(before)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('action-done')
    expect(`${r.stdout}${r.stderr}`).toContain('timeouts.cleanupSeconds')
    expect(took).toBeLessThan(20_000)
    expect(job.canaries.changes()).toEqual([])
  })
}, 120_000)
