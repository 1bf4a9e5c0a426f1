/**
 * A pool member past reuse.maxVmAgeMinutes is never granted to a job again (the grant replaces it),
 * so one that nobody holds must not wait for a job to come before it goes: reap replaces it, while a
 * member a job still holds at that age is left to its job. Through dist/index.js against moto and
 * loopback sshd members.
 */
import { describeInstance } from '../helpers/fake-instance'
import { expectOk, ledgerAhead, rowOf, runReap, usePoolReapTest, writeHeldLease } from './reap-helpers'

jest.setTimeout(300_000)
const MIN = 60_000

const t = usePoolReapTest('reap-aged')

test('a member older than maxVmAgeMinutes that nobody holds is replaced; one held at that age is left to its job', async () => {
  const { pool, members } = await t.startPool(2)
  const [idle, held] = members
  // The held member's lease, as a live job's agent keeps it: held, expiring within the TTL bound.
  writeHeldLease(held)

  const { cfg, tmp } = t.reapConfig(
    pool,
    { lease: { ttlSeconds: 15 }, reuse: { maxVmAgeMinutes: 10 }, scaleOut: { enabled: false } },
    { maxJobMinutes: 60, graceMinutes: 2 }
  )

  // Positive control: younger than the age, the idle member is left alone.
  const p0 = await runReap(cfg, tmp, ledgerAhead(5 * MIN))
  expectOk(p0)
  expect(rowOf(p0, idle.id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease (none|free)/) })

  const p1 = await runReap(cfg, tmp, ledgerAhead(11 * MIN))
  expectOk(p1)
  expect(rowOf(p1, idle.id)).toMatchObject({ action: 'marked', why: 'older than reuse.maxVmAgeMinutes (10) and nobody holds it' })
  expect(rowOf(p1, held.id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease live \(\d+ s left\)$/) })

  const p2 = await runReap(cfg, tmp, ledgerAhead(14 * MIN))
  expectOk(p2)
  expect(rowOf(p2, idle.id)).toMatchObject({ action: 'removed', why: expect.stringMatching(/replaced through the group$/) })
  expect(rowOf(p2, held.id).action).toBe('left alone')
  expect(['shutting-down', 'terminated']).toContain((await describeInstance(t.ec2, idle.id)).State?.Name)
  expect((await describeInstance(t.ec2, held.id)).State?.Name).toBe('running')
})
