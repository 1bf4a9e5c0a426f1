// `doctor` against a machine an earlier job was root on, which runs its own SSH server (test/helpers/
// ssh-server.ts; its commands run in this machine's /bin/sh). It must end and say what it found:
// a forwarding open that is never answered is a failed row at the call's bound, not a doctor that
// prints nothing for ever; a file where the work root should be is a failure, not "the hook creates it".
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import type { ServerChannel } from 'ssh2'
import { machineChecks } from '../../src/ops/doctor-machine'
import { checksTable } from '../../src/ops/output'
import { testSshd, type TestSshd } from '../helpers/ssh-server'
import { cleanupTempDirs, tempDir } from '../unit/_helpers'

/** The command in a local shell, its output on the channel. */
function runLocally(ch: ServerChannel, command: string): void {
  const p = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] })
  p.stdout.pipe(ch, { end: false })
  p.stderr.pipe(ch.stderr, { end: false })
  p.on('close', (code) => {
    ch.exit(code ?? 1)
    ch.end()
  })
}

let mode: 'never' | 'answer' | 'kill-probe' | 'no-date' | 'engine' = 'never'
/** The machine's clock, this many seconds behind; and how long its shell takes to start doctor's probe. */
let behind = 0
let startUp = 0
/** Put before each command the machine runs (stubs on PATH: what a job that was root there left). */
let prelude = ''
let sshd: TestSshd
beforeAll(async () => {
  // 'kill-probe': the machine kills doctor's first command (the tools and the clock), as root there can.
  const exec = (ch: ServerChannel, command: string): void => {
    if (mode === 'kill-probe' && command.includes('echo "clock')) {
      ch.exit('KILL', false, '')
      return void ch.end()
    }
    // 'no-date': a machine whose `date` prints nothing (not installed, or replaced by a job).
    const clock =
      behind && command.includes('echo "clock') ? `sleep ${startUp}; date() { echo $(( $(command date +%s) - ${behind} )); }; ` : ''
    runLocally(ch, prelude + clock + (mode === 'no-date' ? `date() { :; }; ${command}` : command))
  }
  sshd = await testSshd(exec, {
    // 'never': the open is left unanswered; 'answer': a channel that closes at once (no engine behind it).
    onStreamLocal: (accept) => {
      if (mode === 'answer') accept().end()
      // 'engine': the forward reaches this machine's Docker daemon, as a real machine's does.
      if (mode === 'engine') {
        const ch = accept()
        const sock = connect('/var/run/docker.sock')
        ch.pipe(sock).pipe(ch)
        sock.on('error', () => ch.destroy())
        ch.on('close', () => sock.destroy())
      }
    }
  })
})
afterAll(async () => {
  await sshd.close()
  cleanupTempDirs()
})

const check = (rows: { check: string; status: string; detail: string }[], name: string) => rows.find((r) => r.check === name)

test("a forwarding open the machine never answers ends at the call's bound as a failed row; answered, forwarding passes (control)", async () => {
  mode = 'never'
  const began = Date.now()
  const rows = await machineChecks(
    { connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 1000 }
  )
  expect(Date.now() - began).toBeLessThan(15_000)
  // Whether a Docker daemon answers this machine's CLI decides which row says it; the forwarding never passes.
  expect(check(rows, 'forwarding')?.status).not.toBe('pass')
  expect(check(rows, 'forwarding')!.detail).toContain('no answer after 1 s')
  mode = 'answer'
  const answered = await machineChecks(
    { connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 1000 }
  )
  expect(check(answered, 'forwarding')).toMatchObject({ status: 'pass' })
}, 60_000)

test('a file (or a dangling link) where the work root should be fails; an absent work root under a writable folder passes (control)', async () => {
  mode = 'answer'
  const dir = tempDir()
  const file = join(dir, 'work')
  writeFileSync(file, 'not a folder')
  const rows = await machineChecks(
    { connect: sshd.info, workRoot: file, dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  )
  expect(check(rows, 'work root')).toMatchObject({ status: 'fail', detail: `${file} exists but is not a folder (a file or a symlink)` })
  const absent = await machineChecks(
    { connect: sshd.info, workRoot: join(dir, 'later', 'w'), dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  )
  expect(check(absent, 'work root')).toMatchObject({ status: 'pass' })
}, 60_000)

test('a probe the machine kills is its answer, not a dropped connection: the tools fail in their own rows and the checks go on (control: the same machine answering)', async () => {
  mode = 'kill-probe'
  const workRoot = join(tempDir(), 'w')
  const rows = await machineChecks(
    { connect: sshd.info, workRoot, dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  )
  expect(check(rows, 'ssh session')).toBeUndefined()
  expect(check(rows, 'rsync')).toMatchObject({ status: 'fail' })
  expect(check(rows, 'work root')).toMatchObject({ status: 'pass' })
  mode = 'answer'
  const answered = await machineChecks(
    { connect: sshd.info, workRoot, dockerSocket: '/var/run/docker.sock' },
    { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  )
  expect(check(answered, 'rsync')).toMatchObject({ status: 'pass' })
}, 60_000)

test("a machine whose `date` prints nothing: the clock row says it gave no number (it read as 56 years behind); control: the same machine's date passes", async () => {
  mode = 'no-date'
  const workRoot = join(tempDir(), 'w')
  const opts = { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  const rows = await machineChecks({ connect: sshd.info, workRoot, dockerSocket: '/var/run/docker.sock' }, opts)
  expect(check(rows, 'clock')).toMatchObject({ status: 'fail', detail: '`date +%s` gave no number' })
  mode = 'answer'
  const answered = await machineChecks({ connect: sshd.info, workRoot, dockerSocket: '/var/run/docker.sock' }, opts)
  expect(check(answered, 'clock')).toMatchObject({ status: 'pass' })
}, 60_000)

/** A folder of stubs put first on the machine's PATH for the next checks: name → script body. */
function stubs(bodies: Record<string, string>): void {
  const bin = tempDir()
  for (const [name, body] of Object.entries(bodies)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`)
    chmodSync(join(bin, name), 0o755)
  }
  prelude = `PATH=${bin}:$PATH; export PATH; `
}

describe("the machine's Docker daemon as the hook would use it", () => {
  const opts = { connectMs: 5000, maxSkewSeconds: 30, callMs: 10_000 }
  const rows = () => machineChecks({ connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' }, opts)
  afterEach(() => (prelude = ''))

  test('a docker CLI that reaches another daemon than the socket fails docker api (it passed: both answered); control: the same daemon passes', async () => {
    mode = 'engine'
    stubs({ docker: `case "$1" in version) echo 1.45 ;; info) echo OTHER:DAEMON:ID ;; esac` })
    expect(check(await rows(), 'docker api')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/reaches another daemon \(ID OTHER:DAEMON:ID, the socket's is /)
    })
    prelude = ''
    expect(check(await rows(), 'docker api')).toMatchObject({
      status: 'pass',
      detail: expect.stringMatching(/the docker CLI reaches it too$/)
    })
  }, 60_000)

  test('a dockerd logging at debug level (not in debug mode, so /info says nothing) fails docker api; control: one that does not', async () => {
    mode = 'engine'
    // A process whose arguments are a dockerd's at debug level, which `pidof dockerd` names.
    // A group of its own: the shell's sleep goes with it.
    const fake = spawn('sh', ['-c', 'sleep 300', 'dockerd', '--log-level=debug'], { stdio: 'ignore', detached: true })
    try {
      stubs({ pidof: `[ "$1" = dockerd ] && echo ${fake.pid}` })
      expect(check(await rows(), 'docker api')).toMatchObject({
        status: 'fail',
        detail: expect.stringMatching(/but a dockerd runs with --log-level=debug: it logs the body of each small API request/)
      })
      stubs({ pidof: 'exit 1' })
      expect(check(await rows(), 'docker api')).toMatchObject({ status: 'pass' })
    } finally {
      process.kill(-fake.pid!, 'SIGKILL')
    }
  }, 60_000)
})

test('a work root whose jobs is a symlink (every prepare_job refuses it) fails; control: a real jobs folder passes', async () => {
  mode = 'answer'
  const dir = tempDir()
  const work = join(dir, 'w')
  mkdirSync(work)
  mkdirSync(join(dir, 'elsewhere'))
  symlinkSync(join(dir, 'elsewhere'), join(work, 'jobs'))
  const opts = { connectMs: 5000, maxSkewSeconds: 30, callMs: 5000 }
  const rows = await machineChecks({ connect: sshd.info, workRoot: work, dockerSocket: '/var/run/docker.sock' }, opts)
  expect(check(rows, 'work root')).toMatchObject({
    status: 'fail',
    detail: `${work}/jobs is a symlink or not a folder: every prepare_job there refuses it`
  })
  const real = join(dir, 'w2')
  mkdirSync(join(real, 'jobs'), { recursive: true })
  const ok = await machineChecks({ connect: sshd.info, workRoot: real, dockerSocket: '/var/run/docker.sock' }, opts)
  expect(check(ok, 'work root')).toMatchObject({ status: 'pass' })
}, 60_000)

test('a clock read late in a slow round trip (8 s of shell start-up) is not passed as within the bound it may be outside of; controls: the same clock read at once fails, a right one passes', async () => {
  mode = 'answer'
  const opts = { connectMs: 5000, maxSkewSeconds: 30, callMs: 20_000 }
  const rows = () => machineChecks({ connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' }, opts)
  try {
    behind = 34
    startUp = 8
    // Read at the middle of the round trip it looks 30 s behind: it passed as "(±1 s)".
    expect(check(await rows(), 'clock')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/s behind this host ±5\.\d s \(the probe took 8\.\d s\): it may be more than 30 s$/)
    })
    startUp = 0
    expect(check(await rows(), 'clock')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/^3[3-4] s behind this host \(more than 30 s\)$/)
    })
  } finally {
    behind = 0
    startUp = 0
  }
  expect(check(await rows(), 'clock')).toMatchObject({ status: 'pass', detail: expect.stringMatching(/\(±1\.\d s\)$/) })
}, 60_000)

// This host's clock stepped back a minute (NTP) while the probe ran: the round trip measured on
// the wall clock came out negative, and the margin with it. Control: the same probe, no step.
test("this host's clock stepped back during the probe: the round trip is measured apart from it, and a right clock passes", async () => {
  mode = 'answer'
  let reads = 0
  const stepped = () => Date.now() - (reads++ === 0 ? 0 : 60_000)
  const row = check(
    await machineChecks(
      { connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' },
      { connectMs: 5000, maxSkewSeconds: 30, callMs: 10_000, now: stepped }
    ),
    'clock'
  )
  expect(row).toMatchObject({ status: 'pass', detail: expect.stringMatching(/\(±1\.\d s\)$/) })
}, 60_000)

test('a tool path the machine chose (over 300 characters, `##[error]` in it) is cut in its row and `##[` broken in the table; control: a plain path shown whole', async () => {
  mode = 'answer'
  const opts = { connectMs: 5000, maxSkewSeconds: 30, callMs: 10_000 }
  // Three folders (a name may have 255 bytes), the first starting with `##[error]`.
  const bin = join(tempDir(), `##[error]${'x'.repeat(100)}`, 'y'.repeat(100), 'z'.repeat(100))
  mkdirSync(bin, { recursive: true })
  writeFileSync(join(bin, 'rsync'), '#!/bin/sh\nexit 0\n')
  chmodSync(join(bin, 'rsync'), 0o755)
  try {
    prelude = `PATH='${bin}':$PATH; export PATH; `
    const rows = await machineChecks({ connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' }, opts)
    const rsync = check(rows, 'rsync')!
    expect(rsync.status).toBe('pass')
    expect(rsync.detail.length).toBeLessThanOrEqual(201)
    expect(rsync.detail.startsWith(bin.slice(0, 100))).toBe(true)
    expect(checksTable(rows)).not.toContain('##[')
  } finally {
    prelude = ''
  }
  const plain = await machineChecks({ connect: sshd.info, workRoot: join(tempDir(), 'w'), dockerSocket: '/var/run/docker.sock' }, opts)
  expect(check(plain, 'rsync')!.detail).toMatch(/^\/(usr\/)?bin\/rsync$/)
}, 60_000)
