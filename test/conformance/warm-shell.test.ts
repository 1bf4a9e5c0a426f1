// The job's step shell (agent.warmShell) in a real job container: from the second step on, steps
// go through it, and what a step sees (user, folder, environment, exit status) is what an exec
// gives; a step that kills the shell fails rather than passing, and the job goes on by exec.
import { execFileSync } from 'node:child_process'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, waitForOutput } from '../helpers/conformance'
import { settlesWithin, waitUntil } from '../helpers/wait'

const agentOn = process.env.RCH_TEST_AGENT !== 'off'
const d = agentOn ? describe : describe.skip

const warm = new FakeRunner({ name: 'warm-on' })
const cold = new FakeRunner({ name: 'warm-off', config: { agent: { warmShell: false } } })

let warmId = ''
beforeAll(async () => {
  for (const r of [warm, cold]) {
    const p = await r.prepare({ container: r.jobContainer(testImages.tiny), services: [] })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    if (r === warm) warmId = String(p.response.context.container.id)
  }
  expect(warmId).toMatch(/^[0-9a-f]{64}$/)
})

afterAll(async () => {
  for (const r of [warm, cold]) {
    await r.cleanup()
    r.dispose()
  }
})

const DEBUG = { env: { RUNNER_DEBUG: '1' } }
const via = (r: HookRun): string => (/; step by (the step shell|docker exec)/.exec(r.stdout) ?? [])[1] ?? 'unknown'

/** What a step sees of its process, less what differs by step (file-command paths, the stop marker) or by container (HOSTNAME). */
const PROBE =
  'id -u; id -g; pwd; env | grep -v -e "=/__w/_temp/_runner_file_commands/" -e "^RCH_STEP=" -e "^_=" -e "^HOSTNAME=" | sort; echo "marker=${#RCH_STEP}"; printf "value=[%s]\\n" "$STEP_VALUE"\n'

async function step(
  r: FakeRunner,
  script: string,
  opts: { env?: Record<string, string>; workingDirectory?: string } = {}
): Promise<HookRun> {
  return r.call(
    'run_script_step',
    r.scriptStep(script, { env: { STEP_VALUE: "it's\n two lines", ...(opts.env ?? {}) }, workingDirectory: opts.workingDirectory }).args,
    DEBUG
  )
}

const body = (r: HookRun): string =>
  r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('::debug::'))
    .join('\n')

d("steps through the job container's shell", () => {
  test('the first step runs by exec, the next ones by the shell, and each sees what an exec gives', async () => {
    const first = await step(warm, PROBE)
    expect({ code: first.code, via: via(first) }).toEqual({ code: 0, via: 'docker exec' })
    // The shell starts after that exec, while the next hook starts: on a loaded machine the step
    // right after may still find it starting and use an exec (a CI run here saw it once), so up to
    // three steps may pass before one goes through it. The step after that one must too.
    let second = await step(warm, PROBE)
    for (let i = 0; i < 2 && via(second) !== 'the step shell'; i++) second = await step(warm, PROBE)
    const third = await step(warm, PROBE)
    expect({ code: second.code, via: via(second) }).toEqual({ code: 0, via: 'the step shell' })
    expect({ code: third.code, via: via(third) }).toEqual({ code: 0, via: 'the step shell' })
    expect(body(second)).toBe(body(first))
    expect(body(third)).toBe(body(first))
    expect(body(first)).toContain("value=[it's\n two lines]")
    expect(body(first)).toContain('marker=32')
    // positive control: the runner with agent.warmShell off stays on exec, and sees the same
    await step(cold, PROBE)
    const coldSecond = await step(cold, PROBE)
    expect(via(coldSecond)).toBe('docker exec')
    expect(body(coldSecond)).toBe(body(first))
  })

  test('exit statuses, a missing working folder and a missing command are what an exec reports', async () => {
    const cases: [string, { workingDirectory?: string }][] = [
      ['exit 7\n', {}],
      ['kill -TERM $$\n', {}],
      ['echo ran\n', { workingDirectory: '/no/such/folder' }],
      ['no-such-command-rch\n', {}]
    ]
    for (const [script, opts] of cases) {
      await step(warm, 'true\n')
      const w = await step(warm, script, opts)
      const c = await step(cold, script, opts)
      expect(via(w)).toBe('the step shell')
      expect({ script, warm: w.code, ran: body(w).includes('ran') }).toEqual({ script, warm: c.code, ran: body(c).includes('ran') })
    }
  })

  test('a step that kills the shell fails (never a success); the next step runs by exec, the one after by a new shell', async () => {
    await step(warm, 'true\n')
    const killer = await step(warm, 'kill -KILL $PPID\necho after-kill\nexit 0\n')
    expect(via(killer)).toBe('unknown')
    expect(killer.code).toBe(75)
    expect(errorLines(killer).join('\n')).toMatch(/the step shell ended before the step's exit status came/)
    const next = await step(warm, 'echo next\n')
    expect({ code: next.code, via: via(next), out: body(next).includes('next') }).toEqual({ code: 0, via: 'docker exec', out: true })
    // The new shell starts after that exec, while the next hook starts: on a loaded machine the
    // step right after may still find it starting and use an exec, so up to three steps may pass.
    const later: string[] = []
    for (let i = 0; i < 3 && !later.includes('the step shell'); i++) {
      const r = await step(warm, 'echo later\n')
      expect(r.code).toBe(0)
      later.push(via(r))
    }
    expect(later).toContain('the step shell')
  })

  test("a step's `kill 0` (a common EXIT trap) ends as under an exec and leaves the shell for the next step", async () => {
    await step(warm, 'true\n')
    const w = await step(warm, "trap 'kill 0' EXIT\necho hi\n")
    const c = await step(cold, "trap 'kill 0' EXIT\necho hi\n")
    expect(via(w)).toBe('the step shell')
    expect({ code: w.code, hi: body(w).includes('hi') }).toEqual({ code: c.code, hi: body(c).includes('hi') })
    const next = await step(warm, 'echo next\n')
    expect({ code: next.code, via: via(next) }).toEqual({ code: 0, via: 'the step shell' })
  })

  test("SIGINT during a step run by the shell: the hook exits non-zero within 7.5 s and the step's process is gone", async () => {
    await step(warm, 'true\n')
    const marker = `warm-cancel-${Date.now()}`
    const { args } = warm.scriptStep(`echo ${marker}\nsleep 307\necho not-cancelled\n`)
    const { child, done } = warm.start('run_script_step', args, DEBUG)
    await waitForOutput(child, marker)
    const procs = (): string => execFileSync('docker', ['top', warmId, '-o', 'pid,args'], { encoding: 'utf8' })
    // positive control: the step's process runs before the cancel (else "gone" below proves nothing)
    expect(await waitUntil(() => procs().includes('sleep 307'), 10_000, 20)).toBe(true)
    const t0 = Date.now()
    child.kill('SIGINT')
    const inTime = await settlesWithin(done, 7500)
    if (!inTime) child.kill('SIGKILL')
    const r = await done
    expect({ inTime, ms: Date.now() - t0 < 7500 }).toEqual({ inTime: true, ms: true })
    expect(r.code).toBe(130)
    expect(r.stdout).not.toContain('not-cancelled')
    expect(procs()).not.toContain('sleep 307')
    // the job goes on: by exec first, then by a new shell
    const next = await step(warm, 'echo next\n')
    expect({ code: next.code, via: via(next) }).toEqual({ code: 0, via: 'docker exec' })
  })
})
