// A step on the plain `docker exec` path whose process closes its output and then writes a file
// (`exec >log 2>&1; …; echo v=1 >> $GITHUB_OUTPUT`): an engine may end the exec's stream before the
// process exits. The pull-back used to start at the stream's end, and was made again only when the
// exit came over 1 s later, so a file written within that second was never pulled back. It now
// starts once docker reports the exit. The real handler and the real exec path run against an engine
// whose stream ends 300 ms before its process writes the file and exits; the pull (a stand-in)
// records what the VM held when it looked.
import { scriptStepCtx, staticJobState } from './_helpers'

const EXIT_AFTER_MS = 300
const vm = { written: false }
const pulls: { sawFile: boolean }[] = []

jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({
  betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }), arm: () => undefined, disarm: () => undefined }
}))
jest.mock('../../src/sync/sync', () => ({
  pull: async () => {
    pulls.push({ sawFile: vm.written })
    return { files: 0, bytes: 0, deleted: 0, ms: 0, listed: 'all' }
  }
}))
jest.mock('../../src/docker/engine', () => ({
  ...jest.requireActual('../../src/docker/engine'),
  // The stream ends at once; the process writes its file and exits EXIT_AFTER_MS later.
  Engine: class {
    async call(method: string, path: string): Promise<{ status: number; data: unknown }> {
      if (method === 'GET' && path.endsWith('/json'))
        return { status: 200, data: { Running: !vm.written, ExitCode: vm.written ? 0 : null } }
      return { status: 201, data: { Id: 'e'.repeat(64) } }
    }
    async hijack(): Promise<{ ended: Promise<void>; input: null; close: () => void }> {
      setTimeout(() => (vm.written = true), EXIT_AFTER_MS)
      return { ended: Promise.resolve(), input: null, close: () => undefined }
    }
  }
}))

import { runScriptStep } from '../../src/handlers/run-script-step'
import type { HookState } from '../../src/state'

const ctx = scriptStepCtx()

const state = {
  ...staticJobState('/srv/rch', '/nonexistent/rch-test'),
  container: { id: 'a'.repeat(64), image: 'node:20', path: '/usr/bin:/bin' }
} as HookState

test('a file written after the output closed but before the exit is seen by the pull-back, with one pull', async () => {
  const res = await runScriptStep(
    {
      entryPoint: 'sh',
      entryPointArgs: ['-c', 'exec >log 2>&1; sleep 0.3; echo v=1 >> "$GITHUB_OUTPUT"'],
      environmentVariables: {},
      prependPath: [],
      workingDirectory: '/__w/repo/repo'
    },
    state,
    ctx
  )
  expect(res.exitCode).toBe(0)
  // Positive control on the stand-in: the file came only with the exit.
  expect(vm.written).toBe(true)
  expect(pulls).toEqual([{ sawFile: true }])
})
