// Smaller points of the contract, each proven through dist/index.js.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { hookLocalRoot, localDirOf } from '../../src/paths'
import { FakeRunner } from '../helpers/fake-runner'
import { loadRegistry, testImages } from '../helpers/testenv'
import { waitForOutput } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'

describe('contract details', () => {
  // A long cancel grace keeps the killed-hook test below far from its bound on a busy machine.
  const runner = new FakeRunner({ config: { timeouts: { healthSeconds: 60, connectSeconds: 10, cancelGraceSeconds: 6 } } })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })

  test('the second job on a host reuses the externals copy of the same content', async () => {
    const first = new FakeRunner()
    try {
      const p1 = await first.prepare({ container: first.jobContainer(testImages.tiny), services: [] })
      expect(p1.code).toBe(0)
      expect(p1.stdout).toMatch(/externals (copied|reused)/)
      expect((await first.cleanup()).code).toBe(0)
    } finally {
      first.dispose()
    }
    const p2 = await runner.prepare({ container: runner.jobContainer(testImages.glibc), services: [] })
    expect(p2.code).toBe(0)
    expect(p2.stdout).toContain('externals reused')
    // A small tree (a fresh runner's _work): the first copy is a tar over the hook's own connection.
    expect(p2.stdout).toMatch(/copied \d+ files \/ [\d.]+ MB in [\d.]+ s \(tar over the connection; externals reused\)/)
    // The durations it prints are within the command's own wall time (one was once a clock's absolute value).
    const leased = Number(/using .* \((\d+) ms\)/.exec(p2.stdout)?.[1])
    const ready = Number(/job ready in ([\d.]+) s/.exec(p2.stdout)?.[1]) * 1000
    expect({ leased, ready }).toEqual({ leased: expect.any(Number), ready: expect.any(Number) })
    expect(leased).toBeLessThanOrEqual(p2.ms)
    expect(ready).toBeLessThanOrEqual(p2.ms + 50)
  })

  test('CI and GITHUB_ACTIONS are set in the job container; steps never write the response file', async () => {
    const { args } = runner.scriptStep('echo "ci=$CI gha=$GITHUB_ACTIONS"\n')
    const r = await runner.call('run_script_step', args)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('ci=true gha=true')
    expect(r.responseText).toBe('')
  })

  test('steps do not leak SSH channels (each would hold a docker.sock connection on the host)', async () => {
    // Only the sshd serving this job's agent counts: other test files run jobs on the same VM at once.
    const sshdSockets = (): number => {
      const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d))
      const cmdline = (pid: string): string => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        } catch {
          return ''
        }
      }
      const sockets = (pid: string): Set<string> => {
        const out = new Set<string>()
        try {
          for (const fd of readdirSync(`/proc/${pid}/fd`)) {
            try {
              const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
              if (m) out.add(m[1])
            } catch {
              // closed meanwhile
            }
          }
        } catch {
          // the process ended meanwhile
        }
        return out
      }
      // TCP endpoints (local, remote) of the given socket inodes, as the process's own network namespace sees them.
      const tcp = (pid: string, inodes: Set<string>): Array<[string, string]> => {
        const out: Array<[string, string]> = []
        for (const table of ['tcp', 'tcp6']) {
          let text: string
          try {
            text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8')
          } catch {
            continue
          }
          for (const line of text.split('\n').slice(1)) {
            const f = line.trim().split(/\s+/)
            // Ports only: an IPv4 client shows as an IPv4-mapped address in a dual-stack server's tcp6.
            if (f.length > 9 && inodes.has(f[9])) out.push([f[1].split(':').pop() ?? '', f[2].split(':').pop() ?? ''])
          }
        }
        return out
      }
      // The agent's socket path (in its command line) names the job's local folder, `<owner>-<jobId>`.
      const { owner, jobId } = runner.state as { owner: string; jobId: string }
      const agents = pids.filter((pid) => cmdline(pid).includes('__agent') && cmdline(pid).includes(`/${owner}-${jobId}/`))
      const agentEnds = new Set(agents.flatMap((pid) => tcp(pid, sockets(pid)).map(([l, r]) => `${r}>${l}`)))
      let n = 0
      for (const pid of pids) {
        if (!cmdline(pid).startsWith('sshd: rchvm@notty')) continue
        const own = sockets(pid)
        if (tcp(pid, own).some(([l, r]) => agentEnds.has(`${l}>${r}`))) n += own.size
      }
      return n
    }
    const { args } = runner.scriptStep('true\n')
    expect((await runner.call('run_script_step', args)).code).toBe(0)
    const before = sshdSockets()
    // The job's agent holds one connection to sshd, whose channels are the sockets counted.
    expect(before).toBeGreaterThan(0)
    for (let i = 0; i < 20; i++) {
      const { args: a } = runner.scriptStep('echo step\n')
      expect((await runner.call('run_script_step', a)).code).toBe(0)
    }
    // Before the fix every step left one channel open (20 here); sshd caps a connection at MaxSessions.
    expect(sshdSockets() - before).toBeLessThan(4)
  })

  test('RUNNER_DEBUG=1 adds ::debug:: lines with per-phase timings to the step log', async () => {
    const { args } = runner.scriptStep('true\n')
    const quiet = await runner.call('run_script_step', args)
    expect(quiet.stdout).not.toContain('::debug::')
    const { args: a2 } = runner.scriptStep('true\n')
    const r = await runner.call('run_script_step', a2, { env: { RUNNER_DEBUG: '1' } })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/::debug::timing: connect \d+ ms, push \d+ ms, exec \d+ ms, pull \d+ ms/)
  })

  test("with pipes for stdout and stderr (as the runner's) the agent writes the output into them; with a socket the hook relays it", async () => {
    const piped = await runner.call('run_script_step', runner.scriptStep('echo out; echo err >&2\n').args, { env: { RUNNER_DEBUG: '1' } })
    expect(piped.code).toBe(0)
    expect(piped.stdout).toContain("::debug::step output: written by the job's agent into the hook's pipes")
    expect(piped.stdout).toMatch(/^out$/m)
    expect(piped.stderr).toMatch(/^err$/m)
    process.env.RCH_TEST_STDIO = 'socket'
    try {
      const relayed = await runner.call('run_script_step', runner.scriptStep('echo out; echo err >&2\n').args, {
        env: { RUNNER_DEBUG: '1' }
      })
      expect(relayed.code).toBe(0)
      expect(relayed.stdout).toContain('::debug::step output: relayed by the hook')
      expect(relayed.stdout).toMatch(/^out$/m)
      expect(relayed.stderr).toMatch(/^err$/m)
    } finally {
      delete process.env.RCH_TEST_STDIO
    }
  })

  test("a hook killed mid-step leaves its pipes at once: the agent holding them would keep the runner's read open", async () => {
    const { child, done } = runner.start(
      'run_script_step',
      runner.scriptStep("trap '' TERM INT; while true; do echo tick; sleep 0.05; done\n").args,
      {
        env: { RUNNER_DEBUG: '1' }
      }
    )
    await waitForOutput(child, 'tick')
    child.kill('SIGKILL')
    const t = Date.now()
    const r = await done // resolves once the hook exited and both pipes reached their end
    expect(r.signal).toBe('SIGKILL')
    expect(r.stdout).toContain("written by the job's agent into the hook's pipes") // positive control: the agent held them
    // The step ignores TERM, so stopping it takes the whole cancelGraceSeconds (6 s): the pipes must not wait for that.
    expect(Date.now() - t).toBeLessThan(4000)
    // And the agent's run of it ends: with nowhere left to write, the output must not wait for a
    // closed pipe's 'drain' for ever (the step's channel and Docker connection would stay open).
    const { owner, jobId } = runner.state as { owner: string; jobId: string }
    const local = localDirOf(hookLocalRoot(), owner, jobId)
    const logs = (): string[] => readdirSync(local).filter((f) => f.startsWith('agent') && f.endsWith('.log'))
    const ended = (): boolean => logs().some((f) => readFileSync(join(local, f), 'utf8').includes('a step whose hook went away ended'))
    await waitUntil(ended, 15_000, 100)
    expect(ended()).toBe(true)
    // Each agent of the job has a log of its own, named for its pid, holding only its own entries.
    for (const f of logs()) {
      const pid = /^agent-(\d+)\.log$/.exec(f)?.[1]
      const entries = readFileSync(join(local, f), 'utf8').match(/^\S+ agent \d+: /gm) ?? []
      expect({ f, pid: Boolean(pid), entries: entries.length > 0 }).toEqual({ f, pid: true, entries: true })
      expect(entries.filter((e) => !e.endsWith(` agent ${pid}: `))).toEqual([])
    }
  })
})

describe('pull policy', () => {
  // Runs after the job above is cleaned up: the loopback host has one slot.
  test('images.pullPolicy always pulls an image the host already has', async () => {
    // Its own image: container-step.test.ts, which may run at the same time, removes `image`.
    const { policyImage: image, ...reg } = loadRegistry()
    const password = readFileSync(reg.passwordFile, 'utf8').trim()
    const registry = { username: reg.user, password, serverUrl: reg.host }
    const withPolicy = (policy: string) => new FakeRunner({ config: { images: { pullPolicy: policy } } })
    const a = withPolicy('missing')
    const b = withPolicy('always')
    try {
      // make sure the image is present first
      const pa = await a.prepare({ container: a.jobContainer(image, { registry }), services: [] })
      expect(pa.code).toBe(0)
      expect((await a.cleanup()).code).toBe(0)
      const pa2 = await a.prepare({ container: a.jobContainer(image, { registry }), services: [] })
      expect(pa2.code).toBe(0)
      expect(pa2.stdout).not.toContain(`pulled ${image}`)
      expect((await a.cleanup()).code).toBe(0)
      const pb = await b.prepare({ container: b.jobContainer(image, { registry }), services: [] })
      expect(pb.code).toBe(0)
      expect(pb.stdout).toContain(`pulled ${image}`)
      expect(pb.stdout + pb.stderr).not.toContain(password)
      expect((await b.cleanup()).code).toBe(0)
    } finally {
      a.dispose()
      b.dispose()
    }
  })
})
void join
