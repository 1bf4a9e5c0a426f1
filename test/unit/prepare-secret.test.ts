// prepare_job with registry credentials: the password is registered for masking before the pulls,
// so what the VM's docker prints about it (debug lines) and the pull's failure reach the step log and
// hook.log masked. The machine, the first copy and the VM's docker are stand-ins; the handler, its
// log and the masking are the real ones.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { RemoteCommandError, formatError } from '../../src/errors'
import { PrepareJobArgsSchema } from '../../src/protocol'
import { cleanupTempDirs, tempDir } from './_helpers'
import { unitHookContext } from './_hook-context'
import { STAND_IN_PROVIDER } from './_prepare-stand-ins'

const standIns = (): typeof import('./_prepare-stand-ins') => jest.requireActual('./_prepare-stand-ins')

jest.mock('../../src/state', () => standIns().state())
jest.mock('../../src/providers/factory', () => standIns().factory())
jest.mock('../../src/session', () => standIns().session())
jest.mock('../../src/prepare/first-copy', () => ({
  ...jest.requireActual('../../src/prepare/first-copy'),
  makeJobFolder: async () => ({ externalsPresent: false }),
  startCopy: () => standIns().copiedNothing()
}))
jest.mock('../../src/sync/sync', () => standIns().sync())
jest.mock('../../src/docker/job-folder', () => standIns().jobFolder())
jest.mock('../../src/docker/remote-docker', () => ({
  ...jest.requireActual('../../src/docker/remote-docker'),
  RemoteDocker: class {
    engine = {}
    removeOwned = async (): Promise<Record<string, number>> => ({})
    imagePresent = async (): Promise<boolean> => false
    createNetwork = async (): Promise<string> => 'net'
    ensureVolume = async (): Promise<string> => 'vol'
    // What the VM's docker printed (the VM is the job's): the password, on stdout and stderr.
    ensureImage = jest.requireActual<typeof import('./_echoing-pull')>('./_echoing-pull').echoingPull
  }
}))

import { createLog } from '../../src/log'

afterAll(cleanupTempDirs)

async function prepareWith(password: string): Promise<{ out: string; file: string }> {
  const file = join(tempDir(), 'logs', 'hook.log')
  const out: string[] = []
  const log = createLog({ file, level: 'debug', debugToStepLog: true, out: (l) => void out.push(l) })
  const ctx = unitHookContext({
    provider: STAND_IN_PROVIDER,
    log,
    debug: true
  })
  const registry = { username: 'octo', password, serverUrl: 'ghcr.io' }
  const args = PrepareJobArgsSchema.parse({ container: { image: 'ghcr.io/o/a:1', registry }, services: [] })
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  const err = await prepareJob(args, ctx).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(RemoteCommandError)
  log.failure(formatError(err)) // as execute.ts's report() writes it
  await log.close()
  return { out: out.join('\n'), file: readFileSync(file, 'utf8') }
}

test("a failing pull of the job container's image logs its registry password masked (step log and hook.log)", async () => {
  const password = 'ghp_Pr3pareJobPassw0rd'
  const { out, file } = await prepareWith(password)
  // control: the pull's line and its failure were logged, in both
  expect(out).toContain('login as octo with ***')
  expect(file).toContain('login as octo with ***')
  expect(file).toContain('denied: ***')
  expect(out).not.toContain(password)
  expect(file).not.toContain(password)
  // the quoted auth is masked whole: no encoded byte of the password is left at its edges
  expect(out).toContain('unauthorized: basic *** refused')
  expect(file).toContain('unauthorized: basic *** refused')
})

test('a short password (under 8 bytes, too short for a base64 run of its own) is masked in the auth docker sends', async () => {
  const password = 'pw1234'
  const auth = Buffer.from(`octo:${password}`).toString('base64')
  const { out, file } = await prepareWith(password)
  expect(out).toContain('unauthorized: basic *** refused')
  expect(file).toContain('unauthorized: basic *** refused')
  expect(out).not.toContain(auth)
  expect(file).not.toContain(auth)
})
