// A container action's note (left-running.ts) stays while its container may still run: after a
// cancel whose removal the VM did not confirm, the job's next step (an `if: always()` step, a post
// step) must find it and remove the container.
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, containerActionArgs, containerStepCtx, staticJobState, tempDir } from './_helpers'

let ends: { exitCode: number; cancelled: boolean; stop?: 'stopped' | 'unconfirmed' } = { exitCode: 0, cancelled: false }
jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({ betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }) } }))
jest.mock('../../src/sync/sync', () => ({
  pull: async () => ({ files: 0, bytes: 0, deleted: 0, ms: 0 }),
  recordBase: async () => undefined
}))
jest.mock('../../src/docker/remote-docker', () => jest.requireActual('./_remote-docker-stub'))
jest.mock('../../src/docker/steps', () => ({ runContainer: async () => ends }))

import { runContainerStep } from '../../src/handlers/run-container-step'
import type { HookState } from '../../src/state'

afterAll(cleanupTempDirs)

const notes = (dir: string): string[] => (existsSync(join(dir, 'steps')) ? readdirSync(join(dir, 'steps')) : [])

async function run(end: typeof ends): Promise<string[]> {
  const dir = tempDir()
  ends = end
  const state = { ...staticJobState('/srv/rch', dir), container: null, services: [] } as unknown as HookState
  await runContainerStep(containerActionArgs(), state, containerStepCtx()).catch(() => undefined)
  return notes(dir)
}

test('a cancel whose removal the VM did not confirm keeps the note', async () => {
  expect(await run({ exitCode: 130, cancelled: true, stop: 'unconfirmed' })).toEqual([
    expect.stringMatching(/^action-rch-0123456789abcdef-step-[0-9a-f]{6}$/)
  ])
})

test('controls: a cancel whose container was removed, and an action that ended, leave none', async () => {
  expect(await run({ exitCode: 130, cancelled: true, stop: 'stopped' })).toEqual([])
  expect(await run({ exitCode: 3, cancelled: false })).toEqual([])
})
