/**
 * A hostile job on a pool member (root there) leaves behind a lease record saying "held", with an
 * expiry within the TTL bound that a daemon of its own would keep pushing ahead. The record is the
 * member's word: reap must not believe it past the age at which no job can still hold the member
 * (reuse.maxVmAgeMinutes + fleet.reap.maxJobMinutes, the age from EC2's LaunchTime), or the member
 * and its reservation stay for ever. Through dist/index.js against moto and a loopback sshd member.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { describeInstance } from '../helpers/fake-instance'
import { expectOk, ledgerAhead, rowOf, runReap, usePoolReapTest, writeHeldLease } from './reap-helpers'

jest.setTimeout(300_000)
const MIN = 60_000

const t = usePoolReapTest('reap-forged')

test('a lease record the member keeps saying "held" does not keep it past maxVmAge + maxJobMinutes', async () => {
  const { pool, members } = await t.startPool(1)
  const m = members[0]
  // What root on the member writes: a lease held by a token no runner has, expiring within the TTL bound.
  const forged = writeHeldLease(m)
  const folder = path.join(m.workRoot, 'pool')

  const { cfg, tmp } = t.reapConfig(
    pool,
    { lease: { ttlSeconds: 15 }, reuse: { maxVmAgeMinutes: 10 }, scaleOut: { enabled: false } },
    { maxJobMinutes: 60, graceMinutes: 2 }
  )

  // Positive control: within the bound the forged record is read and believed (a job could hold it).
  const p0 = await runReap(cfg, tmp, ledgerAhead(65 * MIN))
  expectOk(p0)
  expect(rowOf(p0, m.id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease live \(\d+ s left\)$/) })

  const p1 = await runReap(cfg, tmp, ledgerAhead(71 * MIN))
  expectOk(p1)
  expect(rowOf(p1, m.id)).toMatchObject({
    action: 'marked',
    why: expect.stringMatching(/past reuse\.maxVmAgeMinutes 10 \+ fleet\.reap\.maxJobMinutes 60: no job can hold it/)
  })
  const p2 = await runReap(cfg, tmp, ledgerAhead(74 * MIN))
  expectOk(p2)
  expect(rowOf(p2, m.id)).toMatchObject({ action: 'removed', why: expect.stringMatching(/replaced through the group$/) })
  expect(['shutting-down', 'terminated']).toContain((await describeInstance(t.ec2, m.id)).State?.Name)
  // The record was still the forged one: the member was replaced in spite of it, not after it lapsed.
  expect(fs.existsSync(path.join(folder, 'lease')) ? fs.readFileSync(path.join(folder, 'lease'), 'utf8') : forged).toBe(forged)
})

// The member's clock and record are the job's to set: an expiry of 20 digits passed the digits test
// of reap's look, then the shell's arithmetic on it failed the look, and the member read as
// unreachable (left alone while protected, as a job's may be). It is a lapsed lease.
test('a lease record whose expiry has more digits than any time is read as lapsed, not as an unreachable member', async () => {
  const { pool, members } = await t.startPool(1)
  const m = members[0]
  writeHeldLease(m, '9'.repeat(20))
  const { cfg, tmp } = t.reapConfig(pool, { lease: { ttlSeconds: 15 }, scaleOut: { enabled: false } }, { graceMinutes: 2 })
  const p0 = await runReap(cfg, tmp)
  expectOk(p0)
  expect(rowOf(p0, m.id)).toMatchObject({ action: 'marked', why: expect.stringMatching(/^lease lapsed \d+ s ago$/) })
})
