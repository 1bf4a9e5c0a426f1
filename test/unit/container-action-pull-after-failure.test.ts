// A container action whose end the hook could not learn (its attach stream or wait failed) while
// the connection to the VM still works: what it wrote (file commands, the workspace) comes back, as
// for a script step that failed the same way. Not after a cancel, nor over a connection found gone.
import { containerActionArgs, containerStepCtx, staticJobState } from './_helpers'

const pulls: string[] = []
let failure: () => Error | null = () => null
jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({ betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }) } }))
let pullFails = false
jest.mock('../../src/sync/sync', () => ({
  pull: async (_t: unknown, roots: string[]) => {
    pulls.push(roots.join(','))
    if (pullFails) throw new Error('rsync: connection unexpectedly closed')
    return { files: 0, bytes: 0, deleted: 0, ms: 0 }
  },
  recordBase: async () => undefined
}))
jest.mock('../../src/docker/remote-docker', () => jest.requireActual('./_remote-docker-stub'))
/** Whether the failure comes after the start was asked for (the container may have run), or before (a refused create). */
let failsAfterStart = true
jest.mock('../../src/docker/steps', () => ({
  runContainer: async (_e: unknown, _s: unknown, _o: unknown, _sig: unknown, starting: () => void) => {
    const e = failure()
    if (e && !failsAfterStart) throw e
    starting()
    if (e) throw e
    return { exitCode: 0, cancelled: false }
  }
}))
// The connection check after a lost stream: the VM still answers unless the test says it is gone.
let vmAnswers = true
jest.mock('../../src/remote/remote', () => ({
  ...jest.requireActual('../../src/remote/remote'),
  blameOf: async (err: unknown) => {
    const { TransportError } = jest.requireActual<typeof import('../../src/errors')>('../../src/errors')
    if (err instanceof TransportError && err.kind === 'lost' && vmAnswers) return new TransportError(err.message, 'stream')
    return err
  }
}))

import { runContainerStep } from '../../src/handlers/run-container-step'
import { EngineError } from '../../src/docker/engine'
import { Cancelled, TransportError } from '../../src/errors'
import type { HookState } from '../../src/state'

const state: HookState = {
  ...staticJobState('/srv/rch', '/nonexistent/rch-test'),
  pullRoots: ['_temp', 'repo'],
  container: { id: 'a'.repeat(64), image: 'node:20', path: '/usr/bin:/bin' },
  services: []
}
const run = (signal = new AbortController().signal) => runContainerStep(containerActionArgs(), state, containerStepCtx(signal))

beforeEach(() => {
  pulls.length = 0
  vmAnswers = true
  pullFails = false
  failsAfterStart = true
})

test.each([
  [
    'the attach stream dropped, the VM still answering',
    () => new TransportError('the attach stream of c ended early', 'lost'),
    { kind: 'stream', message: 'the attach stream of c ended early' }
  ],
  ["the engine failed the container's wait", () => new EngineError(500, 'wait', 'internal error'), { status: 500 }]
])('%s: the step fails with that error, and what the action wrote comes back first', async (_what, err, thrown) => {
  failure = err
  await expect(run()).rejects.toMatchObject(thrown)
  expect(pulls).toEqual(['_temp,repo'])
})

test("a pull-back that fails too does not hide the step's own error", async () => {
  pullFails = true
  failure = () => new EngineError(500, 'wait', 'internal error')
  await expect(run()).rejects.toMatchObject({ status: 500 })
  expect(pulls).toEqual(['_temp,repo'])
})

test('control: a container that never started (its create refused) brings nothing back', async () => {
  failsAfterStart = false
  failure = () => new EngineError(404, 'container create', 'No such image: x')
  await expect(run()).rejects.toMatchObject({ status: 404 })
  expect(pulls).toEqual([])
})

test('control: a connection found gone brings nothing back (no pull over it), and the error is the lost connection', async () => {
  vmAnswers = false
  failure = () => new TransportError('the connection to h is gone', 'lost')
  await expect(run()).rejects.toMatchObject({ kind: 'lost' })
  expect(pulls).toEqual([])
})

test('control: a cancel brings nothing back', async () => {
  const cancel = new AbortController()
  cancel.abort('SIGINT')
  failure = () => Cancelled.by(cancel.signal)
  await expect(run(cancel.signal)).rejects.toBeInstanceOf(Cancelled)
  expect(pulls).toEqual([])
})

test('control: an action that ends normally is pulled back once', async () => {
  failure = () => null
  await expect(run()).resolves.toEqual({ exitCode: 0 })
  expect(pulls).toEqual(['_temp,repo'])
})
