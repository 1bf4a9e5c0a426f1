// What run_container_step pushes before the action runs. In a job without a job container (services
// only), the runner runs the `run:` steps and JS actions on its own host, so a checkout there must
// reach the VM before a container action mounts the workspace at /github/workspace (or builds a local
// action's Dockerfile from it). Before, only _temp and _actions went up, and the action saw the
// workspace as it was at prepare_job.
import { containerActionArgs, containerStepCtx, staticJobState } from './_helpers'

const pushed: string[][] = []
jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({
  betweenSteps: {
    push: async (_t: unknown, roots: string[]) => {
      pushed.push([...roots])
      return { files: 0, bytes: 0, ms: 0 }
    }
  }
}))
jest.mock('../../src/sync/sync', () => ({
  pull: async () => ({ files: 0, bytes: 0, deleted: 0, ms: 0 }),
  recordBase: async () => undefined
}))
jest.mock('../../src/docker/remote-docker', () => jest.requireActual('./_remote-docker-stub'))
jest.mock('../../src/docker/steps', () => ({ runContainer: async () => ({ exitCode: 0, cancelled: false }) }))

import { runContainerStep } from '../../src/handlers/run-container-step'
import type { HookState } from '../../src/state'

const ctx = containerStepCtx()

const args = containerActionArgs()

const jobState = (container: HookState['container']): HookState => ({
  ...staticJobState('/srv/rch', '/nonexistent/rch-test'),
  pullRoots: ['_temp', 'repo'],
  container,
  services: []
})

beforeEach(() => (pushed.length = 0))

test('services-only job: the repository folder is pushed before a container action, with _temp and _actions', async () => {
  const r = await runContainerStep(args, jobState(null), ctx)
  expect(r.exitCode).toBe(0)
  expect(pushed).toEqual([['_temp', '_actions', 'repo']])
})

test('control: a job with a job container pushes _temp and _actions only (its steps change the repository on the VM)', async () => {
  const r = await runContainerStep(args, jobState({ id: 'a'.repeat(64), image: 'node:20', path: '/usr/bin:/bin' }), ctx)
  expect(r.exitCode).toBe(0)
  expect(pushed).toEqual([['_temp', '_actions']])
})
