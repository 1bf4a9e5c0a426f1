// Attack: the job is root on its VM, so it can make the SSH user's commands never return (a
// `docker` that sleeps, a start-up file that waits). cleanup_job ran them with no bound, so the
// hook, and the runner waiting for it, hung for as long as the VM liked. Defense:
// timeouts.cleanupSeconds bounds cleanup_job's remote work; then it fails, naming the key.
//
// The hostile VM is a loopback sshd of its own ("rev1") that runs a wrapper before every command;
// in "hang" mode any command that runs docker sleeps instead.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { errors, HostileJob } from './harness'
import { loadVm, repoRoot } from '../helpers/testenv'
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
      'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"',
      ''
    ].join('\n')
  )
  chmodSync(RC, 0o755)
  writeFileSync(MODE, '')
  vmScript('start', 'rev1', String(PORT))
})

afterAll(() => {
  // The sleepers this test's VM started, by PID.
  let pids: number[] = []
  try {
    pids = readFileSync(PIDS, 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    // none
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  vmScript('stop', 'rev1')
  rmSync(DIR, { recursive: true, force: true })
})

test('cleanup_job on a VM whose docker never returns ends after timeouts.cleanupSeconds, naming it', async () => {
  const vm = loadVm('rev1')
  const job = new HostileJob('agent', {
    config: {
      provider: staticProvider(vm, {}, { acquireTimeoutSeconds: 30 }),
      remote: { workRoot: vm.workRoot },
      timeouts: { healthSeconds: 60, connectSeconds: 10, cleanupSeconds: 3 }
    }
  })
  try {
    await job.prepare()
    writeFileSync(MODE, 'hang')
    const t0 = Date.now()
    const r = await job.runner.cleanup()
    const took = Date.now() - t0
    // Positive control: the VM really held a docker command.
    expect(readFileSync(PIDS, 'utf8').trim()).not.toBe('')
    expect(r.code).not.toBe(0)
    expect(errors(r).join('\n')).toContain('timeouts.cleanupSeconds')
    expect(took).toBeLessThan(20_000)
    expect(job.canaries.changes()).toEqual([])
  } finally {
    writeFileSync(MODE, '')
    await job.runner.cleanup()
    job.runner.dispose()
  }
}, 120_000)
