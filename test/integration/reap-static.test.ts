/**
 * `reap` for static hosts through dist/index.js, against the test VM b (real sshd and dockerd).
 * Two jobs hold slots of one host: one whose runner worker is gone (prepare_job ran under a
 * stand-in worker process that then exited) and one whose worker lives (this test process).
 * Each test uses a work root of its own on the VM, so no other test's slots are looked at.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { FakeRunner } from '../helpers/fake-runner'
import { hookCall, hookPrepare } from '../helpers/fake-instance'
import { loadVm, repoRoot, testImages } from '../helpers/testenv'
import { expectOk, rowOf, runReap } from './reap-helpers'

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
  const dead = new FakeRunner({ config, hook: worker })
  const live = new FakeRunner({ config })
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
    fs.rmSync(workRoot, { recursive: true, force: true })
  }
})
