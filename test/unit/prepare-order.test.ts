// prepare_job's order on the VM's docker: the network and the check for images go alongside the job
// folder and the removal of the runner's leftovers (the job's own things spared), while named volumes
// and containers wait for both (a leftover's volume of the same name or its published ports must be
// gone, and the folder holds the containers' bind sources). The machine, the copy and docker are
// stand-ins; the handler is the real one.
import { PrepareJobArgsSchema } from '../../src/protocol'
import { cleanupTempDirs } from './_helpers'
import { unitHookContext } from './_hook-context'
import { STAND_IN_PROVIDER } from './_prepare-stand-ins'

const standIns = (): typeof import('./_prepare-stand-ins') => jest.requireActual('./_prepare-stand-ins')

/** What reached docker and the machine, in order; and the gates the folder and the removal wait on. */
const events: string[] = []
const gate = (): { open: () => void; opened: Promise<void> } => {
  let open!: () => void
  const opened = new Promise<void>((r) => (open = r))
  return { open, opened }
}
let folder = gate()
let leftovers = gate()
/** The removal took an image an earlier job built and tagged as the service's (`postgres:16`). */
let imageRemoved = false
let copyFails = false

jest.mock('../../src/state', () => standIns().state())
jest.mock('../../src/providers/factory', () => standIns().factory())
jest.mock('../../src/session', () => standIns().session())
jest.mock('../../src/prepare/first-copy', () => ({
  ...jest.requireActual('../../src/prepare/first-copy'),
  makeJobFolder: async () => {
    events.push('folder asked')
    await folder.opened
    events.push('folder made')
    return { externalsPresent: false }
  },
  startCopy: () => {
    if (copyFails) throw new Error('the copy cannot start')
    return standIns().copiedNothing()
  }
}))
jest.mock('../../src/sync/sync', () => standIns().sync())
jest.mock('../../src/docker/job-folder', () => standIns().jobFolder())
jest.mock('../../src/docker/remote-docker', () => ({
  ...jest.requireActual('../../src/docker/remote-docker'),
  RemoteDocker: class {
    engine = {}
    removeOwned = async (_key: string, _owner: string, sparing?: string): Promise<Record<string, number>> => {
      events.push(sparing === undefined ? 'remove all of the owner (undo)' : `remove leftovers, sparing ${sparing}`)
      if (sparing !== undefined) {
        await leftovers.opened
        events.push('leftovers gone')
        return { containers: 0, networks: 0, volumes: 0, images: imageRemoved ? 1 : 0 }
      }
      return {}
    }
    imagePresent = async (): Promise<boolean> => {
      const gone = imageRemoved && events.includes('leftovers gone')
      events.push(`image check: ${gone ? 'absent' : 'present'}`)
      return !gone
    }
    createNetwork = async (name: string): Promise<string> => {
      events.push(`network ${name}`)
      return 'net'
    }
    ensureVolume = async (name: string): Promise<string> => {
      events.push(`volume ${name}`)
      return 'created'
    }
    ensureImage = async (
      image: string,
      _policy: string,
      _registry: unknown,
      _config: string,
      _log: unknown,
      _limits: unknown,
      present: boolean
    ): Promise<string> => {
      events.push(`ensure ${image}: ${present ? 'present' : 'pull'}`)
      return present ? 'present' : 'pulled'
    }
    create = async (spec: { name: string }): Promise<string> => {
      events.push(`create ${spec.name}`)
      // The test ends here: what came before is its subject.
      throw new Error('stop here')
    }
  }
}))

afterAll(cleanupTempDirs)

const args = PrepareJobArgsSchema.parse({
  container: null,
  services: [
    {
      image: 'postgres:16',
      environmentVariables: {},
      userMountVolumes: [{ sourceVolumePath: 'pgdata', targetVolumePath: '/var/lib/postgresql/data', readOnly: false }]
    }
  ]
})

/** A prepare_job on the stand-ins, its folder and removal held until opened; `signal` its cancel. */
async function started(signal?: AbortSignal): Promise<{ done: Promise<unknown> }> {
  events.length = 0
  folder = gate()
  leftovers = gate()
  const ctx = unitHookContext({
    provider: STAND_IN_PROVIDER,
    signal
  })
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  const done = prepareJob(args, ctx).catch((e: unknown) => e)
  await turns()
  return { done }
}
/** Every part that may start now gets the turns it needs. */
const turns = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}
const made = (): string[] => events.filter((e) => /^(volume|create|ensure) /.test(e))

beforeEach(() => {
  imageRemoved = false
  copyFails = false
})

test('the network goes out before the folder is made and the leftovers are gone; the volume and the containers after both', async () => {
  const { done } = await started()
  const before = [...events]
  folder.open()
  await turns()
  const afterFolder = [...events]
  leftovers.open()
  expect(((await done) as Error).message).toBe('stop here')

  expect(before).toEqual(expect.arrayContaining(['folder asked', expect.stringMatching(/^network rch-[0-9a-f]{16}$/)]))
  const jobId = before.find((e) => e.startsWith('network '))!.slice('network rch-'.length)
  expect(before).toContain(`remove leftovers, sparing ${jobId}`)
  // Nothing that a leftover or the folder could stand in the way of, until both are done.
  expect(afterFolder.filter((e) => /^(volume|create) /.test(e))).toEqual([])
  const gone = events.indexOf('leftovers gone')
  expect(events.slice(gone + 1).filter((e) => /^(volume|create) /.test(e))).toEqual(['volume pgdata', expect.stringMatching(/^create /)])
  // The undo removes all of the owner's, the job's own included.
  expect(events[events.length - 1]).toBe('remove all of the owner (undo)')
})

test("an image the leftovers' removal took (an earlier job tagged its build as the service's image) is looked for again and pulled, not created from", async () => {
  imageRemoved = true
  const { done } = await started()
  folder.open()
  leftovers.open()
  await done
  expect(events.filter((e) => e.startsWith('image check'))).toEqual(['image check: present', 'image check: absent'])
  expect(made()).toEqual(['volume pgdata', 'ensure postgres:16: pull', expect.stringMatching(/^create /)])
})

test('control: when the removal took no image, the first look stands (one check, no pull)', async () => {
  const { done } = await started()
  folder.open()
  leftovers.open()
  await done
  expect(events.filter((e) => e.startsWith('image check'))).toEqual(['image check: present'])
  expect(made().slice(0, 2)).toEqual(['volume pgdata', expect.stringMatching(/^create /)])
  expect(made().filter((e) => e.endsWith(': pull'))).toEqual([])
})

test("cancelled while the folder is made: no volume, pull or container follows, and the undo removes all of the owner's", async () => {
  const cancel = new AbortController()
  const { done } = await started(cancel.signal)
  cancel.abort('SIGINT')
  await turns()
  folder.open()
  leftovers.open()
  expect(((await done) as Error).message).toBe('cancelled by SIGINT')
  expect(made()).toEqual([])
  expect(events).toContain('remove all of the owner (undo)')
})

test('a copy that cannot start fails the job before any volume, pull or container', async () => {
  copyFails = true
  const { done } = await started()
  folder.open()
  leftovers.open()
  expect(((await done) as Error).message).toBe('the copy cannot start')
  expect(made()).toEqual([])
  expect(events[events.length - 1]).toBe('remove all of the owner (undo)')
})
