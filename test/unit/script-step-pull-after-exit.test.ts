// A step on the plain `docker exec` path whose process closes its output and then writes a file
// (`exec >log 2>&1; …; echo v=1 >> $GITHUB_OUTPUT`): an engine may end the exec's stream before the
// process exits. The pull-back used to start at the stream's end, and was made again only when the
// exit came over 1 s later, so a file written within that second was never pulled back. It now
// starts once docker reports the exit. The real handler and the real exec path run against an engine
// whose stream ends 300 ms before its process writes the file and exits; the pull (a stand-in)
// records what the VM held when it looked.
import { scriptStepCtx, staticJobState } from './_helpers'

const EXIT_AFTER_MS = 300
const vm = { written: false, inspect: 'answers' as 'answers' | 'fails' | 'lost' | 'held' }
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
      if (method === 'GET' && path.endsWith('/json')) {
        const { EngineError } = jest.requireActual('../../src/docker/engine')
        const { TransportError } = jest.requireActual('../../src/errors')
        if (vm.inspect === 'fails') throw new EngineError(500, 'exec inspect', 'the engine failed')
        if (vm.inspect === 'lost') throw new TransportError('docker API exec inspect: the connection to h is gone', 'lost')
        if (vm.inspect === 'held') throw new TransportError('docker API exec inspect: no answer within 120 s', 'timeout')
        return { status: 200, data: { Running: !vm.written, ExitCode: vm.written ? 0 : null } }
      }
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

const STEP = {
  entryPoint: 'sh',
  entryPointArgs: ['-c', 'exec >log 2>&1; sleep 0.3; echo v=1 >> "$GITHUB_OUTPUT"'],
  environmentVariables: {},
  prependPath: [],
  workingDirectory: '/__w/repo/repo'
}

beforeEach(() => {
  vm.written = false
  vm.inspect = 'answers'
  pulls.length = 0
})

test('a file written after the output closed but before the exit is seen by the pull-back, with one pull', async () => {
  const res = await runScriptStep(STEP, state, ctx)
  expect(res.exitCode).toBe(0)
  // Positive control on the stand-in: the file came only with the exit.
  expect(vm.written).toBe(true)
  expect(pulls).toEqual([{ sawFile: true }])
})

// The step ran, but its exit status could not be read: the step fails, and what it wrote still
// comes back as for any failed step (before the change above, a pull begun at the output's end did
// that), unless the connection itself is gone (the openJobRemote stand-in runs no command, so the
// connection check fails).
test('an exit status the engine fails to give: the step fails, and the pull-back still runs once', async () => {
  vm.inspect = 'fails'
  await expect(runScriptStep(STEP, state, ctx)).rejects.toThrow('the engine failed')
  expect(pulls).toHaveLength(1)
})

test('control: a connection lost while the exit status is asked for: no pull-back over it', async () => {
  vm.inspect = 'lost'
  await expect(runScriptStep(STEP, state, ctx)).rejects.toThrow('the connection to h is gone')
  expect(pulls).toHaveLength(0)
})

test('control: a call held past its bound on a connection that runs no command either: no pull-back over it', async () => {
  vm.inspect = 'held'
  await expect(runScriptStep(STEP, state, ctx)).rejects.toThrow('no answer within 120 s')
  expect(pulls).toHaveLength(0)
})
