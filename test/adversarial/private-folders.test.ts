// Job folders on the VM are the SSH user's alone: another user of the VM cannot read a step's
// script or its set_env file. Checked as a throwaway local user (the VM is this machine), with
// root reading the same files as the positive control.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, staticProvider, testVm } from '../helpers/conformance'

const user = `rchpeek${randomBytes(3).toString('hex')}`
let uid = 0
let gid = 0
const runner = new FakeRunner({ config: { provider: staticProvider(undefined, { slots: 8 }, { acquireTimeoutSeconds: 120 }) } })

beforeAll(() => {
  execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', user])
  uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim())
  gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim())
})

afterAll(async () => {
  await runner.cleanup()
  runner.dispose()
  spawnSync('userdel', [user])
})

/** Runs argv as the throwaway user (no supplementary groups). */
function asOther(argv: string[]): { code: number | null; out: string } {
  const r = spawnSync('setpriv', ['--reuid', String(uid), '--regid', String(gid), '--clear-groups', ...argv], { encoding: 'utf8' })
  return { code: r.status, out: `${r.stdout}${r.stderr}` }
}

test("another VM user cannot read a step's script or its set_env file in the job folder", async () => {
  // As a VM whose jobs folder an earlier version made with the default umask: it must be made private.
  const jobs = join(testVm().workRoot, 'jobs')
  mkdirSync(jobs, { recursive: true })
  const owner = Number(execFileSync('id', ['-u', testVm().user], { encoding: 'utf8' }).trim())
  chownSync(jobs, owner, Number(execFileSync('id', ['-g', testVm().user], { encoding: 'utf8' }).trim()))
  chmodSync(jobs, 0o755)
  // control: the old, readable folder is really there before prepare_job
  expect(statSync(jobs).mode & 0o777).toBe(0o755)
  expect(statSync(jobs).uid).toBe(owner)
  const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const secret = `secret-${randomBytes(6).toString('hex')}`
  const step = runner.scriptStep(`echo "SECRET_VALUE=${secret}" >> "$GITHUB_ENV"\n`)
  const r = await runner.call('run_script_step', step.args)
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })

  const jobRoot = (runner.state as { jobRoot: string }).jobRoot
  const script = join(jobRoot, 'w', step.args.entryPointArgs[step.args.entryPointArgs.length - 1].replace('/__w/', ''))
  const setEnv = join(jobRoot, 'w', '_temp', '_runner_file_commands', `set_env_${step.fc.guid}`)
  // positive control: both files exist on the VM and root reads them
  expect(existsSync(script)).toBe(true)
  expect(readFileSync(setEnv, 'utf8')).toContain(secret)
  // the throwaway user really runs and can read a world-readable file
  expect(asOther(['cat', '/etc/hostname']).code).toBe(0)

  for (const f of [script, setEnv]) {
    const got = asOther(['cat', f])
    expect({ f, code: got.code === 0, leaked: got.out.includes(secret) }).toEqual({ f, code: false, leaked: false })
  }
  expect(asOther(['ls', jobRoot]).code).not.toBe(0)
  expect(asOther(['ls', join(testVm().workRoot, 'jobs')]).code).not.toBe(0)
  expect(statSync(join(testVm().workRoot, 'jobs')).mode & 0o777).toBe(0o700)
  expect(statSync(jobRoot).mode & 0o777).toBe(0o700)
  expect(statSync(join(testVm().workRoot, 'leases')).mode & 0o777).toBe(0o700)
})

// Files are copied without group/other access, so a container user must be root or the SSH user's
// uid to read them (docs/security.md, limits that remain).
test.each([
  ["the SSH user's uid", true],
  ['another non-root uid', false]
])('a job container running as %s: its steps can read /__w: %s', async (who, readable) => {
  const uid = who === 'another non-root uid' ? 4242 : Number(execFileSync('id', ['-u', testVm().user]).toString().trim())
  const other = new FakeRunner({ config: { provider: staticProvider(undefined, { slots: 8 }, { acquireTimeoutSeconds: 120 }) } })
  try {
    const p = await other.prepare({
      container: other.jobContainer(testImages.tiny, { createOptions: `--user ${uid}:${uid}` }),
      services: []
    })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    const step = other.scriptStep('id -u\nls /__w/repo >/dev/null && echo can-read-work\n')
    const r = await other.call('run_script_step', step.args)
    if (readable) {
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      expect(r.stdout).toContain(String(uid))
      expect(r.stdout).toContain('can-read-work')
    } else {
      expect(r.code).not.toBe(0)
      expect(r.stdout + r.stderr).toMatch(/Permission denied|can't open/)
    }
  } finally {
    await other.cleanup()
    other.dispose()
  }
})
