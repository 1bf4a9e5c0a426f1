// A container action without state leases its own machine. On the runner's cancel, a machine whose
// release destroys it (EC2) is released at once: the runner kills the hook 10 s after its SIGINT, and
// the step's stop on a VM the job was root on may take that long. A machine other jobs use (static,
// pool) is released only after its step has stopped.
import { waitUntil } from '../helpers/wait'
import { tempDir, cleanupTempDirs, containerActionArgs, containerStepCtx } from './_helpers'

const events: string[] = []
let stepEnds: () => void = () => undefined
const lease = { kind: 'ec2', instanceId: 'i-0abc', connect: { host: '127.0.0.1', port: 22 } }
const provider = { kind: 'ec2', releaseDestroys: true, release: async () => void events.push('release') }

/** Set: the machine's own work root is one the step's plan refuses (a pool member's answer). */
let refusedWorkRoot = false
jest.mock('../../src/providers/factory', () => {
  const actual = jest.requireActual('../../src/providers/factory')
  return {
    ...actual,
    providerFor: () => provider,
    workRootOf: (...a: unknown[]) => {
      if (refusedWorkRoot) throw new Error('the machine answered a work root the step cannot use')
      return actual.workRootOf(...a)
    }
  }
})
jest.mock('../../src/session', () => ({
  acquireMachine: async () => (events.push('acquire'), { lease, remote: { close: () => undefined } }),
  jobLocalDir: () => tempDir(),
  keepOf: () => () => undefined,
  openJobRemote: async () => ({ close: () => undefined }),
  releaseMachine: async () => void events.push('release'),
  stopAgent: async () => undefined
}))
jest.mock('../../src/fleet/job-fleet', () => ({
  jobFleet: () => ({ keepBeating: () => undefined, stopBeating: () => undefined }),
  closeJobFleet: () => undefined
}))
jest.mock('../../src/prepare/first-copy', () => ({
  makeJobFolder: async () => undefined,
  copyUp: async () => ({ roots: [], local: null, ms: 0 })
}))
jest.mock('../../src/docker/job-folder', () => ({
  ...jest.requireActual('../../src/docker/job-folder'),
  removeJobFolder: async () => void events.push('job folder removed')
}))
jest.mock('../../src/sync/early-push', () => ({ betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }) } }))
jest.mock('../../src/sync/sync', () => ({ pull: async () => undefined, recordBase: async () => undefined }))
jest.mock('../../src/docker/remote-docker', () => ({
  ...jest.requireActual('../../src/docker/remote-docker'),
  RemoteDocker: class {
    engine = {}
    imagePresent = async (): Promise<boolean> => true
    ensureImage = async (): Promise<'present'> => 'present'
    removeOwned = async (key: string) => {
      events.push(`removed by ${key.split('.').pop()}`)
      return { containers: 0, networks: 0, volumes: 0, images: 0 }
    }
  }
}))
// The step's stop held by the VM: it ends only when the test lets it.
jest.mock('../../src/docker/steps', () => ({
  runContainer: () =>
    new Promise((resolve) => {
      events.push('step started')
      stepEnds = () => {
        events.push('step stopped')
        resolve({ exitCode: 130, cancelled: true })
      }
    })
}))

import { runContainerStep } from '../../src/handlers/run-container-step'
import type { HookContext } from '../../src/context'

afterAll(cleanupTempDirs)

/** containerStepCtx with what a step without state reads besides (its provider, bounds, local root). */
const ctxFor = (signal: AbortSignal, workspace = '/runner/_work/repo/repo'): HookContext => {
  const base = containerStepCtx(signal)
  return {
    ...base,
    config: {
      ...base.config,
      provider: { kind: 'ec2' },
      sync: { ...base.config.sync, toolCache: false },
      timeouts: { cleanupSeconds: 30 }
    },
    runner: { ...base.runner, workspace },
    localRoot: tempDir(),
    beatMs: 60_000
  } as unknown as HookContext
}

const started = async (): Promise<void> => {
  expect(await waitUntil(() => events.includes('step started'), 1000, 5)).toBe(true)
}

beforeEach(() => {
  events.length = 0
  refusedWorkRoot = false
  provider.releaseDestroys = true
})

/** A step without state cancelled while the VM holds its stop; in an object, so awaiting this does not wait for the step. */
async function cancelledMidStep(releaseDestroys: boolean): Promise<{ step: Promise<unknown> }> {
  provider.releaseDestroys = releaseDestroys
  const cancel = new AbortController()
  const step = runContainerStep(containerActionArgs(), null, ctxFor(cancel.signal))
  step.catch(() => undefined)
  await started()
  cancel.abort('SIGINT')
  // Released at the cancel (the event); a machine that stays leased has nothing to wait for but time.
  if (releaseDestroys) expect(await waitUntil(() => events.includes('release'), 2000, 5)).toBe(true)
  else await new Promise((r) => setTimeout(r, 200))
  return { step }
}

test('EC2: the machine is released at the cancel, while the VM still holds the step’s stop; the step ends cancelled and is released once', async () => {
  const { step } = await cancelledMidStep(true)
  expect(events).toEqual(['acquire', 'step started', 'release'])
  stepEnds()
  await expect(step).rejects.toMatchObject({ name: 'Cancelled' })
  expect(events).toEqual(['acquire', 'step started', 'release', 'step stopped'])
})

test('control: a machine other jobs use is released only after its step stopped, and its job folder removed first', async () => {
  const { step } = await cancelledMidStep(false)
  expect(events).toEqual(['acquire', 'removed by owner', 'step started'])
  stepEnds()
  await expect(step).rejects.toMatchObject({ name: 'Cancelled' })
  expect(events).toEqual(['acquire', 'removed by owner', 'step started', 'step stopped', 'removed by job', 'job folder removed', 'release'])
})

test('control: without a cancel an EC2 machine is released once, after its step', async () => {
  provider.releaseDestroys = true
  const step = runContainerStep(containerActionArgs(), null, ctxFor(new AbortController().signal))
  await started()
  stepEnds()
  await step.catch(() => undefined)
  expect(events).toEqual(['acquire', 'step started', 'step stopped', 'release'])
})

test("a repository named after a runner's own folder in _work: refused before a machine is leased", async () => {
  const step = runContainerStep(
    containerActionArgs(),
    null,
    ctxFor(new AbortController().signal, '/runner/_work/_PipelineMapping/_PipelineMapping')
  )
  await expect(step).rejects.toThrow(/^GITHUB_WORKSPACE: the repository's folder _PipelineMapping is one of the runner's own folders/)
  expect(events).toEqual([])
})

test('a failure planning the step on the machine (its own work root) gives the machine back at once, before anything runs on it', async () => {
  refusedWorkRoot = true
  provider.releaseDestroys = false
  await expect(runContainerStep(containerActionArgs(), null, ctxFor(new AbortController().signal))).rejects.toThrow(
    'the machine answered a work root the step cannot use'
  )
  // Control (the tests above): a step that runs is released only after it.
  expect(events).toEqual(['acquire', 'release'])
})
