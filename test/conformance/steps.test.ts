// run_script_step behaviour that only shows with real processes: cancellation stops the remote
// process, concurrent steps do not serialize, large output is byte-exact with bounded memory,
// secrets stay off command lines, streams stay separate, workflow commands pass through, legacy
// prependPath, and a dropped connection is never reported as success.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import {
  errorLines,
  extraFileCommands,
  procStatusKb,
  scanCmdlines,
  scanWhile,
  sleep,
  waitForOutput,
  writeScript
} from '../helpers/conformance'
import { settlesWithin, waitUntil } from '../helpers/wait'

const runner = new FakeRunner()
/** RCH_TEST_AGENT=off (steps-no-agent.test.ts): each hook process holds its own connection, there is no agent. */
const agentOn = process.env.RCH_TEST_AGENT !== 'off'
let containerId = ''
let localDir = ''

beforeAll(async () => {
  const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  containerId = r.response.context.container.id
  // The hook derives the job's local folder (it is not in the state): <TMPDIR>/rch-<uid>/<owner>-<jobId>.
  const st = runner.state as { owner: string; jobId: string }
  localDir = join(tmpdir(), `rch-${process.getuid!()}`, `${st.owner}-${st.jobId}`)
  expect(containerId).toMatch(/^[0-9a-f]{64}$/)
  // the folder prepare_job made: the agent checks below find the job's agent by this path
  expect(statSync(localDir).isDirectory()).toBe(true)
})

afterAll(async () => {
  await runner.cleanup()
  runner.dispose()
})

/** The processes of the job container, as the docker host sees them. */
function containerProcesses(): string {
  return execFileSync('docker', ['top', containerId, '-o', 'pid,args'], { encoding: 'utf8' })
}

describe.each([['SIGINT'], ['SIGTERM']] as const)('cancellation by %s', (sig) => {
  test(`the hook exits non-zero within 7.5 s (before the runner's SIGTERM) and the remote process is gone`, async () => {
    const secs = sig === 'SIGINT' ? 300 : 310
    const marker = `cancel-marker-${sig}-${randomBytes(4).toString('hex')}`
    const { args } = runner.scriptStep(`echo ${marker}\nsleep ${secs}\necho not-cancelled\n`)
    const { child, done } = runner.start('run_script_step', args)
    await waitForOutput(child, marker)
    // the step is really running remotely before we cancel (the shell prints the marker before its
    // child has become `sleep`: a CI run listed it as a second `sh` for a moment)
    await waitUntil(() => containerProcesses().includes(`sleep ${secs}`), 10_000, 20)
    expect(containerProcesses()).toContain(`sleep ${secs}`)
    const t0 = Date.now()
    child.kill(sig)
    // the explicit bound: exited within 7.5 s of the signal, when the runner would send SIGTERM (else
    // it is killed so the test can report); a cancel that is ignored takes the step's 300 s
    const exitedInTime = await settlesWithin(done, 7500)
    if (!exitedInTime) child.kill('SIGKILL')
    const r = await done
    const ms = Date.now() - t0
    expect(exitedInTime).toBe(true)
    if (process.env.RCH_TEST_VERBOSE) console.log(`${sig}: code ${r.code} after ${ms} ms\n${r.stdout}\n${r.stderr}`)
    expect(r.code).toBe(sig === 'SIGINT' ? 130 : 143)
    expect(ms).toBeLessThan(7500)
    expect(r.stdout).not.toContain('not-cancelled')
    expect(containerProcesses()).not.toContain(`sleep ${secs}`)
    // Said only because the step's end saw its processes go.
    expect(r.stderr).toContain(`[remote-hooks] cancelled by ${sig}; the step's processes on the remote machine were stopped\n`)
  })
})

test('a step that ignores SIGTERM and SIGINT is still stopped (escalation) within 7.5 s of SIGINT', async () => {
  const marker = `stubborn-marker-${randomBytes(4).toString('hex')}`
  const { args } = runner.scriptStep(`trap '' TERM INT\necho ${marker}\nsleep 320\necho not-cancelled\n`)
  const { child, done } = runner.start('run_script_step', args)
  await waitForOutput(child, marker)
  await waitUntil(() => containerProcesses().includes('sleep 320'), 10_000, 20)
  expect(containerProcesses()).toContain('sleep 320')
  child.kill('SIGINT')
  const exitedInTime = await settlesWithin(done, 7500)
  if (!exitedInTime) child.kill('SIGKILL')
  const r = await done
  expect(exitedInTime).toBe(true)
  expect(r.code === 0).toBe(false)
  expect(containerProcesses()).not.toContain('sleep 320')
})

test('two run_script_step calls at the same time both succeed and run concurrently', async () => {
  const step = (tag: string, fc: { env: Record<string, string> }) => ({
    entryPointArgs: [
      '-e',
      writeScript(
        runner,
        `cut -d' ' -f1 /proc/uptime > conc-${tag}.start\nsleep 2\ncut -d' ' -f1 /proc/uptime > conc-${tag}.end\necho "who=${tag}" >> "$GITHUB_OUTPUT"\necho ran-${tag}\n`
      )
    ],
    entryPoint: 'sh',
    environmentVariables: { ...fc.env, GITHUB_WORKSPACE: '/__w/repo/repo' },
    prependPath: [],
    workingDirectory: '/__w/repo/repo'
  })
  const one = await runner.call('run_script_step', step('solo', extraFileCommands(runner)))
  expect(one.code).toBe(0)

  const fa = extraFileCommands(runner)
  const fb = extraFileCommands(runner)
  const [a, b] = await Promise.all([runner.call('run_script_step', step('A', fa)), runner.call('run_script_step', step('B', fb))])
  expect({ a: a.code, b: b.code, errors: [...errorLines(a), ...errorLines(b)] }).toEqual({ a: 0, b: 0, errors: [] })
  expect(a.stdout).toContain('ran-A')
  expect(b.stdout).toContain('ran-B')
  expect(a.stdout).not.toContain('ran-B')
  expect(readFileSync(fa.files.GITHUB_OUTPUT, 'utf8')).toBe('who=A\n')
  expect(readFileSync(fb.files.GITHUB_OUTPUT, 'utf8')).toBe('who=B\n')
  const t = (f: string): number => Number(readFileSync(join(runner.workspace, f), 'utf8').trim())
  const [sA, eA, sB, eB] = [t('conc-A.start'), t('conc-A.end'), t('conc-B.start'), t('conc-B.end')]
  // the two sleeps overlapped in time (read from the VM's clock, not timed here)
  expect({ overlap: sA < eB && sB < eA, A: [sA, eA], B: [sB, eB] }).toEqual({ overlap: true, A: [sA, eA], B: [sB, eB] })
  // the two overlapping syncs left a consistent picture: the next step sees all four files remotely
  const { args: next } = runner.scriptStep('ls conc-A.start conc-A.end conc-B.start conc-B.end | tr "\\n" " "; echo\n')
  const after = await runner.call('run_script_step', next)
  expect(after.code).toBe(0)
  expect(after.stdout).toContain('conc-A.end conc-A.start conc-B.end conc-B.start')
})

test('30 MB on stdout arrive byte-exact while the hook stays below 200 MB RSS', async () => {
  const { args } = runner.scriptStep(
    'head -c 31457280 /dev/urandom | base64 > /tmp/big.txt\necho "SHA=$(sha256sum < /tmp/big.txt | cut -d\' \' -f1)" >&2\ncat /tmp/big.txt\nrm -f /tmp/big.txt\n'
  )
  const { child, done } = runner.start('run_script_step', args)
  let hwmKb = 0
  let rssKb = 0
  let polling = true
  const poll = (async () => {
    while (polling) {
      const h = procStatusKb(child.pid!, 'VmHWM')
      const s = procStatusKb(child.pid!, 'VmRSS')
      if (h !== null) hwmKb = Math.max(hwmKb, h)
      if (s !== null) rssKb = Math.max(rssKb, s)
      await sleep(20)
    }
  })()
  const r = await done
  polling = false
  await poll
  expect(r.code).toBe(0)
  const sha = /SHA=([0-9a-f]{64})/.exec(r.stderr)?.[1]
  expect(sha).toMatch(/^[0-9a-f]{64}$/)
  const body = r.stdout.replace(/^\[remote-hooks\].*\n/gm, '')
  expect(body.length).toBeGreaterThan(40 * 1024 * 1024)
  expect(createHash('sha256').update(body, 'utf8').digest('hex')).toBe(sha)
  expect(hwmKb).toBeGreaterThan(0)
  if (process.env.RCH_TEST_VERBOSE) console.log(`hook peak RSS ${Math.round(Math.max(hwmKb, rssKb) / 1024)} MB`)
  expect(Math.max(hwmKb, rssKb)).toBeLessThan(200 * 1024)
})

test('a step printing faster than the runner reads keeps the agent and the hook bounded (backpressure end to end)', async () => {
  // 200 MB of one repeated line: what the step prints is known, so every byte read is checked.
  const line = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789\n')
  const total = 200_000_000
  const cmd = `yes ${line.toString().trim()} | head -c ${total}`
  // Positive control: unthrottled, the same command prints all 200 MB here in localMs. The slow
  // phase lasts twice that (a busy machine stretches both; at most 20 s, when the slow reader has
  // taken ~64 MB), so a step that nothing held back would have printed everything within it.
  const t0 = Date.now()
  const local = execFileSync('docker', ['exec', containerId, 'sh', '-c', `${cmd} | wc -c`], { encoding: 'utf8' })
  expect(Number(local.trim())).toBe(total)
  const localMs = Date.now() - t0
  const slowMs = Math.min(20_000, Math.max(4000, 2 * localMs))
  expect(localMs).toBeLessThan(slowMs)
  // The step marks the moment its command has printed everything: whether that happened during the
  // slow phase is what shows the backpressure reached the step itself, wherever the bytes wait.
  const marker = `/tmp/printed-all-${randomBytes(4).toString('hex')}`
  const printedAll = (): boolean => spawnSync('docker', ['exec', containerId, 'test', '-e', marker]).status === 0

  // The job's agent exists once a step ran; its memory now is the baseline.
  expect((await runner.call('run_script_step', runner.scriptStep('true\n').args)).code).toBe(0)
  const agent = agentOn ? scanCmdlines('__agent').filter((h) => h.cmdline.includes(localDir)) : []
  expect(agent).toHaveLength(agentOn ? 1 : 0)
  const agentBase = agentOn ? procStatusKb(agent[0].pid, 'VmRSS')! : 0

  const pattern = Buffer.alloc(line.length * 4096)
  for (let i = 0; i < 4096; i++) line.copy(pattern, i * line.length)
  const { child, done } = runner.start('run_script_step', runner.scriptStep(`${cmd}\ntouch ${marker}\n`).args, { callerReadsStdout: true })
  let read = 0
  let wrong = 0
  let slow = true
  child.stdout!.on('data', (c: Buffer) => {
    const at = read % line.length
    if (!c.equals(pattern.subarray(at, at + c.length))) wrong++
    read += c.length
    if (!slow) return
    // A reader of ~3 MB/s at most: one chunk (<= 64 KiB) then a pause.
    child.stdout!.pause()
    setTimeout(() => child.stdout!.resume(), 20)
  })
  const peak = { agent: 0, hook: 0 }
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      if (agentOn) peak.agent = Math.max(peak.agent, procStatusKb(agent[0].pid, 'VmRSS') ?? 0)
      peak.hook = Math.max(peak.hook, procStatusKb(child.pid!, 'VmRSS') ?? 0, procStatusKb(child.pid!, 'VmHWM') ?? 0)
      await sleep(20)
    }
  })()
  const finishedEarly = await settlesWithin(done, slowMs)
  const printedAllEarly = printedAll()
  // The runner's pipe is written by the agent itself (the hook's stdout is a pipe here): the agent
  // holds that very pipe while the step still floods it, so what is bounded is the direct path.
  const hookPipe = readlinkSync(`/proc/${child.pid}/fd/1`)
  const agentHoldsIt = agentOn
    ? readdirSync(`/proc/${agent[0].pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${agent[0].pid}/fd/${fd}`) === hookPipe
        } catch {
          return false
        }
      })
    : false
  const readSlowly = read
  slow = false
  child.stdout!.resume()
  const r = await done
  sampling = false
  await sampler
  if (process.env.RCH_TEST_VERBOSE)
    console.log(
      `slow phase of ${slowMs} ms read ${(readSlowly / 1e6).toFixed(1)} MB; peak RSS: agent ${Math.round(peak.agent / 1024)} MB (from ${Math.round(agentBase / 1024)} MB), hook ${Math.round(peak.hook / 1024)} MB`
    )
  expect({ hookPipe, agentHoldsIt }).toEqual({ hookPipe: expect.stringMatching(/\S/), agentHoldsIt: agentOn })
  // The reader really was the slow end: the step was still printing when the slow phase ended (and
  // the hook had not exited early); the marker is there once the reader has taken everything.
  expect({ finishedEarly, printedAllEarly }).toEqual({ finishedEarly: false, printedAllEarly: false })
  expect(printedAll()).toBe(true)
  expect(readSlowly).toBeGreaterThan(1_000_000)
  expect(readSlowly).toBeLessThan(total / 2)
  // Every byte arrived, in order.
  expect(r.code).toBe(0)
  expect(read).toBe(total)
  expect(wrong).toBe(0)
  // Held back, not buffered: neither process grew by anything like what the reader left unread.
  expect(peak.hook).toBeGreaterThan(0)
  expect(peak.hook).toBeLessThan(150 * 1024)
  if (agentOn) expect(peak.agent - agentBase).toBeLessThan(80 * 1024)
}, 120000)

test('a reader that is behind when the step ends still gets every byte before the hook exits', async () => {
  // More than the pipe and this side's stream take in (~220 KB), less than the hook lets queue on its
  // stdout: the hook reads all of it off the agent before the reader takes more, so it holds the
  // rest when the step's exit status arrives.
  const total = 400_000
  const { child, done } = runner.start('run_script_step', runner.scriptStep(`head -c ${total} /dev/zero | tr '\\0' x\n`).args, {
    callerReadsStdout: true
  })
  let read = 0
  let other = 0
  child.stdout!.pause()
  child.stdout!.on('data', (c: Buffer) => {
    read += c.length
    for (const b of c) if (b !== 0x78) other++
  })
  const exitedUnread = await settlesWithin(done, 3000)
  child.stdout!.resume()
  const r = await done
  expect({ code: r.code, exitedUnread, read, other }).toEqual({ code: 0, exitedUnread: false, read: total, other: 0 })
}, 60000)

test('a secret in the step env never appears on any process command line (positive control included)', async () => {
  const secret = randomBytes(24)
    .toString('base64')
    .replace(/[^A-Za-z0-9]/g, 'x')
    .slice(0, 32)
  expect(secret).toHaveLength(32)

  // positive control: the same scanner finds the secret on a command line we put it on
  // A node process keeps its command line until it ends (a shell may fork a child that shows the
  // shell's command line until it execs, and outlives the shell: a CI run found one after the kill).
  const control = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)', `control-${secret}`], { stdio: 'ignore' })
  try {
    await waitUntil(() => scanCmdlines(secret).some((h) => h.pid === control.pid), 5000)
    expect(scanCmdlines(secret).map((h) => h.pid)).toContain(control.pid)
  } finally {
    control.kill('SIGKILL')
  }
  await new Promise((r) => control.once('exit', r))
  expect(scanCmdlines(secret)).toEqual([])

  const { args } = runner.scriptStep('echo secret-step-running\nsleep 3\necho "len=${#SECRET_TOKEN}"\n', { env: { SECRET_TOKEN: secret } })
  const { done } = runner.start('run_script_step', args)
  const scan = await scanWhile(secret, done, 5)
  const r = await done
  expect(r.code).toBe(0)
  expect(r.stdout).toContain('len=32')
  expect(scan.scans).toBeGreaterThanOrEqual(5)
  expect(scan.hits).toEqual([])
  expect(r.stdout + r.stderr).not.toContain(secret)
})

test("the step's stderr arrives on the hook's stderr and its stdout on stdout", async () => {
  const { args } = runner.scriptStep('echo to-stdout-line\necho to-stderr-line >&2\n')
  const r = await runner.call('run_script_step', args)
  expect(r.code).toBe(0)
  expect(r.stdout).toContain('to-stdout-line\n')
  expect(r.stdout).not.toContain('to-stderr-line')
  expect(r.stderr).toContain('to-stderr-line\n')
  expect(r.stderr).not.toContain('to-stdout-line')
})

test('::add-mask:: and ::set-output lines pass through unchanged on stdout', async () => {
  const { args } = runner.scriptStep('echo "::add-mask::hunter2-mask-me"\necho "::set-output name=x::y"\necho after-commands\n')
  const r = await runner.call('run_script_step', args)
  expect(r.code).toBe(0)
  const lines = r.stdout.split('\n')
  expect(lines).toContain('::add-mask::hunter2-mask-me')
  expect(lines).toContain('::set-output name=x::y')
  expect(lines.indexOf('::add-mask::hunter2-mask-me')).toBeLessThan(lines.indexOf('::set-output name=x::y'))
  expect(lines.indexOf('::set-output name=x::y')).toBeLessThan(lines.indexOf('after-commands'))
})

test('after the workspace is older than the listing reaches back, the pull lists only the changes: an edit in place with its mtime set back and a deletion come back', async () => {
  const made = runner.scriptStep('mkdir -p delta/old delta/gone && echo a > delta/old/a && echo b > delta/gone/b && sleep 3\n')
  expect((await runner.call('run_script_step', made.args)).code).toBe(0)
  expect(readFileSync(join(runner.workspace, 'delta/gone/b'), 'utf8')).toBe('b\n')
  const { args } = runner.scriptStep("printf changed > delta/old/a && touch -d '2001-01-01 00:00:00' delta/old/a && rm delta/gone/b\n")
  const r = await runner.call('run_script_step', args, { env: { RUNNER_DEBUG: '1' } })
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  expect(r.stdout).toMatch(/::debug::timing: .* pull \d+ ms \(listed changes\)/)
  expect(readFileSync(join(runner.workspace, 'delta/old/a'), 'utf8')).toBe('changed')
  expect(existsSync(join(runner.workspace, 'delta/gone/b'))).toBe(false)
  expect(existsSync(join(runner.workspace, 'delta/gone'))).toBe(true) // control: only the file went
})

test("output that ends without a newline does not take the hook's next line into its own", async () => {
  const { args } = runner.scriptStep("printf 'no newline at the end'\n")
  const r = await runner.call('run_script_step', args, { env: { RUNNER_DEBUG: '1' } })
  expect(r.code).toBe(0)
  // The runner reads commands only at the start of a line: joined, the timing line would be text.
  expect(r.stdout).toMatch(/^no newline at the end$/m)
  expect(r.stdout).toMatch(/^::debug::timing: /m)
})

test("a PATH the workflow's env sets stands when GITHUB_PATH added nothing, as under the runner's docker exec (control: an entry goes in front of the container's)", async () => {
  const own = await runner.call(
    'run_script_step',
    runner.scriptStep('echo "PATH=$PATH"\n', { env: { PATH: '/opt/own/bin:/usr/bin:/bin' } }).args
  )
  expect(own.code).toBe(0)
  expect(own.stdout).toMatch(/^PATH=\/opt\/own\/bin:\/usr\/bin:\/bin$/m)
  const added = await runner.call(
    'run_script_step',
    runner.scriptStep('echo "PATH=$PATH"\n', { env: { PATH: '/opt/own/bin' }, prependPath: ['/opt/added'] }).args
  )
  expect(added.stdout).toMatch(/^PATH=\/opt\/added:\/\S+/m)
  expect(added.stdout).not.toContain('/opt/own/bin')
})

test("legacy string prependPath '/a:/b' is put in front of PATH", async () => {
  const { args } = runner.scriptStep('echo "PATH=$PATH"\n', { prependPath: '/a:/b' })
  const r = await runner.call('run_script_step', args)
  expect(r.code).toBe(0)
  expect(r.stdout).toMatch(/^PATH=\/a:\/b:\/\S+/m)
})

// With the agent disabled there is no agent to kill: the hook holds the connection itself.
;(agentOn ? test : test.skip)(
  'a dropped connection (the job agent killed mid-step) never exits 0',
  async () => {
    const marker = `drop-marker-${randomBytes(4).toString('hex')}`
    // The marker leaves its line open: the hook's error line must still start one of its own.
    const { args } = runner.scriptStep(`printf '%s' ${marker}\nsleep 30\necho not-dropped\n`)
    const { child, done } = runner.start('run_script_step', args)
    await waitForOutput(child, marker)
    const agents = scanCmdlines('__agent').filter((h) => h.cmdline.includes(localDir))
    expect(agents).toHaveLength(1)
    process.kill(agents[0].pid, 'SIGKILL')
    const r: HookRun = await done
    if (process.env.RCH_TEST_VERBOSE) console.log(`dropped: code ${r.code}\n${r.stdout}\n${r.stderr}`)
    expect(r.code === 0).toBe(false)
    expect(r.stdout).not.toContain('not-dropped')
    expect(r.stdout).toMatch(new RegExp(`^${marker}$`, 'm'))
    expect(r.stdout).toMatch(/^::error::lost the job's agent during the step/m)
    // the job still works afterwards (a new agent is started)
    const { args: after } = runner.scriptStep('echo still-usable\n')
    const again = await runner.call('run_script_step', after)
    expect(again.code).toBe(0)
    expect(again.stdout).toContain('still-usable')
  },
  90000
)
