// A prepare_job cancelled on a machine that its release destroys (EC2): the runner kills the hook
// 10 s after its SIGINT, so the undo must not spend that time removing containers and folders from
// a machine it is about to terminate (a slow docker there held the terminate back past the kill,
// and the instance ran on until maxLifetimeMinutes). The release comes first, and alone.
import { TransportError } from '../../src/errors'
import type { HookContext } from '../../src/context'
import { PrepareJobArgsSchema } from '../../src/protocol'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs } from './_helpers'
import { UNIT_EC2, unitHookContext } from './_hook-context'

/** The provider the handler gets: what it does, and every remote call, in order. */
const seen: string[] = []
let destroys = true
// The stand-in lease is not one a real provider would make for this config: the check of the
// state prepare_job hands over (tested in unit/state.test.ts and adversarial/hostile-engine.test.ts) is not this file's subject.
jest.mock('../../src/state', () => ({ ...jest.requireActual('../../src/state'), ownStateIssues: () => [] }))
jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({
    kind: 'ec2',
    get releaseDestroys() {
      return destroys
    },
    describe: () => 'the machine',
    acquire: async () => ({ lease: { kind: 'ec2', instanceId: 'i-0123456789abcdef0', connect: {} }, remote: machine }),
    release: async () => void seen.push('release')
  })
}))

let cancel = new AbortController()
/** The machine: each command or socket fails (its docker is gone); creating the job folder is when the SIGINT lands. */
const machine: Remote = {
  openExec: async (command: string) => {
    seen.push(cancel.signal.aborted ? 'command after the cancel' : 'command')
    if (!cancel.signal.aborted) cancel.abort('SIGINT')
    throw new TransportError(`no answer to ${command.slice(0, 20)}`, 'lost')
  },
  openSocket: async () => {
    seen.push(cancel.signal.aborted ? 'docker after the cancel' : 'docker')
    throw new TransportError('no docker', 'lost')
  },
  close: () => undefined
}

afterAll(cleanupTempDirs)

/** A fresh job (its own cancel) on a machine whose release does or does not destroy it. */
function context(releaseDestroys: boolean): HookContext {
  destroys = releaseDestroys
  cancel = new AbortController()
  seen.length = 0
  return unitHookContext({ provider: UNIT_EC2, signal: cancel.signal })
}

const args = PrepareJobArgsSchema.parse({ container: null, services: [{ image: 'redis:7', environmentVariables: {} }] })

test('cancelled on an EC2 instance: the undo terminates it at once, before (and instead of) tidying it', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(true))).rejects.toThrow('cancelled by SIGINT')
  expect(seen.slice(seen.indexOf('command') + 1)).toEqual(['release'])
})

test('positive control: on a machine its release keeps (a static host), the job folder is removed first, then the slot released', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(false))).rejects.toThrow('cancelled by SIGINT')
  expect(seen.slice(seen.indexOf('command') + 1)).toEqual(['command after the cancel', 'release'])
})
