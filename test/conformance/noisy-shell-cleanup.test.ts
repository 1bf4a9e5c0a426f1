// A state-less cleanup_job on a host whose SSH user's shell start-up file prints a path: the path is
// start-up noise, never a job folder, so it survives; the runner's real leftover job folder goes.
// Runs on its own throwaway VM (port 2239) so the other suites' VMs keep a quiet shell: the
// start-up snippet applies only to connections to that port and is removed afterwards.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { loadVm, repoRoot, testenvDir, type TestVm, type VmName } from '../helpers/testenv'
import { errorLines, ownerOf, staticProvider } from '../helpers/conformance'

const NAME = 'evil'
const PORT = 2239
const tag = randomBytes(4).toString('hex')
const BEGIN = `# rch-noisy-shell-test ${tag} begin`
const END = `# rch-noisy-shell-test ${tag} end`
const canary = `/var/tmp/rch-canary-${tag}`
let vm: TestVm
let bashrc = ''
let uid = 0
let gid = 0

function vmScript(...args: string[]): void {
  execFileSync('bash', [join(repoRoot, 'scripts/testenv/vm.sh'), ...args], { env: { ...process.env, RCH_TESTENV_DIR: testenvDir }, stdio: 'pipe' })
}

/** Adds (or with null removes) this test's block in the SSH user's .bashrc, leaving any other content as it is. */
function setSnippet(body: string | null): void {
  const text = existsSync(bashrc) ? readFileSync(bashrc, 'utf8') : ''
  const start = text.indexOf(BEGIN)
  const kept = start < 0 ? text : text.slice(0, start) + text.slice(text.indexOf(END, start) + END.length + 1)
  writeFileSync(bashrc, body === null ? kept : `${kept}${BEGIN}\n${body}\n${END}\n`)
  chownSync(bashrc, uid, gid)
}

function sshOutput(command: string): string {
  const r = spawnSync('ssh', ['-F', '/dev/null', '-i', vm.identityFile, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${vm.knownHostsFile}`, '-o', 'BatchMode=yes', '-p', String(PORT), `${vm.user}@127.0.0.1`, command], { encoding: 'utf8' })
  return r.stdout
}

beforeAll(() => {
  vmScript('start', NAME, String(PORT))
  vm = loadVm(NAME as VmName)
  const home = execFileSync('getent', ['passwd', vm.user], { encoding: 'utf8' }).split(':')[5]
  bashrc = join(home, '.bashrc')
  uid = Number(execFileSync('id', ['-u', vm.user], { encoding: 'utf8' }).trim())
  gid = Number(execFileSync('id', ['-g', vm.user], { encoding: 'utf8' }).trim())
  mkdirSync(canary)
  writeFileSync(join(canary, 'keep'), 'precious')
  // Owned by the SSH user: a plain `rm -rf` of it would succeed.
  execFileSync('chown', ['-R', `${uid}:${gid}`, canary])
})

afterAll(() => {
  setSnippet(null)
  rmSync(canary, { recursive: true, force: true })
  vmScript('stop', NAME)
})

test('a path printed by the shell start-up file is not removed; the real leftover job folder is', async () => {
  const runner = new FakeRunner({ config: { provider: staticProvider(vm, {}, { acquireTimeoutSeconds: 30 }), remote: { workRoot: vm.workRoot } } })
  try {
    const jobs = join(vm.workRoot, 'jobs')
    const leftover = join(jobs, `${ownerOf(runner.name)}-${randomBytes(8).toString('hex')}`)
    mkdirSync(join(leftover, 'w'), { recursive: true })
    execFileSync('chown', ['-R', `${uid}:${gid}`, join(vm.workRoot)])

    setSnippet(`case "$SSH_CONNECTION" in *" ${PORT}") printf '%s\\n' ${canary} ;; esac`)
    // positive control: every command on this VM really starts with the canary path on stdout
    expect(sshOutput('echo command-output')).toBe(`${canary}\ncommand-output\n`)

    const r = await runner.call('cleanup_job', {}, { state: null })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(existsSync(join(canary, 'keep'))).toBe(true)
    expect(existsSync(leftover)).toBe(false)
    // the snippet was still in place when cleanup ran (nothing reset the start-up file meanwhile)
    expect(sshOutput('true')).toBe(`${canary}\n`)
  } finally {
    setSnippet(null)
    runner.dispose()
  }
})
