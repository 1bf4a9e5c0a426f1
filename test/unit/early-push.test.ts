// The early push between steps, with real inotify watches on a local "runner" folder and a local
// folder as the VM (LocalRemote runs the push's command in /bin/sh with the real tar and find).
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { EarlyPush } from '../../src/sync/early-push'
import { pull, push, pushCommand, type SyncTarget } from '../../src/sync/sync'
import { loadBase, manifestLockOf, saveBase, UNSURE } from '../../src/sync/manifest'
import { fileFp } from '../../src/sync/tree'
import { cleanupTempDirs, plantAtNextPids, tempDir } from './_helpers'
import { LocalRemote } from './local-remote'
import type { Remote } from '../../src/remote/remote'
import { settlesWithin, waitUntil } from '../helpers/wait'
import { workerProcess } from '../../src/worker-process'
import { withFileLock } from '../../src/file-lock'

afterAll(cleanupTempDirs)

// Every instance is disarmed after its test: no watch outlives it.
const made: EarlyPush[] = []
afterEach(() => {
  while (made.length) made.pop()!.disarm()
})
const early = (quietMs: number, settleMs: number): EarlyPush => {
  const e = new EarlyPush({ quietMs, settleMs })
  made.push(e)
  return e
}

const ROOTS = ['_temp', '_actions']
const FC = '_temp/_runner_file_commands'

function world(stubs: Record<string, string> = {}): { host: string; vm: string; target: SyncTarget } {
  const top = tempDir()
  const host = `${top}/host`
  const vm = `${top}/vm`
  for (const d of [`${host}/${FC}`, `${host}/_actions/a`, vm, `${top}/local`]) mkdirSync(d, { recursive: true })
  writeFileSync(`${host}/_actions/a/action.yml`, 'name: a\n')
  const target: SyncTarget = {
    remote: new LocalRemote(top, {}, stubs),
    hostWork: host,
    remoteWork: vm,
    manifestFile: `${top}/local/base.json`,
    excludes: []
  }
  return { host, vm, target }
}

/** One step as the agent runs it: enter, the step's push (the pull is not needed here), arm or not, leave. */
async function step(e: EarlyPush, target: SyncTarget, arm: boolean): Promise<number> {
  await e.enter()
  const s = await e.push(target, ROOTS)
  if (arm) e.arm(target)
  else e.disarm()
  e.leave()
  return s.files
}

describe('early push between steps', () => {
  it('sends what the runner writes into _temp before the next hook arrives, and that step then sends nothing', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    expect(await step(e, target, true)).toBe(1) // the action's file
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    writeFileSync(`${host}/${FC}/set_output_2`, '')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`) && existsSync(`${vm}/${FC}/set_output_2`), 5000, 5)).toBe(true)
    expect(readFileSync(`${vm}/_temp/step2.sh`, 'utf8')).toBe('echo two\n')
    expect(await step(e, target, true)).toBe(0)
    expect(e.counts.failed).toBe(0)
    expect(e.counts.done).toBeGreaterThanOrEqual(1)
  })

  it('sends what the runner wrote while the step that armed it was still ending (its answer out, leave() not yet come)', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    await e.enter()
    await e.push(target, ROOTS)
    e.arm(target)
    // The hook has the answer and exited; the runner writes the next step's files before the agent
    // sees the connection close.
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    writeFileSync(`${host}/${FC}/set_env_2`, '')
    await new Promise((r) => setTimeout(r, 50))
    expect(existsSync(`${vm}/_temp/step2.sh`)).toBe(false) // nothing goes while the request is open
    e.leave()
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`) && existsSync(`${vm}/${FC}/set_env_2`), 5000, 5)).toBe(true)
    expect(await step(e, target, true)).toBe(0)
    expect(e.counts).toEqual({ done: 1, failed: 0 })
  })

  it('and when the folders were not there at arm(): what appeared in them before leave() goes too', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    await e.enter()
    await e.push(target, ROOTS)
    rmSync(`${host}/_temp`, { recursive: true })
    e.arm(target)
    mkdirSync(`${host}/${FC}`, { recursive: true })
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    e.leave()
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true)
    expect(await step(e, target, true)).toBe(0)
  })

  it("asks the agent's guard before it pushes: a lease found lapsed (the runner host back from a suspend) sends nothing and disarms", async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    let leaseHeld = true
    let asked = 0
    e.guard(() => (asked++, leaseHeld))
    await step(e, target, true)
    // Control: while the guard passes, a change goes before the next step.
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true)
    expect(asked).toBeGreaterThan(0)
    await step(e, target, true)
    leaseHeld = false
    writeFileSync(`${host}/_temp/step3.sh`, 'echo three\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step3.sh`), 300, 10)).toBe(false)
    // Disarmed: a later change goes neither (until a step arms it again).
    leaseHeld = true
    writeFileSync(`${host}/_temp/step4.sh`, 'echo four\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step4.sh`), 300, 10)).toBe(false)
  })

  it('control: disarmed (or sync.earlyPush: false), nothing goes before the step, whose push sends it', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    await step(e, target, false)
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    // Nothing to wait for when nothing happens: a bounded look, 100 times the quiet time.
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 300, 10)).toBe(false)
    expect(await step(e, target, false)).toBe(1)
    expect(readFileSync(`${vm}/_temp/step2.sh`, 'utf8')).toBe('echo two\n')
    expect(e.counts.done).toBe(0)
  })

  it('propagates a deletion in a watched folder, and leaves what is outside the watched folders to the step', async () => {
    const { host, vm, target } = world()
    writeFileSync(`${host}/_temp/old.sh`, 'old\n')
    const e = early(3, 2000)
    await step(e, target, true)
    expect(existsSync(`${vm}/_temp/old.sh`)).toBe(true)
    mkdirSync(`${host}/_temp/sub`)
    writeFileSync(`${host}/_temp/sub/deep.txt`, 'deep\n')
    writeFileSync(`${host}/_actions/a/new.js`, 'x\n')
    rmSync(`${host}/_temp/old.sh`)
    expect(await waitUntil(() => !existsSync(`${vm}/_temp/old.sh`) && existsSync(`${vm}/_temp/sub`), 5000, 5)).toBe(true)
    // The folder went (it is in _temp); its contents and _actions did not: no watch covers them.
    expect(existsSync(`${vm}/_temp/sub/deep.txt`)).toBe(false)
    expect(existsSync(`${vm}/_actions/a/new.js`)).toBe(false)
    expect(await step(e, target, true)).toBe(2)
    expect(readFileSync(`${vm}/_temp/sub/deep.txt`, 'utf8')).toBe('deep\n')
  })

  describe('a file written again after an early push read it, same size and same mtime', () => {
    /** Both versions carry this mtime, as two writes within one tick of a coarse file clock would. */
    const T = new Date('2026-01-01T00:00:00Z')
    const write = (p: string, text: string): void => {
      writeFileSync(p, text)
      utimesSync(p, T, T)
    }
    /** Rewrites `p` with other bytes of the same length and the same mtime: its fingerprint does not change. */
    const rewriteUnseen = (p: string, text: string): void => {
      const before = fileFp(statSync(p))
      write(p, text)
      expect(fileFp(statSync(p))).toBe(before)
    }

    it('control: a push by fingerprint alone cannot see the change (the VM keeps the old bytes)', async () => {
      const { host, vm, target } = world()
      write(`${host}/_temp/s.sh`, 'echo AAA\n')
      await push(target, ROOTS)
      rewriteUnseen(`${host}/_temp/s.sh`, 'echo BBB\n')
      expect((await push(target, ROOTS)).files).toBe(0)
      expect(readFileSync(`${vm}/_temp/s.sh`, 'utf8')).toBe('echo AAA\n')
    })

    it("the watch marks it dirty and the step's push sends it", async () => {
      const { host, vm, target } = world()
      // No early push starts on its own here (a long quiet time): only the step's push can send it.
      const e = early(60_000, 2000)
      await step(e, target, true)
      write(`${host}/_temp/s.sh`, 'echo AAA\n')
      // The early push, started by hand as the quiet time would have, reads AAA.
      ;(e as unknown as { begin(): void }).begin()
      expect(await waitUntil(() => e.counts.done === 1, 5000, 5)).toBe(true)
      expect(readFileSync(`${vm}/_temp/s.sh`, 'utf8')).toBe('echo AAA\n')
      rewriteUnseen(`${host}/_temp/s.sh`, 'echo BBB\n')
      await step(e, target, true)
      expect(readFileSync(`${vm}/_temp/s.sh`, 'utf8')).toBe('echo BBB\n')
    })

    it('and an early push that starts after the rewrite sends it too', async () => {
      const { host, vm, target } = world()
      const e = early(3, 2000)
      await step(e, target, true)
      write(`${host}/_temp/s.sh`, 'echo AAA\n')
      expect(await waitUntil(() => e.counts.done >= 1 && readFileSync(`${vm}/_temp/s.sh`, 'utf8') === 'echo AAA\n', 5000, 5)).toBe(true)
      const before = e.counts.done
      rewriteUnseen(`${host}/_temp/s.sh`, 'echo BBB\n')
      expect(await waitUntil(() => e.counts.done > before, 5000, 5)).toBe(true)
      expect(readFileSync(`${vm}/_temp/s.sh`, 'utf8')).toBe('echo BBB\n')
    })
  })

  it('follows a watched folder that was removed and made again (the watch stays with the old one)', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    await step(e, target, true)
    rmSync(`${host}/${FC}`, { recursive: true })
    mkdirSync(`${host}/${FC}`)
    const T = new Date('2026-01-01T00:00:00Z')
    const f = `${host}/${FC}/set_env_2`
    writeFileSync(f, 'A=AAA\n')
    utimesSync(f, T, T)
    expect(await waitUntil(() => existsSync(`${vm}/${FC}/set_env_2`), 5000, 5)).toBe(true)
    const before = fileFp(statSync(f))
    writeFileSync(f, 'A=BBB\n')
    utimesSync(f, T, T)
    expect(fileFp(statSync(f))).toBe(before)
    await step(e, target, true)
    expect(readFileSync(`${vm}/${FC}/set_env_2`, 'utf8')).toBe('A=BBB\n')
  })

  it('a request waits for an early push under way, and gives up on one the VM does not finish', async () => {
    // The VM's tar reads its input and then hangs (a hostile or stuck VM).
    const { host, target } = world({ tar: 'cat > /dev/null; exec sleep 30' })
    const e = early(3, 300)
    e.arm(target)
    e.leave()
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    // Started and hanging: the request enters and is held until the settle time.
    expect(await waitUntil(() => (e as unknown as { flight: unknown }).flight !== null, 5000, 5)).toBe(true)
    const t = Date.now()
    expect(await settlesWithin(e.enter(), 5000)).toBe(true)
    expect(Date.now() - t).toBeGreaterThanOrEqual(250)
    expect(await waitUntil(() => e.counts.failed === 1, 5000, 5)).toBe(true)
    expect(e.counts.done).toBe(0)
    // Not recorded as sent: recorded as unsure, so the next push sends it whatever the VM has.
    expect(loadBase(target.manifestFile).get('_temp/step2.sh')).toEqual(UNSURE)
  })

  it('gives up after the settle time even when the VM never opens the channel', async () => {
    const { host, target } = world()
    let hang = false
    const real = target.remote
    const remote = { ...real, openExec: (c: string) => (hang ? new Promise<never>(() => undefined) : real.openExec(c)) }
    const t0 = { ...target, remote }
    const e = early(3, 300)
    await step(e, t0, true)
    hang = true
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => (e as unknown as { flight: unknown }).flight !== null, 5000, 5)).toBe(true)
    // Held for the settle time (300 ms), not for ever.
    expect(await settlesWithin(e.enter(), 10_000)).toBe(true)
    hang = false
    // The request's own push sends the file.
    expect((await e.push(t0, ROOTS)).files).toBe(1)
    e.leave()
  })

  it('an early push that failed after the VM extracted its files: the next push, even in a new agent, deletes one the runner removed meanwhile', async () => {
    // The VM's tar extracts, then fails while a flag file exists (a VM that breaks half-way).
    const realTar = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()
    const flag = `${tempDir()}/fail`
    const { host, vm, target } = world({ tar: `${realTar} "$@"; rc=$?; [ -e ${flag} ] && exit 1; exit $rc` })
    const e = early(3, 2000)
    await step(e, target, true)
    writeFileSync(flag, '')
    writeFileSync(`${host}/_temp/transient.txt`, 'here for a moment\n')
    expect(await waitUntil(() => e.counts.failed === 1, 5000, 5)).toBe(true)
    expect(existsSync(`${vm}/_temp/transient.txt`)).toBe(true) // it did land on the VM
    rmSync(flag)
    rmSync(`${host}/_temp/transient.txt`)
    // The next step in a new agent (this one's connection dropped with the push): what is unsure is in the base.
    await step(early(3, 2000), target, true)
    // Control of what this guards: a pull would otherwise have found it on the VM and brought it back.
    expect(existsSync(`${vm}/_temp/transient.txt`)).toBe(false)
    expect(await pullNothingBack(target)).toBe(true)
  })

  it('another process that writes the base (an agent of another build) turns the watch off', async () => {
    const { host, vm, target } = world()
    const e = early(3, 2000)
    await step(e, target, true)
    await saveBase(target.manifestFile, {
      set: new Map([['_actions/other', { t: 'f', l: 'f:1:1:420', r: 'f:1:1.0:420' }]]),
      remove: new Set()
    })
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 300, 10)).toBe(false)
    expect(e.counts).toEqual({ done: 0, failed: 0 })
    // Control: armed again by a step of its own, it pushes early.
    await step(e, target, true)
    writeFileSync(`${host}/_temp/step3.sh`, 'echo three\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step3.sh`), 5000, 5)).toBe(true)
  })

  it("a newer agent serving the job (another build's, after an upgrade) turns the watch off; alone, it pushes (control)", async () => {
    const { host, vm, target } = world()
    const sockets = tempDir()
    const e = early(3, 2000)
    e.ownSocket = `${sockets}/agent-own.sock`
    writeFileSync(e.ownSocket, '')
    utimesSync(e.ownSocket, 1_700_000_000, 1_700_000_000)
    await step(e, target, true)
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true) // control
    await step(e, target, true)
    // The newer agent's socket, made after this one's.
    writeFileSync(`${sockets}/agent-newer.sock`, '')
    writeFileSync(`${host}/_temp/step3.sh`, 'echo three\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step3.sh`), 300, 10)).toBe(false)
    expect(e.counts).toEqual({ done: 1, failed: 0 })
  })

  it('an early push with only a deletion to make succeeds (the two watched roots overlap: nothing is listed twice)', async () => {
    const { host, vm, target } = world()
    writeFileSync(`${host}/${FC}/set_env_1`, '')
    const e = early(3, 2000)
    await step(e, target, true)
    rmSync(`${host}/${FC}/set_env_1`)
    expect(await waitUntil(() => e.counts.done + e.counts.failed > 0, 5000, 5)).toBe(true)
    expect(e.counts).toEqual({ done: 1, failed: 0 })
    expect(existsSync(`${vm}/${FC}/set_env_1`)).toBe(false)
  })

  it('an early push given up on while it waits to record records nothing when it gets there', async () => {
    const { host, vm, target } = world()
    const e = early(3, 200)
    await step(e, target, true)
    // The base's lock is held (another process saving): the early push finishes on the VM, then waits.
    const lock = manifestLockOf(target.manifestFile)
    writeFileSync(lock, `${process.pid} held-by-test\n`, { mode: 0o600 })
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true)
    const release = setTimeout(() => rmSync(lock), 400)
    await e.enter() // gives up after 200 ms; its unsure mark waits for the lock too
    e.leave()
    clearTimeout(release)
    expect(await waitUntil(() => e.counts.done + e.counts.failed > 0, 5000, 5)).toBe(true)
    expect(e.counts).toEqual({ done: 0, failed: 1 })
    expect(loadBase(target.manifestFile).get('_temp/step2.sh')).toEqual(UNSURE)
  })

  it('an early push given up on before its channel opened writes nothing there when it opens late', async () => {
    const { host, vm, target } = world()
    let delay = 0
    // As sshd: a closed channel does not end the command, which still gets what was written before.
    const remote: Remote = {
      openExec: async (c: string) => {
        if (delay) await new Promise((r) => setTimeout(r, delay))
        const child = spawn('/bin/sh', ['-c', c], { stdio: ['pipe', 'pipe', 'pipe'] })
        const done = new Promise<{ code: number | null; signal: string | null }>((res) =>
          child.on('close', (code, signal) => res({ code, signal }))
        )
        child.stdin.on('error', () => undefined)
        return { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, done }
      },
      openSocket: () => Promise.reject(new Error('no sockets here')),
      close: () => undefined
    }
    const t0 = { ...target, remote }
    writeFileSync(`${host}/_temp/old.sh`, 'echo old\n')
    const e = early(3, 200)
    await step(e, t0, true)
    delay = 600
    rmSync(`${host}/_temp/old.sh`)
    expect(await waitUntil(() => (e as unknown as { flight: unknown }).flight !== null, 5000, 5)).toBe(true)
    await e.enter() // gives up after 200 ms, while the channel is still opening
    delay = 0
    writeFileSync(`${host}/_temp/old.sh`, 'echo new, made again by the runner\n')
    await e.push(t0, ROOTS)
    e.leave()
    expect(readFileSync(`${vm}/_temp/old.sh`, 'utf8')).toBe('echo new, made again by the runner\n')
    // The late channel opens now: the given-up push must not delete what the step's push just sent.
    expect(await waitUntil(() => e.counts.failed === 1, 5000, 10)).toBe(true)
    // A command it started would run on its own time: a bounded look for the file going.
    expect(await waitUntil(() => !existsSync(`${vm}/_temp/old.sh`), 1000, 20)).toBe(false)
    expect(readFileSync(`${vm}/_temp/old.sh`, 'utf8')).toBe('echo new, made again by the runner\n')
  })

  it('leaves a path that changed its type to the step (a folder replaced by a file)', async () => {
    const { host, vm, target } = world()
    mkdirSync(`${host}/_temp/x`)
    writeFileSync(`${host}/_temp/x/a`, 'a\n')
    const e = early(3, 2000)
    await step(e, target, true)
    rmSync(`${host}/_temp/x`, { recursive: true })
    writeFileSync(`${host}/_temp/x`, 'now a file\n')
    writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
    expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true)
    expect(e.counts.failed).toBe(0)
    expect(statSync(`${vm}/_temp/x`).isDirectory()).toBe(true)
    await step(e, target, true)
    expect(readFileSync(`${vm}/_temp/x`, 'utf8')).toBe('now a file\n')
  })
  it("an agent left behind by a crashed runner (its worker gone) sends none of the next job's _temp to its machine; while the worker lives it does (control)", async () => {
    const { host, vm, target } = world()
    // The runner's worker: a process of its own, ended as a crash ends it.
    const worker = spawn('sleep', ['60'], { stdio: 'ignore' })
    const gone = new Promise((r) => worker.once('exit', r))
    try {
      const e = early(3, 2000)
      e.worker = workerProcess(worker.pid!)
      expect(e.worker).not.toBeNull()
      await step(e, target, true)
      writeFileSync(`${host}/_temp/step2.sh`, 'echo two\n')
      expect(await waitUntil(() => existsSync(`${vm}/_temp/step2.sh`), 5000, 5)).toBe(true) // control: the job's own next step
      await step(e, target, true)
      worker.kill('SIGKILL')
      await gone
      // The next job's runner writes its first script (secrets spelt out in it) into the same _temp.
      writeFileSync(`${host}/_temp/next-job.sh`, 'echo "$NEXT_JOBS_SECRET"\n')
      writeFileSync(`${host}/${FC}/set_env_next`, '')
      expect(await waitUntil(() => existsSync(`${vm}/_temp/next-job.sh`) || existsSync(`${vm}/${FC}/set_env_next`), 300, 10)).toBe(false)
      expect(e.counts).toEqual({ done: 1, failed: 0 })
    } finally {
      worker.kill('SIGKILL')
    }
  })
})

describe('early push: a hostile VM', () => {
  it("a forged answer to an early push fails it, records nothing but 'unsure', and the step's push sends the file", async () => {
    // The VM's find answers with a record of its own choosing while a flag file exists.
    const realFind = execFileSync('/bin/sh', ['-c', 'command -v find']).toString().trim()
    const flag = `${tempDir()}/forge`
    const forged = `printf 'f\\0%s\\0%s\\0%s\\0\\0%s\\0' 5 1.0 644 ../../outside`
    const { host, vm, target } = world({ find: `if [ -e ${flag} ]; then ${forged}; exit 0; fi; exec ${realFind} "$@"` })
    const e = early(3, 2000)
    await step(e, target, true)
    // Positive control: an honest answer, the early push records the file.
    writeFileSync(`${host}/_temp/a.sh`, 'echo a\n')
    expect(await waitUntil(() => e.counts.done === 1, 5000, 5)).toBe(true)
    expect(loadBase(target.manifestFile).get('_temp/a.sh')?.r).toMatch(/^f:7:/)
    writeFileSync(flag, '')
    writeFileSync(`${host}/_temp/b.sh`, 'echo bb\n')
    expect(await waitUntil(() => e.counts.failed === 1, 5000, 5)).toBe(true)
    expect(e.counts.done).toBe(1)
    expect(loadBase(target.manifestFile).get('_temp/b.sh')).toEqual(UNSURE)
    expect(loadBase(target.manifestFile).has('../../outside')).toBe(false)
    rmSync(flag)
    await e.enter()
    expect((await e.push(target, ROOTS)).files).toBe(1)
    e.leave()
    expect(readFileSync(`${vm}/_temp/b.sh`, 'utf8')).toBe('echo bb\n')
    expect(loadBase(target.manifestFile).get('_temp/b.sh')?.r).toMatch(/^f:8:/)
  })
})

// An early push checked the lease, the worker and the base once, at its start; the job's lock on its
// tree and the channel's open can take long after that (a held lock, a stall, a suspend), and a
// machine whose lease lapsed meanwhile may be another job's: nothing may reach it.
describe('early push: the machine or the job is no longer this one once it is under way', () => {
  /** A world whose VM channels open only once let (after `gated` is set), counting the opens. */
  function slowWorld(): ReturnType<typeof world> & { gated: { on: boolean; opens: number; open(): void } } {
    const w = world()
    const real = w.target.remote
    let open: () => void = () => undefined
    const gate = new Promise<void>((r) => (open = r))
    const gated = { on: false, opens: 0, open: () => open() }
    const remote: Remote = {
      openExec: async (cmd) => {
        if (!gated.on) return real.openExec(cmd)
        gated.opens++
        await gate
        return real.openExec(cmd)
      },
      openSocket: (p) => real.openSocket(p),
      close: () => real.close()
    }
    return { ...w, target: { ...w.target, remote }, gated }
  }
  const underWay = (e: EarlyPush): boolean => (e as unknown as { flight: unknown }).flight !== null
  const hostTreeLock = (t: SyncTarget): string => `${t.manifestFile.replace(/\/[^/]*$/, '')}/host-tree.lock`

  it.each([
    ['the lease lost while the channel opens (the keeper disarms it): nothing is sent, nothing recorded but unsure', true],
    ['control: the lease held, the same push sends the file', false]
  ])('%s', async (_what, lose) => {
    const { host, vm, target, gated } = slowWorld()
    const e = early(3, 2000)
    let held = true
    e.guard(() => held)
    await step(e, target, true)
    gated.on = true
    writeFileSync(`${host}/_temp/next.sh`, 'echo "$SECRET_OF_THE_NEXT_STEP"\n')
    expect(await waitUntil(() => gated.opens > 0, 5000, 5)).toBe(true)
    if (lose) {
      held = false
      e.disarm() // what the keeper's onLost does
    }
    gated.open()
    expect(await waitUntil(() => e.counts.done + e.counts.failed > 0, 5000, 5)).toBe(true)
    if (lose) {
      expect(e.counts).toEqual({ done: 0, failed: 1 })
      const unsure = JSON.stringify(UNSURE)
      await waitUntil(() => JSON.stringify(loadBase(target.manifestFile).get('_temp/next.sh')) === unsure, 2000, 5)
      expect(loadBase(target.manifestFile).get('_temp/next.sh')).toEqual(UNSURE)
      expect(existsSync(`${vm}/_temp/next.sh`)).toBe(false)
    } else {
      expect(e.counts).toEqual({ done: 1, failed: 0 })
      expect(readFileSync(`${vm}/_temp/next.sh`, 'utf8')).toContain('SECRET_OF_THE_NEXT_STEP')
    }
  })

  it.each([
    ['the lease lost while the push waits for the lock: no channel opens', 'lease'],
    ["the job's worker gone while it waits (the runner crashed; the next job writes _temp): no channel opens", 'worker'],
    ['control: neither, and the push goes on once the lock is free', 'none']
  ])('%s', async (_what, change) => {
    const { host, vm, target, gated } = slowWorld()
    const worker = spawn('sleep', ['60'], { stdio: 'ignore' })
    const gone = new Promise((r) => worker.once('exit', r))
    try {
      const e = early(3, 2000)
      let held = true
      e.guard(() => held)
      e.worker = workerProcess(worker.pid!)
      await step(e, target, true)
      gated.on = true
      gated.open()
      let unlock: () => void = () => undefined
      const locked = new Promise<void>((r) => (unlock = r))
      let holding = false
      const holder = withFileLock(hostTreeLock(target), () => ((holding = true), locked))
      expect(await waitUntil(() => holding, 5000, 5)).toBe(true)
      writeFileSync(`${host}/_temp/next.sh`, 'echo next\n')
      // The early push has begun (its checks passed) and waits for the lock.
      expect(await waitUntil(() => underWay(e), 5000, 5)).toBe(true)
      if (change === 'lease') held = false
      if (change === 'worker') {
        worker.kill('SIGKILL')
        await gone
      }
      unlock()
      await holder
      expect(await waitUntil(() => e.counts.done + e.counts.failed > 0, 5000, 5)).toBe(true)
      if (change === 'none') {
        expect([e.counts, gated.opens, readFileSync(`${vm}/_temp/next.sh`, 'utf8')]).toEqual([{ done: 1, failed: 0 }, 1, 'echo next\n'])
      } else {
        expect([e.counts, gated.opens, existsSync(`${vm}/_temp/next.sh`)]).toEqual([{ done: 0, failed: 1 }, 0, false])
      }
    } finally {
      worker.kill('SIGKILL')
    }
  })
})

/** True when a pull from the VM finds nothing to bring back or delete (the two sides agree). */
async function pullNothingBack(target: SyncTarget): Promise<boolean> {
  const s = await pull(target, ['_temp'])
  return s.files === 0 && s.deleted === 0
}

describe('the push command', () => {
  /** Runs pushCommand in a local folder with `input` on stdin. */
  function runPush(input: Buffer, plant?: (dir: string) => void): { dir: string; code: number | null; signal: string | null } {
    // Like the job folder's `w`: the command keeps its lock and list files beside it.
    const dir = `${tempDir()}/w`
    mkdirSync(`${dir}/_temp`, { recursive: true })
    writeFileSync(`${dir}/_temp/ab`, 'keep\n')
    writeFileSync(`${dir}/_temp/abcdef`, 'goes\n')
    plant?.(dir)
    const r = spawnSync('/bin/sh', ['-c', pushCommand(dir, 'true')], { input, timeout: 10_000 })
    return { dir, code: r.status, signal: r.signal }
  }
  const emptyTar = Buffer.alloc(1024)

  it('deletes what a whole list names (control)', () => {
    const { dir, code } = runPush(Buffer.concat([Buffer.from('14\n_temp/abcdef\0'), emptyTar]))
    expect(code).toBe(0)
    expect(existsSync(`${dir}/_temp/abcdef`)).toBe(false)
    expect(existsSync(`${dir}/_temp/ab`)).toBe(true)
  })

  it('deletes nothing from a list cut short, not even the prefix its last name was cut to', () => {
    const { dir, code } = runPush(Buffer.from('14\n_temp/ab'))
    expect(code).not.toBe(0)
    expect(existsSync(`${dir}/_temp/ab`)).toBe(true)
    expect(existsSync(`${dir}/_temp/abcdef`)).toBe(true)
  })

  it.each([
    ['the lock and every list name', true],
    ['every list name', false]
  ])(
    "FIFOs a job planted at %s it could guess (the shell's pid) do not hang the push",
    (_what, lockToo) => {
      const plant = (dir: string): void => {
        // At the next pids, as the list's name once was.
        if (lockToo) execFileSync('mkfifo', [`${dir}/../.rch-push.lock`])
        plantAtNextPids((p) => [`${dir}/../.rch-delete-${p}`])
        // Positive control: a file opened by the name it had before blocks on the FIFO there (planted,
        // or made here when the shell's pid fell outside the planted ones).
        const open = lockToo ? 'exec 9>>../.rch-push.lock' : 'mkfifo ../.rch-delete-$$ 2>/dev/null; exec 9>>../.rch-delete-$$'
        const blocked = spawnSync('sh', ['-c', open], { cwd: dir, timeout: 2_000 })
        expect(blocked.signal).toBe('SIGTERM')
      }
      const { dir, code, signal } = runPush(Buffer.concat([Buffer.from('14\n_temp/abcdef\0'), emptyTar]), plant)
      expect({ code, signal }).toEqual({ code: 0, signal: null })
      expect(existsSync(`${dir}/_temp/abcdef`)).toBe(false)
      expect(existsSync(`${dir}/_temp/ab`)).toBe(true)
      expect(statSync(`${dir}/../.rch-push.lock`).isFile()).toBe(true)
    },
    30_000
  )

  it("works with a flock that has no -w (BusyBox's): the wait is counted with flock -n", () => {
    const dir = `${tempDir()}/w`
    mkdirSync(`${dir}/_temp`, { recursive: true })
    writeFileSync(`${dir}/_temp/abcdef`, 'goes\n')
    const bin = tempDir()
    // Like BusyBox's: -s -x -u -n only.
    writeFileSync(
      `${bin}/flock`,
      `#!/bin/sh\ncase "$1" in -w*) echo "flock: unrecognized option '$1'" >&2; exit 1;; esac\nexec /usr/bin/flock "$@"\n`
    )
    chmodSync(`${bin}/flock`, 0o755)
    const env = { PATH: `${bin}:/usr/bin:/bin` }
    // positive control: this flock refuses -w
    expect(spawnSync('flock', ['-w', '1', `${dir}/x`, 'true'], { env }).status).toBe(1)
    const input = Buffer.concat([Buffer.from('14\n_temp/abcdef\0'), Buffer.alloc(1024)])
    const r = spawnSync('/bin/sh', ['-c', pushCommand(dir, 'true')], { input, env, timeout: 10_000 })
    expect(r.status).toBe(0)
    expect(r.stderr.toString()).not.toMatch(/flock|push lock/)
    expect(existsSync(`${dir}/_temp/abcdef`)).toBe(false)
  })

  it('a lock the job holds on the VM fails the push after the wait, saying so, instead of hanging the step (control: once it is let go, the push runs)', async () => {
    const dir = `${tempDir()}/w`
    mkdirSync(`${dir}/_temp`, { recursive: true })
    writeFileSync(`${dir}/_temp/abcdef`, 'goes\n')
    writeFileSync(`${dir}/../.rch-push.lock`, '')
    // The job, root on the VM, holds the lock for good (here: until the test lets it go).
    const holder = spawn('flock', [`${dir}/../.rch-push.lock`, 'sleep', '60'], { stdio: 'ignore', detached: true })
    try {
      const held = (): boolean => spawnSync('flock', ['-n', `${dir}/../.rch-push.lock`, 'true']).status !== 0
      expect(await waitUntil(held, 5000, 10)).toBe(true)
      const input = Buffer.concat([Buffer.from('14\n_temp/abcdef\0'), Buffer.alloc(1024)])
      const t0 = Date.now()
      const r = spawnSync('/bin/sh', ['-c', pushCommand(dir, 'true', 1)], { input, timeout: 10_000 })
      expect(Date.now() - t0).toBeLessThan(5000)
      expect({ code: r.status, stderr: r.stderr.toString() }).toEqual({
        code: 75,
        stderr: "the job folder's push lock stayed taken for 1 s (an earlier push still running there, or the job holding it)\n"
      })
      expect(existsSync(`${dir}/_temp/abcdef`)).toBe(true)
    } finally {
      process.kill(-holder.pid!, 'SIGKILL') // flock and the sleep that holds the lock
    }
    await new Promise((r) => holder.once('close', r))
    const again = spawnSync('/bin/sh', ['-c', pushCommand(dir, 'true', 1)], {
      input: Buffer.concat([Buffer.from('14\n_temp/abcdef\0'), Buffer.alloc(1024)]),
      timeout: 10_000
    })
    expect(again.status).toBe(0)
    expect(existsSync(`${dir}/_temp/abcdef`)).toBe(false)
  })
})
