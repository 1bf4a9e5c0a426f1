/**
 * `reap` for static hosts through dist/index.js, against the test VM b (real sshd and dockerd).
 * Two jobs hold slots of one host: one whose runner worker is gone (prepare_job ran under a
 * stand-in worker process that then exited) and one whose worker lives (this test process).
 * Each test uses a work root of its own on the VM, so no other test's slots are looked at.
 */
import { execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { FakeRunner } from '../helpers/fake-runner'
import { hookCall, hookPrepare } from '../helpers/fake-instance'
import { loadVm, repoRoot, testImages } from '../helpers/testenv'
import { expectOk, rowOf, runReap } from './reap-helpers'
import { shq } from '../../src/remote/quote'
import { hostField, thisRunnerHost } from '../../src/runner-host'

jest.setTimeout(240_000)
const execFileP = promisify(execFile)
const MIN = 60_000

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-reap-static-'))
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const containersOf = async (jobId: string): Promise<string[]> =>
  (await execFileP('docker', ['ps', '-aq', '--filter', `label=dev.remote-container-hooks.job=${jobId}`])).stdout.split('\n').filter(Boolean)

/** Host b with two slots under a work root of this test's own, and a reap configuration of it. */
function twoSlots(name: string) {
  const vm = loadVm('b')
  const workRoot = `${vm.workRoot}/reap-${name}-${process.pid}-${Date.now().toString(36)}`
  const config = {
    provider: {
      kind: 'static',
      acquireTimeoutSeconds: 30,
      hosts: [{ host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, slots: 2 }]
    },
    remote: { workRoot }
  }
  const reapConfig = path.join(dir, `reap-${name}.json`)
  fs.writeFileSync(reapConfig, JSON.stringify({ ...config, fleet: { ledger: { kind: 'local', path: path.join(dir, `ledger-${name}`) } } }))
  return { vm, workRoot, config, reapConfig, tmp: fs.mkdtempSync(path.join(dir, 'tmp-')) }
}

test('a dead job’s slot is marked, kept through the grace, then emptied (containers, job folder, slot); a live one is left alone', async () => {
  const vm = loadVm('b')
  const workRoot = `${vm.workRoot}/reap-${process.pid}-${Date.now().toString(36)}`
  const provider = {
    kind: 'static',
    acquireTimeoutSeconds: 30,
    hosts: [{ host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, slots: 2 }]
  }
  const config = { provider, remote: { workRoot } }
  // The runner's worker as a process of its own: it runs the hook and exits (a runner that died after prepare_job).
  const worker = path.join(dir, 'worker.js')
  fs.writeFileSync(
    worker,
    `const r = require('node:child_process').spawnSync(process.execPath, [${JSON.stringify(path.join(repoRoot, 'dist', 'index.js'))}], { stdio: 'inherit' })\nprocess.exit(r.status ?? 1)\n`
  )
  const dead = new FakeRunner({ parent: dir, config, hook: worker })
  const live = new FakeRunner({ parent: dir, config })
  const reapConfig = path.join(dir, 'reap.json')
  fs.writeFileSync(reapConfig, JSON.stringify({ ...config, fleet: { ledger: { kind: 'local', path: path.join(dir, 'ledger') } } }))
  const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'))
  try {
    for (const r of [dead, live]) {
      const p = await hookPrepare(r, { container: r.jobContainer(testImages.tiny), services: [] })
      expect(p.code).toBe(0)
    }
    const deadJob = (dead.state as { jobId: string }).jobId
    const liveJob = (live.state as { jobId: string }).jobId
    const slotOf = (job: string): string => {
      const s = fs
        .readdirSync(path.join(workRoot, 'leases'))
        .find((n) => fs.readFileSync(path.join(workRoot, 'leases', n, 'owner'), 'utf8').includes(` ${job} `))
      if (!s) throw new Error(`no slot of job ${job}`)
      return s
    }
    const deadSlot = slotOf(deadJob)
    const liveSlot = slotOf(liveJob)
    const what = (slot: string): string => `${vm.host}:${vm.port} ${slot}`
    const deadFolder = path.join(workRoot, 'jobs', `${(dead.state as { owner: string }).owner}-${deadJob}`)
    // Positive control: the dead job's lease, containers and folder are there.
    expect(await containersOf(deadJob)).toHaveLength(1)
    expect(fs.existsSync(deadFolder)).toBe(true)

    const listing = (): string[] => fs.readdirSync(path.join(workRoot, 'leases'), { recursive: true }).map(String).sort()
    const before = listing()
    const dry = await runReap(reapConfig, tmp, { dryRun: true })
    expectOk(dry)
    expect(rowOf(dry, what(deadSlot))).toMatchObject({
      action: 'marked',
      why: expect.stringMatching(new RegExp(`job ${deadJob} dead: its worker \\d+ is gone`))
    })
    expect(listing()).toEqual(before)

    const p1 = await runReap(reapConfig, tmp)
    expectOk(p1)
    expect(rowOf(p1, what(deadSlot)).action).toBe('marked')
    expect(rowOf(p1, what(liveSlot))).toMatchObject({
      action: 'left alone',
      why: expect.stringMatching(new RegExp(`job ${liveJob} alive: its worker ${process.pid} runs`))
    })
    expect(fs.readFileSync(path.join(workRoot, 'leases', deadSlot, 'reap-candidate'), 'utf8')).toMatch(new RegExp(`^\\S+Z ${deadJob}\\n$`))

    const p2 = await runReap(reapConfig, tmp)
    expect(rowOf(p2, what(deadSlot)).action).toBe('kept')
    expect(await containersOf(deadJob)).toHaveLength(1)

    const p3 = await runReap(reapConfig, tmp, { env: { RCH_LEDGER_NOW_MS: String(Date.now() + 3 * MIN) } })
    expectOk(p3)
    expect(rowOf(p3, what(deadSlot))).toMatchObject({
      action: 'removed',
      why: expect.stringMatching(/1 containers, 1 networks, 0 volumes, job folder and slot/)
    })
    expect(rowOf(p3, what(liveSlot)).action).toBe('left alone')
    expect(await containersOf(deadJob)).toHaveLength(0)
    expect(fs.existsSync(deadFolder)).toBe(false)
    expect(fs.existsSync(path.join(workRoot, 'leases', deadSlot))).toBe(false)
    // The live job kept everything.
    expect(await containersOf(liveJob)).toHaveLength(1)
    expect(fs.existsSync(path.join(workRoot, 'leases', liveSlot, 'owner'))).toBe(true)
    const c = await hookCall(live, 'cleanup_job', {})
    expect(c.code).toBe(0)
  } finally {
    for (const r of [dead, live]) {
      const job = (r.state as { jobId?: string } | null)?.jobId
      if (job) for (const id of await containersOf(job)) await execFileP('docker', ['rm', '-f', id]).catch(() => undefined)
    }
    // What the dead runner's next command does: its dead job's agent (reap leaves the runner host's
    // folders alone: the slot's owner file, which names the job, is the VM's word) is stopped.
    await hookCall(dead, 'cleanup_job', {}, { state: null }).catch(() => undefined)
    fs.rmSync(workRoot, { recursive: true, force: true })
  }
})

test('a slot a job replaced by a symlink is never followed: its target keeps its files and gets no mark, and its forged job folder stays (control: the same forgery in a real slot is reaped)', async () => {
  const { vm, workRoot, reapConfig, tmp } = twoSlots('link')
  // A worker pid that is surely gone: a process that has exited.
  const gone = await new Promise<number>((resolve) => {
    const c = spawn(process.execPath, ['-e', '0'])
    c.on('exit', () => resolve(c.pid!))
  })
  const owner = 'abcdef0123456789'
  // What a job that is root on the VM writes: an owner file naming a dead job of this runner host.
  const forged = (job: string): string => `${owner} ${job} forged-runner ${os.hostname()} ${new Date().toISOString()} ${gone} -\n`
  const realJob = '1111111111111111'
  const linkJob = '2222222222222222'
  const linkMark = forged(linkJob)
  const leases = path.join(workRoot, 'leases')
  const decoy = path.join(workRoot, 'decoy')
  const uid = Number((await execFileP('id', ['-u', vm.user])).stdout)
  const gid = Number((await execFileP('id', ['-g', vm.user])).stdout)
  try {
    for (const d of [
      leases,
      decoy,
      path.join(leases, 'slot-0'),
      path.join(workRoot, 'jobs', `${owner}-${realJob}`),
      path.join(workRoot, 'jobs', `${owner}-${linkJob}`)
    ])
      fs.mkdirSync(d, { recursive: true, mode: 0o700 })
    fs.writeFileSync(path.join(leases, 'slot-0', 'owner'), forged(realJob))
    fs.writeFileSync(path.join(decoy, 'owner'), linkMark)
    fs.writeFileSync(path.join(decoy, 'keep.txt'), 'keep\n')
    fs.symlinkSync(decoy, path.join(leases, 'slot-1'))
    await execFileP('chown', ['-R', '-h', `${uid}:${gid}`, workRoot])
    const decoyFiles = (): string[] => fs.readdirSync(decoy).sort()
    const what = (slot: string): string => `${vm.host}:${vm.port} ${slot}`
    const rows = (out: Awaited<ReturnType<typeof runReap>>): string[] => (out.json?.rows ?? []).map((r) => r.what)

    const p1 = await runReap(reapConfig, tmp)
    expectOk(p1)
    // positive control: the forgery in a real slot is believed (the job is "dead") and marked
    expect(rowOf(p1, what('slot-0')).action).toBe('marked')
    expect(rows(p1)).not.toContain(what('slot-1'))
    expect(decoyFiles()).toEqual(['keep.txt', 'owner'])

    const p2 = await runReap(reapConfig, tmp, { env: { RCH_LEDGER_NOW_MS: String(Date.now() + 3 * MIN) } })
    expectOk(p2)
    expect(rowOf(p2, what('slot-0'))).toMatchObject({ action: 'removed', why: expect.stringMatching(/job folder and slot/) })
    expect(fs.existsSync(path.join(leases, 'slot-0'))).toBe(false)
    expect(fs.existsSync(path.join(workRoot, 'jobs', `${owner}-${realJob}`))).toBe(false)
    // the symlinked slot: not listed, not followed, and what it points at untouched
    expect(rows(p2)).not.toContain(what('slot-1'))
    expect(fs.lstatSync(path.join(leases, 'slot-1')).isSymbolicLink()).toBe(true)
    expect(decoyFiles()).toEqual(['keep.txt', 'owner'])
    expect(fs.readFileSync(path.join(decoy, 'owner'), 'utf8')).toBe(linkMark)
    expect(fs.existsSync(path.join(workRoot, 'jobs', `${owner}-${linkJob}`))).toBe(true)
  } finally {
    fs.rmSync(workRoot, { recursive: true, force: true })
  }
})

test('a slot leased from another pid namespace of this hostname (a runner in a container on the host’s network) is left alone, past the grace too: its worker cannot be seen from here (control: the same lease in the older hostname-only form is taken for dead)', async () => {
  const { vm, workRoot, config, reapConfig, tmp } = twoSlots('ns')
  // The runner's worker in a pid namespace of its own (as in a container with the host's network and
  // hostname): `sh` is its pid 1, the worker its pid 2, the hook its pid 3. The worker runs the hook,
  // hands back what it wrote, and lives on, as a runner does through its job.
  const io = fs.mkdtempSync(path.join(dir, 'ns-'))
  const inner = path.join(io, 'inner.js')
  fs.writeFileSync(
    inner,
    `const fs = require('node:fs'); const io = ${JSON.stringify(io)}\n` +
      `const r = require('node:child_process').spawn(process.execPath, [${JSON.stringify(path.join(repoRoot, 'dist', 'index.js'))}], { stdio: [fs.openSync(io + '/in', 'r'), fs.openSync(io + '/out', 'w'), fs.openSync(io + '/err', 'w')] })\n` +
      `r.on('exit', (c) => { fs.writeFileSync(io + '/code.new', String(c ?? 1)); fs.renameSync(io + '/code.new', io + '/code'); setInterval(() => {}, 1e9) })\n`
  )
  const outer = path.join(io, 'outer.js')
  fs.writeFileSync(
    outer,
    `const fs = require('node:fs'); const io = ${JSON.stringify(io)}\n` +
      `fs.writeFileSync(io + '/in', fs.readFileSync(0))\n` +
      `const u = require('node:child_process').spawn('unshare', ['--pid', '--fork', '--mount-proc', 'sh', '-c', ${JSON.stringify(`${shq(process.execPath)} ${shq(inner)}; exit $?`)}], { detached: true, stdio: 'ignore' })\n` +
      `fs.writeFileSync(io + '/unshare.pid', String(u.pid))\n` +
      `u.on('exit', (c) => { process.stderr.write('the namespace ended: ' + c); process.exit(1) })\n` +
      `const t = setInterval(() => { if (!fs.existsSync(io + '/code')) return; clearInterval(t); process.stdout.write(fs.readFileSync(io + '/out')); process.stderr.write(fs.readFileSync(io + '/err')); process.exit(Number(fs.readFileSync(io + '/code', 'utf8'))) }, 50)\n`
  )
  const elsewhere = new FakeRunner({ parent: dir, config, hook: outer })
  const leases = path.join(workRoot, 'leases')
  try {
    const p = await hookPrepare(elsewhere, { container: elsewhere.jobContainer(testImages.tiny), services: [] })
    expect(p.code).toBe(0)
    const job = (elsewhere.state as { jobId: string }).jobId
    const slot = fs.readdirSync(leases).find((n) => fs.readFileSync(path.join(leases, n, 'owner'), 'utf8').includes(` ${job} `))!
    const ownerFile = path.join(leases, slot, 'owner')
    const line = fs.readFileSync(ownerFile, 'utf8')
    // The worker as that namespace numbers it, with this host's hostname and another key.
    expect(line).toMatch(new RegExp(` ${job} \\S+ ${hostField(os.hostname())}/[0-9a-f]{16} \\S+Z 2 [0-9]+\\n$`))
    expect(line).not.toContain(`/${thisRunnerHost().key} `)
    const what = `${vm.host}:${vm.port} ${slot}`

    for (const at of [Date.now(), Date.now() + 3 * MIN]) {
      const r = await runReap(reapConfig, tmp, { env: { RCH_LEDGER_NOW_MS: String(at) } })
      expectOk(r)
      expect(rowOf(r, what)).toMatchObject({
        action: 'left alone',
        why: expect.stringMatching(/in another machine or pid namespace of that hostname/)
      })
    }
    expect(await containersOf(job)).toHaveLength(1)
    expect(fs.existsSync(path.join(leases, slot, 'reap-candidate'))).toBe(false)

    // Control: the older form names the hostname alone, and pid 2 here is not that worker.
    fs.writeFileSync(ownerFile, line.replace(/ (\S+)\/[0-9a-f]{16} /, ' $1 '))
    const c = await runReap(reapConfig, tmp, { dryRun: true })
    expectOk(c)
    expect(rowOf(c, what)).toMatchObject({ action: 'marked', why: `job ${job} dead: its worker 2 is gone` })
    fs.writeFileSync(ownerFile, line)

    // cleanup_job from this namespace: the hook itself, as the runner runs it.
    fs.writeFileSync(
      outer,
      `const r = require('node:child_process').spawnSync(process.execPath, [${JSON.stringify(path.join(repoRoot, 'dist', 'index.js'))}], { stdio: 'inherit' })\nprocess.exit(r.status ?? 1)\n`
    )
    const done = await hookCall(elsewhere, 'cleanup_job', {})
    expect(done.code).toBe(0)
    expect(await containersOf(job)).toHaveLength(0)
  } finally {
    const job = (elsewhere.state as { jobId?: string } | null)?.jobId
    if (job) for (const id of await containersOf(job)) await execFileP('docker', ['rm', '-f', id]).catch(() => undefined)
    // The namespace's init (sh) ends with its group, and every process of the namespace with it.
    const pid = Number(fs.readFileSync(path.join(io, 'unshare.pid'), 'utf8'))
    if (pid > 1) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    fs.rmSync(workRoot, { recursive: true, force: true })
  }
})
