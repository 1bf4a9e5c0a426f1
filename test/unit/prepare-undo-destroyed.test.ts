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
    acquire: async () => {
      // A lease that comes in after the cancel (a connect or lease call that heeds none).
      if (acquireAfterCancel) cancel.abort('SIGINT')
      return {
        lease: { kind: 'ec2', instanceId: 'i-0123456789abcdef0', connect: {} },
        remote: failsFirst ? failingThenHanging : hangs ? hanging : machine
      }
    },
    release: async () => void seen.push(`release at ${Date.now() - cancelAt()} ms`)
  })
}))

let acquireAfterCancel = false
let hangs = false
/** The undo's own commands on the machine hang too (the job, root there, stopped its docker and sshd's shells). */
let undoHangs = false
let failsFirst = false
let cancel = new AbortController()
let cancelledAt = 0
const cancelAt = (): number => cancelledAt || Date.now()
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

/** A machine whose first command never ends (the SIGINT lands while it runs); later ones fail at once, or hang too (undoHangs). */
const hanging: Remote = {
  openExec: (command: string) => {
    if (cancel.signal.aborted) {
      seen.push('command after the cancel')
      if (undoHangs) return hangUntilTheEnd()
      return Promise.reject(new TransportError(`no answer to ${command.slice(0, 20)}`, 'lost'))
    }
    seen.push('command')
    cancelledAt = Date.now()
    setImmediate(() => cancel.abort('SIGINT'))
    // Ends with the test (afterEach): the calls waiting on it keep timers of their own.
    return new Promise((_resolve, reject) => (endHung = () => reject(new TransportError('the test ended', 'lost'))))
  },
  openSocket: () => (undoHangs && cancel.signal.aborted ? hangUntilTheEnd() : Promise.reject(new TransportError('no docker', 'lost'))),
  close: () => undefined
}

/**
 * A machine where every command fails at once (no cancel), so that prepare_job undoes; the undo's
 * removal of the job folder then hangs, and the runner's cancel comes while it runs.
 */
const failingThenHanging: Remote = {
  openExec: (command: string) => {
    if (!/--entrypoint rm/.test(command) || cancel.signal.aborted) {
      seen.push(cancel.signal.aborted ? 'command after the cancel' : 'command')
      return Promise.reject(new Error('this machine fails every command'))
    }
    seen.push('the undo removes the job folder')
    cancelledAt = Date.now()
    cancel.abort('SIGINT')
    return hangUntilTheEnd()
  },
  openSocket: () => Promise.reject(new Error('no docker')),
  close: () => undefined
}

let endHung = (): void => undefined
/** The undo's hung calls, failed when the test ends (the calls waiting on them keep timers of their own). */
const undoHung: (() => void)[] = []
const hangUntilTheEnd = <T>(): Promise<T> =>
  new Promise<T>((_resolve, reject) => undoHung.push(() => reject(new TransportError('the test ended', 'lost'))))
afterEach(() => {
  endHung()
  for (const end of undoHung.splice(0)) end()
})
afterAll(cleanupTempDirs)

/** A fresh job (its own cancel) on a machine whose release does or does not destroy it. */
function context(
  releaseDestroys: boolean,
  o: { acquireAfterCancel?: boolean; hangs?: boolean; undoHangs?: boolean; failsFirst?: boolean } = {}
): HookContext {
  destroys = releaseDestroys
  acquireAfterCancel = o.acquireAfterCancel ?? false
  hangs = o.hangs ?? false
  undoHangs = o.undoHangs ?? false
  failsFirst = o.failsFirst ?? false
  cancel = new AbortController()
  cancelledAt = 0
  seen.length = 0
  return unitHookContext({ provider: UNIT_EC2, signal: cancel.signal })
}

const args = PrepareJobArgsSchema.parse({ container: null, services: [{ image: 'redis:7', environmentVariables: {} }] })

test('cancelled on an EC2 instance: the undo terminates it at once, before (and instead of) tidying it', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(true))).rejects.toThrow('cancelled by SIGINT')
  expect(seen.slice(seen.indexOf('command') + 1)).toEqual([expect.stringMatching(/^release at /)])
})

test('positive control: on a machine its release keeps (a static host), the job folder is removed first, then the slot released', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(false))).rejects.toThrow('cancelled by SIGINT')
  expect(seen.slice(seen.indexOf('command') + 1)).toEqual(['command after the cancel', expect.stringMatching(/^release at /)])
})

test('a lease that came in after the cancel: nothing is started on it, the undo gives it back', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(true, { acquireAfterCancel: true }))).rejects.toThrow('cancelled by SIGINT')
  expect(seen).toEqual([expect.stringMatching(/^release at /)])
})

// The runner's SIGKILL comes 10 s after its SIGINT: where the release destroys the machine, the undo
// does not first wait cancelGraceSeconds + 5 s for work still running on it.
test.each([
  ['an EC2 instance: released within about a second', true, (ms: number) => ms < 2500],
  ['control, a static host: the work still running is waited for first', false, (ms: number) => ms >= 6000]
])(
  'cancelled while a command on the machine hangs, on %s',
  async (_what, releaseDestroys, inTime) => {
    const { prepareJob } = await import('../../src/handlers/prepare-job')
    await expect(prepareJob(args, context(releaseDestroys, { hangs: true }))).rejects.toThrow('cancelled by SIGINT')
    const release = seen.find((s) => s.startsWith('release at '))!
    expect([release, inTime(Number(release.split(' ')[2]))]).toEqual([release, true])
  },
  30_000
)

// On a machine its release keeps, the undo tidies it first; each of those commands was bounded only
// by timeouts.cleanupSeconds (600 s), so a VM whose commands hang held the release past the kill and
// the host's slot stayed leased. The release now starts by 7.5 s after the cancel (the runner's SIGTERM).
test('a static host whose undo commands hang too: the slot is still released before the runner kills the hook', async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  await expect(prepareJob(args, context(false, { hangs: true, undoHangs: true }))).rejects.toThrow('cancelled by SIGINT')
  const release = seen.find((s) => s.startsWith('release at '))
  expect(release).toBeDefined()
  const ms = Number(release!.split(' ')[2])
  // Control (the test above): the work under way was waited for first; here the tidying was tried, then cut.
  expect(seen).toContain('command after the cancel')
  expect([ms >= 7000, ms < 9000]).toEqual([true, true])
}, 30_000)

// The same when prepare_job failed on its own and the runner's cancel comes during the undo: the part
// then running is cut when the cancel's time runs out, not after timeouts.cleanupSeconds.
test("a cancel that comes during the undo of a failed prepare_job: the slot is still released before the runner's kill", async () => {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  // Its own failure, said beside the cancel (markIfBeforeCancel).
  await expect(prepareJob(args, context(false, { failsFirst: true }))).rejects.toThrow()
  // The cancel came during the undo (of the folder the failed creation left), after prepare_job had failed.
  expect(seen).toContain('the undo removes the job folder')
  expect(seen.indexOf('command')).toBeLessThan(seen.indexOf('the undo removes the job folder'))
  const release = seen.find((s) => s.startsWith('release at '))
  expect(release).toBeDefined()
  const ms = Number(release!.split(' ')[2])
  expect([ms >= 7000, ms < 9000]).toEqual([true, true])
}, 30_000)
