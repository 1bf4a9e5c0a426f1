// run_script_step's PATH, as the runner's own `docker exec` (ContainerStepHost) sets it: the job's
// GITHUB_PATH entries (prependPath) in front of the container's PATH; without any, a PATH the
// workflow's `env:` sets reaches the step as it is. Before, the hook always replaced it with the
// container's PATH, so `env: PATH: …` was lost in every step of a job that never wrote GITHUB_PATH.
import { scriptStepCtx, staticJobState } from './_helpers'

const envs: Record<string, string>[] = []
jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({
  betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }), arm: () => undefined, disarm: () => undefined }
}))
jest.mock('../../src/sync/sync', () => ({ pull: async () => ({ files: 0, bytes: 0, deleted: 0, ms: 0, listed: 'all' }) }))
jest.mock('../../src/docker/engine', () => ({ Engine: class {} }))
jest.mock('../../src/docker/steps', () => ({
  createExec: async (_e: unknown, spec: { env: Record<string, string> }) => {
    envs.push(spec.env)
    return 'exec-id'
  },
  execStep: async () => ({ exitCode: 0, cancelled: false }),
  shellStep: async () => {
    throw new Error('not used')
  }
}))

import { runScriptStep } from '../../src/handlers/run-script-step'
import type { ScriptStepArgs } from '../../src/protocol'
import type { HookState } from '../../src/state'

const ctx = scriptStepCtx()

const CONTAINER_PATH = '/usr/local/bin:/usr/bin:/bin'
const state = {
  ...staticJobState('/srv/rch', '/nonexistent/rch-test'),
  container: { id: 'a'.repeat(64), image: 'node:20', path: CONTAINER_PATH }
} as HookState

const step = (environmentVariables: Record<string, string>, prependPath: string[]): ScriptStepArgs => ({
  entryPointArgs: ['-e', '/__w/_temp/x.sh'],
  entryPoint: 'sh',
  environmentVariables,
  prependPath,
  workingDirectory: '/__w/repo/repo'
})

const pathOf = async (env: Record<string, string>, prependPath: string[]): Promise<string | undefined> => {
  envs.length = 0
  expect((await runScriptStep(step(env, prependPath), state, ctx)).exitCode).toBe(0)
  expect(envs).toHaveLength(1)
  return envs[0].PATH
}

test("a PATH the workflow's env sets reaches the step when nothing was added to GITHUB_PATH", async () => {
  expect(await pathOf({ PATH: '/opt/tools/bin:/usr/bin:/bin', CI: 'true' }, [])).toBe('/opt/tools/bin:/usr/bin:/bin')
})

test("GITHUB_PATH entries go in front of the container's PATH, also over a PATH in the env (as the runner's docker exec)", async () => {
  expect(await pathOf({ PATH: '/opt/tools/bin' }, ['/__w/_tool/node/20/x64/bin', '/opt/second'])).toBe(
    `/__w/_tool/node/20/x64/bin:/opt/second:${CONTAINER_PATH}`
  )
})

test("control: neither gives the container's own PATH", async () => {
  expect(await pathOf({ CI: 'true' }, [])).toBe(CONTAINER_PATH)
})
