// The hook's side of the fleet ledger: the timings line, the test clock, the lazily opened job
// ledger (its errors name fleet.ledger; a refusal passes through as the ledger's line), and the
// records after a launch, whose failures are warnings.
import { FleetSchema } from '../../src/config'
import { FleetRefused } from '../../src/fleet/gate'
import { JobFleet } from '../../src/fleet/job-fleet'
import { beatQuietly, recordCleanedUp, recordLost, recordPrepared } from '../../src/fleet/job-ledger-writes'
import { ledgerClockFrom } from '../../src/fleet/ledger-clock'
import { timingsLine } from '../../src/fleet/timings-line'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

const runner = { runnerName: 'r1', github: { repository: 'acme/widgets', workflow: 'CI', runId: '7', job: 'build' } }
const fleetCtx = (fleet: object, localRoot = tempDir()) => ({ config: { fleet: FleetSchema.parse(fleet) }, runner, localRoot })

describe('the timings line', () => {
  test('phases in a fixed order with their labels, in seconds with one decimal, the total last', () => {
    expect(timingsLine({ health: 0, containers: 2200, sync: 800, ssh: 3100, boot: 31_200, acquire: 400, total: 37_700 }, 37_700)).toBe(
      'timings: acquire 0.4 s, boot 31.2 s, ssh ready 3.1 s, first sync 0.8 s, containers 2.2 s, health 0.0 s (total 37.7 s)'
    )
    expect(timingsLine({ cleanup: 900, terminate: 700 }, 900)).toBe('timings: terminate 0.7 s (total 0.9 s)')
    expect(timingsLine({ acquire: 50, sync: 1000, scrub_disk: 300 }, 2000)).toBe(
      'timings: acquire 0.1 s, first sync 1.0 s, scrub_disk 0.3 s (total 2.0 s)'
    )
  })
})

describe('RCH_LEDGER_NOW_MS', () => {
  test('unset: the system clock; set: starts there and runs at real speed; not a number: refused naming it', () => {
    expect(ledgerClockFrom({}).now()).toBeGreaterThan(Date.UTC(2020, 0, 1))
    let real = 1000
    const c = ledgerClockFrom({ RCH_LEDGER_NOW_MS: String(Date.UTC(2026, 5, 1)) }, () => real)
    expect(c.now()).toBe(Date.UTC(2026, 5, 1))
    real += 1500
    expect(c.now()).toBe(Date.UTC(2026, 5, 1) + 1500)
    expect(() => ledgerClockFrom({ RCH_LEDGER_NOW_MS: 'yesterday' })).toThrow('RCH_LEDGER_NOW_MS must be a time in epoch milliseconds')
  })
})

describe("the job's ledger", () => {
  test('the job facts fill every reservation; a refusal is the ledger line itself', async () => {
    const f = new JobFleet(fleetCtx({ caps: { instances: 1 } }), '0123456789abcdef')
    const id = await f.gate.reserve({ instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 })
    const [rec] = await (await f.ledger()).records()
    expect(rec).toMatchObject({
      id,
      repository: 'acme/widgets',
      workflow: 'CI',
      runId: '7',
      job: 'build',
      runner: 'r1',
      jobId: '0123456789abcdef'
    })
    const refused = await f.gate.reserve({ instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(FleetRefused)
    expect((refused as Error).message).toBe('fleet cap reached: 1 of 1 instances')
    // settle with no end time takes the ledger clock's now
    await f.gate.settle(id)
    expect(await (await f.ledger()).unsettled()).toEqual([])
  })

  test('a ledger that cannot be opened fails a reservation with one message naming fleet.ledger', async () => {
    const root = tempDir()
    require('node:fs').chmodSync(root, 0o755)
    const f = new JobFleet(fleetCtx({ ledger: { kind: 'local', path: root } }), '0123456789abcdef')
    const err = (await f.gate.reserve({ instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 }).catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/^fleet\.ledger \(local\): cannot open the ledger: /)
    expect(err.message).not.toContain('\n')
  })

  test('after a launch a ledger that cannot be written is a warning: the records, the heartbeat', async () => {
    const root = tempDir()
    require('node:fs').chmodSync(root, 0o755)
    const f = new JobFleet(fleetCtx({ ledger: { kind: 'local', path: root } }), '0123456789abcdef')
    const warned: string[] = []
    const warn = (m: string) => void warned.push(m)
    await recordPrepared(f, warn, { provider: 'ec2', machine: 'i-0abc', reservation: 'x', startedAt: 1, timings: { acquire: 1 } })
    await recordCleanedUp(f, warn, { reservation: 'x', timings: { cleanup: 1 } })
    await beatQuietly(f, warn, 'x')
    expect(warned).toHaveLength(3)
    for (const w of warned) expect(w).toMatch(/^fleet\.ledger: could not record/)
  })

  test('the records: the job record for every provider kind, timings and a heartbeat on the reservation', async () => {
    const f = new JobFleet(fleetCtx({}), '0123456789abcdef')
    const id = await f.gate.reserve({ instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 })
    const warned: string[] = []
    await recordPrepared(f, (m) => void warned.push(m), {
      provider: 'ec2',
      machine: 'i-0abc',
      reservation: id,
      startedAt: 1000,
      timings: { acquire: 5, total: 9 }
    })
    await recordCleanedUp(f, (m) => void warned.push(m), { reservation: id, timings: { cleanup: 3, terminate: 2 } })
    const l = await f.ledger()
    const [rec] = await l.records()
    const [job] = await l.jobs()
    expect(warned).toEqual([])
    expect(rec.timings).toEqual({ acquire: 5, total: 9, cleanup: 3, terminate: 2 })
    expect(rec.heartbeatAt).toBeDefined()
    expect(job).toMatchObject({
      jobId: '0123456789abcdef',
      provider: 'ec2',
      machine: 'i-0abc',
      reservationId: id,
      runnerHost: require('node:os').hostname(),
      startedAt: 1000,
      timings: { acquire: 5, total: 9, cleanup: 3, terminate: 2 }
    })
    expect(job.endedAt).toBeGreaterThan(1000)
  })

  test("a lost machine's cause: with the job's facts (prepare_job may not have written the record), and the first cause stays", async () => {
    const f = new JobFleet(fleetCtx({}), '0123456789abcdef')
    const warned: string[] = []
    await recordLost(f, (m) => void warned.push(m), 'running', 'ec2-pool')
    await recordLost(f, (m) => void warned.push(m), 'spot', 'ec2-pool')
    const [job] = await (await f.ledger()).jobs()
    expect(warned).toEqual([])
    expect(job).toMatchObject({
      jobId: '0123456789abcdef',
      repository: 'acme/widgets',
      workflow: 'CI',
      runId: '7',
      job: 'build',
      runner: 'r1',
      runnerHost: require('node:os').hostname(),
      provider: 'ec2-pool',
      lost: 'running'
    })
  })
})

describe('heartbeats while a long command runs (reap must not judge a live prepare_job or container action dead)', () => {
  /** A ledger clock that moves on 1 ms at every read, so each heartbeat is a later one. */
  const ticking = (): { now: () => number } => {
    let t = Date.UTC(2026, 11, 1)
    return { now: () => ++t }
  }
  const beatOf = async (f: JobFleet, id: string): Promise<number | undefined> =>
    (await (await f.ledger()).records()).find((r) => r.id === id)?.heartbeatAt
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms))
  const spec = { instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 }

  test('what the command reserved gets a heartbeat every period, until it stops; a settled one no longer', async () => {
    const f = new JobFleet({ ...fleetCtx({}), ledgerClock: ticking() }, '0123456789abcdef')
    const warned: string[] = []
    f.keepBeating(20, (m) => void warned.push(m))
    const id = await f.gate.reserve(spec)
    // positive control: reserving alone records no heartbeat
    expect(await beatOf(f, id)).toBeUndefined()
    let first: number | undefined
    await waitUntil(async () => (first = await beatOf(f, id)) !== undefined, 5000, 10)
    expect(first).toBeDefined()
    let later: number | undefined
    await waitUntil(async () => ((later = await beatOf(f, id)) ?? 0) > first!, 5000, 10)
    expect(later).toBeGreaterThan(first!)
    f.stopBeating()
    await pause(60)
    const stopped = (await beatOf(f, id))!
    await pause(100)
    expect(await beatOf(f, id)).toBe(stopped)
    expect(warned).toEqual([])
    f.close()
  })

  test('control: without keepBeating nothing beats; with it, nothing beats before anything is reserved', async () => {
    const f = new JobFleet({ ...fleetCtx({}), ledgerClock: ticking() }, '0123456789abcdef')
    const id = await f.gate.reserve(spec)
    await pause(100)
    expect(await beatOf(f, id)).toBeUndefined()
    await f.gate.settle(id)
    let beats = 0
    const g = new JobFleet({ ...fleetCtx({}), ledgerClock: ticking() }, '0123456789abcdef')
    const gate = { ...g.gate }
    g.gate.beat = (x) => (beats++, gate.beat(x))
    g.keepBeating(20, () => undefined)
    await pause(100)
    expect(beats).toBe(0)
    const id2 = await g.gate.reserve(spec)
    await pause(100)
    expect(beats).toBeGreaterThan(0)
    // settled: no longer beaten
    await g.gate.settle(id2)
    const after = beats
    await pause(100)
    expect(beats).toBe(after)
    g.close()
  })

  test('a ledger that fails the heartbeats is said once, not every period', async () => {
    const f = new JobFleet(fleetCtx({}), '0123456789abcdef')
    await f.gate.reserve(spec)
    let tries = 0
    f.gate.beat = () => (tries++, Promise.reject(new Error('throttled')))
    const warned: string[] = []
    f.keepBeating(20, (m) => void warned.push(m))
    // Several periods' failures, each a chance to say it again.
    await waitUntil(() => tries >= 4, 5000, 5)
    expect(tries).toBeGreaterThanOrEqual(4)
    f.close()
    expect(warned).toEqual(['fleet.ledger: could not record a heartbeat: throttled'])
  })

  test('a beat still in flight when the command stops beating (its ledger closed under it) is not warned about', async () => {
    const f = new JobFleet(fleetCtx({}), '0123456789abcdef')
    await f.gate.reserve(spec)
    let started = 0
    f.gate.beat = () => (started++, new Promise((_resolve, reject) => setTimeout(() => reject(new Error('client destroyed')), 60)))
    const warned: string[] = []
    f.keepBeating(20, (m) => void warned.push(m))
    await waitUntil(() => started > 0, 5000, 2)
    expect(started).toBe(1)
    f.close()
    await pause(100)
    expect(warned).toEqual([])
  })
})
