// reap judges a launched machine's job dead once its reservation has had no heartbeat for
// fleet.reap.deadAfterMinutes. A step beats while it runs (main.ts), but prepare_job (a large pull
// on a fresh VM) and a container action without state (its reservation is in no state) ran
// without one, so reap could end them while they ran. Both now beat what they reserved for as long
// as they run. The provider is a stand-in that reserves through the job's ledger as EC2 does, then
// takes its time before failing; the ledger is the real local one.
import type { HookContext } from '../../src/context'
import { openLedger } from '../../src/fleet/open-ledger'
import { ContainerSchema, PrepareJobArgsSchema } from '../../src/protocol'
import type { ProviderEnv } from '../../src/providers/provider'
import { cleanupTempDirs } from './_helpers'
import { UNIT_EC2, unitHookContext } from './_hook-context'
import { waitUntil } from '../helpers/wait'

let acquireMs = 0
/** Set: the stand-in takes its time until this says a beat has landed (not a fixed time a loaded machine could outlast). */
let mockUntilBeat: (() => Promise<boolean>) | null = null
jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({
    kind: 'ec2',
    releaseDestroys: true,
    describe: () => 'the instance',
    acquire: async (_job: unknown, env: ProviderEnv) => {
      await env.fleet.reserve({ instanceType: 'm7i.large', vcpus: 2, maxLifetimeMinutes: 60 })
      if (mockUntilBeat) await waitUntil(mockUntilBeat, 10_000, 20)
      else await new Promise((r) => setTimeout(r, acquireMs))
      throw new Error('no instance came up')
    }
  })
}))

afterAll(cleanupTempDirs)
afterEach(() => (mockUntilBeat = null))

function context(beatMs: number): HookContext {
  const ctx = unitHookContext({ provider: UNIT_EC2 })
  return { ...ctx, beatMs }
}

/** The heartbeat of the one reservation the command made (undefined: none recorded). */
async function heartbeatOf(ctx: HookContext): Promise<{ reservations: number; heartbeatAt: number | undefined }> {
  const ledger = await openLedger(ctx.config.fleet, { localRoot: ctx.localRoot })
  try {
    const rs = await ledger.records()
    return { reservations: rs.length, heartbeatAt: rs[0]?.heartbeatAt }
  } finally {
    ledger.close()
  }
}

const commands = {
  prepare_job: async (ctx: HookContext) => {
    const { prepareJob } = await import('../../src/handlers/prepare-job')
    return prepareJob(PrepareJobArgsSchema.parse({ container: { image: 'node:20', environmentVariables: {} }, services: [] }), ctx)
  },
  'run_container_step without state': async (ctx: HookContext) => {
    const { runContainerStep } = await import('../../src/handlers/run-container-step')
    return runContainerStep(ContainerSchema.parse({ image: 'alpine:3', environmentVariables: {} }), null, ctx)
  }
}

describe.each(Object.entries(commands))('%s', (_name, run) => {
  test('beats its reservation while the machine takes its time', async () => {
    const ctx = context(50)
    mockUntilBeat = async () => (await heartbeatOf(ctx)).heartbeatAt !== undefined
    await expect(run(ctx)).rejects.toThrow('no instance came up')
    const r = await heartbeatOf(ctx)
    expect(r.reservations).toBe(1)
    expect(r.heartbeatAt).toBeDefined()
  })

  test('control: with a period longer than the command, no heartbeat is recorded', async () => {
    acquireMs = 400
    const ctx = context(60_000)
    await expect(run(ctx)).rejects.toThrow('no instance came up')
    const r = await heartbeatOf(ctx)
    expect(r.reservations).toBe(1)
    expect(r.heartbeatAt).toBeUndefined()
  })

  test('the beats stop when the command ends', async () => {
    const ctx = context(50)
    mockUntilBeat = async () => (await heartbeatOf(ctx)).heartbeatAt !== undefined
    await expect(run(ctx)).rejects.toThrow('no instance came up')
    const at = (await heartbeatOf(ctx)).heartbeatAt
    // It beat while it ran: otherwise "no later beat" below would hold with no beats at all.
    expect(at).toBeDefined()
    await new Promise((r) => setTimeout(r, 200))
    expect((await heartbeatOf(ctx)).heartbeatAt).toBe(at)
  })
})
