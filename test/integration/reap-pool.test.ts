/**
 * `reap` for kind ec2-pool through dist/index.js, against moto's EC2 + Auto Scaling with loopback
 * sshds as the members (test/helpers/pool-env.ts). Three members: one whose job's runner worker
 * died (its lease lapses: the agent stops renewing it), one whose job lives (its lease is renewed),
 * one marked for replacement that nobody holds, one that stopped answering over SSH.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { CreateTagsCommand } from '@aws-sdk/client-ec2'
import { autoscaling, poolHookConfig } from '../helpers/pool-env'
import { FakeRunner } from '../helpers/fake-runner'
import { describeInstance, dumpRun, hookCall, hookPrepare, tagsOf } from '../helpers/fake-instance'
import { repoRoot, testenvDir, testImages } from '../helpers/testenv'
import { waitUntil } from '../helpers/wait'
import { FleetSchema } from '../../src/config'
import { hookLocalRoot, localDirOf } from '../../src/paths'
import { LocalLedger } from '../../src/fleet/local-ledger'
import type { ReserveRequest } from '../../src/fleet/ledger'
import { RESERVE_REQ } from '../helpers/reserve-request'
import { startFaultProxy } from '../helpers/fault-proxy'
import { expectOk, ledgerAhead, rowOf, runReap, usePoolReapTest, writeHeldLease } from './reap-helpers'

jest.setTimeout(300_000)
const execFileP = promisify(execFile)
const MIN = 60_000
const REQ: ReserveRequest = { ...RESERVE_REQ, runId: '1', runner: 'reap-test', maxLifetimeMinutes: 720 }

const t = usePoolReapTest('reap-pool')

const containersOf = async (jobId: string): Promise<string[]> =>
  (await execFileP('docker', ['ps', '-aq', '--filter', `label=dev.remote-container-hooks.job=${jobId}`])).stdout.split('\n').filter(Boolean)
const memberOf = (r: FakeRunner): string => (r.state as { host: { instanceId: string } }).host.instanceId

test('a lapsed lease is taken back and the member scrubbed; a live lease is left alone; a member marked for replacement that nobody holds is replaced and its reservation settled; a failed claim is attached', async () => {
  const { pool: p } = await t.startPool(4)
  const { dir, key, ec2 } = t
  const provider = { lease: { ttlSeconds: 15 }, waitTimeoutSeconds: 60, scaleOut: { enabled: false } }
  const worker = path.join(dir, 'worker.js')
  // The runner's worker as a process of its own: it runs the hook and exits (a runner that died after prepare_job).
  fs.writeFileSync(
    worker,
    `const r = require('node:child_process').spawnSync(process.execPath, [${JSON.stringify(path.join(repoRoot, 'dist', 'index.js'))}], { stdio: 'inherit' })\nprocess.exit(r.status ?? 1)\n`
  )
  const dead = new FakeRunner({ parent: dir, config: poolHookConfig(p, key, provider), hook: worker })
  const live = new FakeRunner({ parent: dir, config: poolHookConfig(p, key, provider) })
  for (const r of [dead, live]) {
    const prep = await hookPrepare(r, { container: r.jobContainer(testImages.tiny), services: [] })
    if (prep.code !== 0) throw new Error(dumpRun(prep))
  }
  const lapsed = memberOf(dead)
  const held = memberOf(live)
  const [idle, silent] = p
    .members({ live: true })
    .filter((m) => m.id !== lapsed && m.id !== held)
    .map((m) => m.id)
  // A member that stops answering over SSH (its sshd gone, the instance still running).
  const s = p.member(silent)
  await execFileP('bash', [path.join(repoRoot, 'scripts', 'testenv', 'instance-sshd.sh'), 'pause', silent], {
    env: { ...process.env, RCH_TESTENV_DIR: testenvDir, INST_USER: s.user, INST_WORKROOT: s.workRoot },
    timeout: 60_000
  })
  // The ledger: the idle member was started under a reservation; another reservation's claim failed (no member carries it).
  const fleet = FleetSchema.parse({ ledger: { kind: 'local', path: t.ledgerDir } })
  const ledger = new LocalLedger(fleet, t.ledgerDir, { now: () => Date.now() })
  const reserve = async (at: number): Promise<string> => {
    const r = await ledger.reserve({ ...REQ, pool: p.name }, at)
    if (!r.ok) throw new Error(r.line)
    return r.id
  }
  const started = Date.now()
  const rIdle = await reserve(started - 5 * MIN)
  await ledger.attach(rIdle, idle, started - 5 * MIN)
  const rSilent = await reserve(started - 5 * MIN)
  await ledger.attach(rSilent, silent, started - 5 * MIN)
  await ec2.send(new CreateTagsCommand({ Resources: [silent], Tags: [{ Key: 'remote-container-hooks:reservation', Value: rSilent }] }))
  const rUnclaimed = await reserve(started - MIN)
  await ec2.send(
    new CreateTagsCommand({
      Resources: [idle],
      Tags: [
        { Key: 'remote-container-hooks:recycle', Value: 'test' },
        { Key: 'remote-container-hooks:reservation', Value: rIdle }
      ]
    })
  )
  const deadJob = (dead.state as { jobId: string }).jobId
  const liveJob = (live.state as { jobId: string }).jobId
  // Positive control: the dead job's container is on its member; its lease lapses once its agent stops renewing it.
  expect(await containersOf(deadJob)).toHaveLength(1)
  const didLapse = await waitUntil(
    async () => {
      const l = (await p.readLease(lapsed)) ?? ''
      const ex = Number(l.split(' ')[2])
      return l.startsWith('held ') && ex < Date.now() / 1000 - 1
    },
    40_000,
    500
  )
  expect(didLapse).toBe(true)

  const { cfg, tmp } = t.reapConfig(p, provider)

  const p1 = await runReap(cfg, tmp)
  expectOk(p1)
  expect(rowOf(p1, lapsed)).toMatchObject({ action: 'marked', why: expect.stringMatching(/^lease lapsed \d+ s ago$/) })
  expect(rowOf(p1, held)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease live/) })
  expect(rowOf(p1, idle)).toMatchObject({ action: 'marked', why: 'marked for replacement (test) and nobody holds it' })
  expect(rowOf(p1, silent)).toMatchObject({ action: 'marked', why: expect.stringMatching(/^unreachable: /) })
  // The failed claim is mended: the reservation goes to an untagged member of the pool launched after it was made.
  expect(rowOf(p1, rUnclaimed)).toMatchObject({
    action: 'attached',
    why: expect.stringMatching(new RegExp(`^member i-[0-9a-f]+ of pool ${p.name} was launched for it$`))
  })
  const claimedBy = (await ledger.records()).find((r) => r.id === rUnclaimed)?.instanceId as string
  expect([lapsed, held]).toContain(claimedBy)
  expect(tagsOf(await describeInstance(ec2, claimedBy))['remote-container-hooks:reservation']).toBe(rUnclaimed)

  const p2 = await runReap(cfg, tmp, ledgerAhead(3 * MIN))
  expectOk(p2)
  expect(rowOf(p2, lapsed)).toMatchObject({
    action: 'removed',
    why: expect.stringMatching(/lease taken back, member scrubbed and given back/)
  })
  expect(rowOf(p2, held).action).toBe('left alone')
  expect(rowOf(p2, idle)).toMatchObject({
    action: 'removed',
    why: expect.stringMatching(new RegExp(`replaced through the group; reservation ${rIdle} settled \\(\\d+ s\\)$`))
  })
  expect(rowOf(p2, silent)).toMatchObject({
    action: 'removed',
    why: expect.stringMatching(new RegExp(`^unreachable: .*; replaced through the group; reservation ${rSilent} settled`))
  })
  expect(['shutting-down', 'terminated']).toContain((await describeInstance(ec2, silent)).State?.Name)
  expect(rowOf(p2, rUnclaimed)).toMatchObject({ action: 'left alone', why: `its instance ${claimedBy} is running` })
  const recs = await ledger.records()
  expect(recs.find((r) => r.id === rIdle)?.settledAt).toBeDefined()
  expect(recs.find((r) => r.id === rSilent)?.settledAt).toBeDefined()
  expect(recs.find((r) => r.id === rUnclaimed)?.settledAt).toBeUndefined()

  expect(await p.readLease(lapsed)).toMatch(/^free clean/)
  expect(await containersOf(deadJob)).toHaveLength(0)
  expect(tagsOf(await describeInstance(ec2, lapsed))['remote-container-hooks:reap-candidate']).toBeUndefined()
  // The live job's member is still its own, with its container.
  expect(await p.readLease(held)).toMatch(new RegExp(`^held ${(live.state as { host: { token: string } }).host.token} `))
  expect(await containersOf(liveJob)).toHaveLength(1)
  expect(['shutting-down', 'terminated']).toContain((await describeInstance(ec2, idle)).State?.Name)

  const c = await hookCall(live, 'cleanup_job', {})
  expect(c.code).toBe(0)
  // reap leaves the runner host's folders alone: the dead job's local folder goes with its runner's
  // next cleanup_job without state, as after a restart.
  const { owner, jobId } = dead.state as { owner: string; jobId: string }
  const deadDir = localDirOf(hookLocalRoot(), owner, jobId)
  expect(fs.existsSync(deadDir)).toBe(true)
  const restart = await hookCall(dead, 'cleanup_job', {}, { state: null })
  expect(restart.code).toBe(0)
  expect(restart.stdout + restart.stderr).toMatch(/; 1 local job folders/)
  expect(fs.existsSync(deadDir)).toBe(false)
})

test("a member nobody holds that is still protected from scale-in (the lift at its job's release failed) has its protection lifted by reap; a busy member's stays", async () => {
  const { pool: p } = await t.startPool(2)
  const provider = { lease: { ttlSeconds: 60 }, waitTimeoutSeconds: 60, scaleOut: { enabled: false } }
  const [r1, r2] = [0, 1].map(() => new FakeRunner({ parent: t.dir, config: poolHookConfig(p, t.key, provider) }))
  for (const r of [r1, r2]) {
    const prep = await hookPrepare(r, { container: r.jobContainer(testImages.tiny), services: [] })
    if (prep.code !== 0) throw new Error(dumpRun(prep))
  }
  const [free, busy] = [memberOf(r1), memberOf(r2)]
  const group = async (): Promise<Record<string, boolean>> =>
    Object.fromEntries((await p.describe())!.instances.map((i) => [i.id, i.protectedFromScaleIn]))
  const c1 = await hookCall(r1, 'cleanup_job', {})
  expect(c1.code).toBe(0)
  expect(await group()).toEqual({ [free]: false, [busy]: true })
  // The lift at r1's release as if it had failed (its runner host lost AWS, or died right after the give-back).
  await autoscaling(
    'SetInstanceProtection',
    { AutoScalingGroupName: p.name, 'InstanceIds.member.1': free, ProtectedFromScaleIn: true },
    p.endpoint
  )
  expect(await group()).toEqual({ [free]: true, [busy]: true })
  expect(await p.readLease(free)).toMatch(/^free clean/)
  const logBefore = await p.leaseLog(free)

  const { cfg, tmp } = t.reapConfig(p, provider)
  // Control: a dry run says what it would do (its JSON rows name the action itself) and changes nothing.
  const dry = await runReap(cfg, tmp, { dryRun: true })
  expectOk(dry)
  expect(rowOf(dry, free)).toMatchObject({ action: 'unprotected', why: 'lease free and protected from scale-in: lift its protection' })
  expect(await group()).toEqual({ [free]: true, [busy]: true })
  expect(await p.leaseLog(free)).toBe(logBefore)

  const pass = await runReap(cfg, tmp)
  expectOk(pass)
  expect(rowOf(pass, free)).toMatchObject({ action: 'unprotected', why: 'lease free and protected from scale-in; lifted' })
  expect(rowOf(pass, busy)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease live/) })
  expect(await group()).toEqual({ [free]: false, [busy]: true })
  // Lifted while reap held the lease (granted from free, not lapsed), which it handed back as it
  // was: free and clean, no mark, the next job takes it without a scrub.
  const taken = (await p.leaseLog(free))
    .slice(logBefore.length)
    .trim()
    .split('\n')
    .map((l) => l.split(' ').slice(1))
  expect(taken).toEqual([
    ['grant', expect.stringMatching(/^[0-9a-f]{32}$/), 'free', '0'],
    ['release', taken[0][1], 'free']
  ])
  expect(await p.readLease(free)).toMatch(/^free clean/)
  expect(tagsOf(await describeInstance(t.ec2, free))['remote-container-hooks:reap-candidate']).toBeUndefined()
  // The busy member's job goes on, protected, and its release lifts its own.
  const s = await hookCall(r2, 'run_script_step', r2.scriptStep('echo still-here').args)
  expect({ code: s.code, seen: s.stdout.includes('still-here') }).toEqual({ code: 0, seen: true })
  const c2 = await hookCall(r2, 'cleanup_job', {})
  expect(c2.code).toBe(0)
  expect(await group()).toEqual({ [free]: false, [busy]: false })
  // A second pass has nothing to lift.
  const again = await runReap(cfg, tmp)
  expectOk(again)
  expect([rowOf(again, free).action, rowOf(again, busy).action]).toEqual(['left alone', 'left alone'])
})

test("adversarial: a lift whose lease stops being reap's before its hand-back (lapsed during the call, another job's now) sets the protection again and fails loudly", async () => {
  const { pool: p } = await t.startPool(1)
  const provider = { lease: { ttlSeconds: 60 }, waitTimeoutSeconds: 60, scaleOut: { enabled: false } }
  const r = new FakeRunner({ parent: t.dir, config: poolHookConfig(p, t.key, provider) })
  const prep = await hookPrepare(r, { container: r.jobContainer(testImages.tiny), services: [] })
  if (prep.code !== 0) throw new Error(dumpRun(prep))
  const id = memberOf(r)
  expect((await hookCall(r, 'cleanup_job', {})).code).toBe(0)
  const protectedNow = async (): Promise<boolean | undefined> =>
    (await p.describe())!.instances.find((i) => i.id === id)?.protectedFromScaleIn
  await autoscaling(
    'SetInstanceProtection',
    { AutoScalingGroupName: p.name, 'InstanceIds.member.1': id, ProtectedFromScaleIn: true },
    p.endpoint
  )
  expect({ protected: await protectedNow(), lease: await p.readLease(id) }).toEqual({
    protected: true,
    lease: expect.stringMatching(/^free /)
  })
  // Reap's calls go through a proxy that, as reap's lift arrives, makes the member's record another job's.
  const proxy = await startFaultProxy({ target: p.endpoint })
  let forged = ''
  proxy.fail({
    action: 'SetInstanceProtection',
    code: 'NotInjected',
    when: (params) => {
      if (params.get('ProtectedFromScaleIn') === 'false' && !forged) forged = writeHeldLease(p.member(id))
      return false
    }
  })
  try {
    const { cfg, tmp } = t.reapConfig(p, { ...provider, endpoint: proxy.endpoint })
    const pass = await runReap(cfg, tmp)
    expect({ code: pass.code, rows: pass.json?.rows, stderr: pass.stderr }).toMatchObject({ code: 1 })
    expect(rowOf(pass, id)).toMatchObject({
      action: 'failed',
      why: "lease free and protected from scale-in; the lease was not reap's to the end (not-holder): protection set again"
    })
    expect(proxy.calls('SetInstanceProtection').map((c) => c.params.get('ProtectedFromScaleIn'))).toEqual(['false', 'true'])
    expect(await protectedNow()).toBe(true)
    // The other job's record is left as it is.
    expect(await p.readLease(id)).toBe(forged)
  } finally {
    await proxy.close()
  }
})
