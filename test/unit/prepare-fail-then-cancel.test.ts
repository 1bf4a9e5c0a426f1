// A prepare_job that failed on its own, then was cancelled while its undo ran (the runner's SIGINT
// came while the machine was being given back): the cancel's note and exit code, and still the
// failure's own error line, which says why the job failed. Before, the cancel hid it.
import { HookError } from '../../src/errors'
import { report } from '../../src/execute'
import type { HookContext } from '../../src/context'
import { PrepareJobArgsSchema } from '../../src/protocol'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs } from './_helpers'
import { unitHookContext } from './_hook-context'
import { STAND_IN_PROVIDER } from './_prepare-stand-ins'

const standIns = (): typeof import('./_prepare-stand-ins') => jest.requireActual('./_prepare-stand-ins')

jest.mock('../../src/state', () => standIns().state())
jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({
    kind: 'static',
    releaseDestroys: false,
    describe: () => 'the machine',
    acquire: async () => ({ lease: { kind: 'static', index: 0, slot: 0, connect: {} }, remote: machine }),
    release: async () => {
      // The SIGINT lands while the undo gives the machine back.
      if (cancelInUndo) cancel.abort('SIGINT')
    }
  })
}))

let cancel = new AbortController()
let cancelInUndo = true
/** The machine: making the job folder fails (its disk is full), as does every later command. */
const machine: Remote = {
  openExec: () => Promise.reject(new HookError('making the job folder failed: No space left on device')),
  openSocket: () => Promise.reject(new HookError('no docker')),
  close: () => undefined
}

afterAll(cleanupTempDirs)

const recorder = () => {
  const chunks: string[] = []
  return { text: () => chunks.join(''), write: (c: Buffer | string) => (chunks.push(c.toString()), true), once: () => undefined }
}

const args = PrepareJobArgsSchema.parse({ container: null, services: [{ image: 'redis:7', environmentVariables: {} }] })

/** prepare_job on that machine, reported as the hook reports a failed command. */
async function prepared(o: { cancelInUndo: boolean }): Promise<{ code: number; stdout: string; stderr: string; failures: string[] }> {
  cancel = new AbortController()
  cancelInUndo = o.cancelInUndo
  const failures: string[] = []
  const ctx: HookContext = unitHookContext({ provider: STAND_IN_PROVIDER, signal: cancel.signal })
  const log = { ...ctx.log, mask: (s: string) => s, debugEnabled: false, failure: (m: string) => void failures.push(m) }
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  const err = await prepareJob(args, { ...ctx, log }).then(
    () => new Error('prepare_job succeeded'),
    (e: unknown) => e
  )
  const [stdout, stderr] = [recorder(), recorder()]
  const code = report(err, { signal: cancel.signal, stdout, stderr }, log)
  return { code, stdout: stdout.text(), stderr: stderr.text(), failures }
}

test('a failure, then a cancel during its undo: the cancel ends the command, and the failure is still said', async () => {
  const r = await prepared({ cancelInUndo: true })
  expect(cancel.signal.aborted).toBe(true)
  expect(r.code).toBe(130)
  expect(r.stderr).toMatch(/^\[remote-hooks\] cancelled by SIGINT/)
  expect(r.stdout).toBe('::error::making the job folder failed: No space left on device\n')
  expect(r.failures).toEqual(['making the job folder failed: No space left on device'])
})

test('control: the same failure without a cancel is said alone, with its own exit code', async () => {
  const r = await prepared({ cancelInUndo: false })
  expect([r.code, r.stdout, r.stderr]).toEqual([70, '::error::making the job folder failed: No space left on device\n', ''])
})

test('control: a failure that came after the cancel (a command the cancel stopped) is the cancel alone', () => {
  const ac = new AbortController()
  ac.abort('SIGINT')
  const [stdout, stderr] = [recorder(), recorder()]
  const code = report(new HookError('the remote command was stopped'), { signal: ac.signal, stdout, stderr })
  expect([code, stdout.text(), stderr.text()]).toEqual([130, '', '[remote-hooks] cancelled by SIGINT\n'])
})
