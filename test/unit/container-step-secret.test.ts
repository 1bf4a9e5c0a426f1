// run_container_step with registry credentials: the password is registered for masking before the
// pull, so the pull's lines (debug) and its failure reach the step log and hook.log masked, as in
// prepare_job. Before, it was registered only after a pull that succeeded.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, staticJobState, tempDir } from './_helpers'
import { RemoteCommandError, formatError } from '../../src/errors'

jest.mock('../../src/session', () => ({
  openJobRemote: async () => ({ close: () => undefined }),
  keepOf: () => () => undefined
}))
jest.mock('../../src/sync/early-push', () => ({ betweenSteps: { push: async () => ({ files: 0, bytes: 0, ms: 0 }) } }))
jest.mock('../../src/docker/remote-docker', () => ({
  RemoteDocker: class {
    engine = {}
    imagePresent = async (): Promise<boolean> => false
    // What the VM's docker printed (the VM is the job's): the password, on stdout and stderr.
    ensureImage = jest.requireActual<typeof import('./_echoing-pull')>('./_echoing-pull').echoingPull
  }
}))

import { runContainerStep } from '../../src/handlers/run-container-step'
import { createLog } from '../../src/log'
import type { HookContext } from '../../src/context'
import type { ContainerArgs } from '../../src/protocol'

afterAll(cleanupTempDirs)

test('a failing pull of a container action logs its registry password masked (step log and hook.log)', async () => {
  const password = 'ghp_R3gistryPassw0rd'
  const dir = tempDir()
  const file = join(dir, 'logs', 'hook.log')
  const out: string[] = []
  const log = createLog({ file, level: 'debug', debugToStepLog: true, out: (l) => void out.push(l) })
  const ctx = {
    config: {
      images: { pullPolicy: 'missing', pullTimeoutSeconds: 60 },
      remote: { dockerSocket: '/var/run/docker.sock' },
      sync: { excludeFromPullBack: [], limits: {}, deltaListing: false }
    },
    runner: { runnerName: 'r' },
    log,
    signal: new AbortController().signal
  } as unknown as HookContext
  const state = staticJobState('/w', dir)
  const args = {
    image: 'ghcr.io/o/a:1',
    dockerfile: null,
    entryPointArgs: [],
    entryPoint: null,
    workingDirectory: null,
    createOptions: null,
    registry: { username: 'octo', password, serverUrl: 'ghcr.io' },
    environmentVariables: {},
    portMappings: [],
    systemMountVolumes: [],
    userMountVolumes: [],
    contextName: null
  } as ContainerArgs
  const err = await runContainerStep(args, state, ctx).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(RemoteCommandError)
  log.failure(formatError(err)) // as execute.ts's report() writes it
  await log.close()
  const text = readFileSync(file, 'utf8')
  // control: the pull's line and its failure were logged
  expect(out.join('\n')).toContain('login as octo with ***')
  expect(text).toContain('denied: ***')
  expect(out.join('\n')).not.toContain(password)
  expect(text).not.toContain(password)
  // the quoted auth is masked whole: no encoded byte of the password is left at its edges
  expect(out.join('\n')).toContain('unauthorized: basic *** refused')
  expect(text).toContain('unauthorized: basic *** refused')
})
