// prepare_job's order on the VM's docker: the network and the check for images go alongside the job
// folder and the removal of the runner's leftovers (the job's own things spared), while named volumes
// and containers wait for both (a leftover's volume of the same name or its published ports must be
// gone, and the folder holds the containers' bind sources). The machine, the copy and docker are
// stand-ins; the handler is the real one.
import { PrepareJobArgsSchema } from '../../src/protocol'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs } from './_helpers'
import { unitHookContext } from './_hook-context'

const machine: Remote = {
  openExec: () => Promise.reject(new Error('no remote commands here')),
  openSocket: () => Promise.reject(new Error('no sockets here')),
  close: () => undefined
}
const connect = { host: '192.0.2.10', port: 22, user: 'runner', identityFile: '/k', knownHostsFile: '/kh' }

/** What reached docker and the machine, in order; and the gates the folder and the removal wait on. */
const events: string[] = []
const gate = (): { open: () => void; opened: Promise<void> } => {
  let open!: () => void
  const opened = new Promise<void>((r) => (open = r))
  return { open, opened }
}
let folder = gate()
let leftovers = gate()

jest.mock('../../src/state', () => ({ ...jest.requireActual('../../src/state'), ownStateIssues: () => [] }))
jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({ kind: 'static', releaseDestroys: false, describe: () => 'the host' })
}))
jest.mock('../../src/session', () => ({
  ...jest.requireActual('../../src/session'),
  acquireMachineDirect: async () => ({ lease: { kind: 'static', host: 'h', slot: 'slot-1', connect }, remote: machine }),
  releaseMachine: async () => undefined,
  startAgentInBackground: () => null
}))
jest.mock('../../src/prepare/first-copy', () => ({
  ...jest.requireActual('../../src/prepare/first-copy'),
  makeJobFolder: async () => {
    events.push('folder asked')
    await folder.opened
    events.push('folder made')
    return { externalsPresent: false }
  },
  startCopy: () => ({
    externals: Promise.resolve('absent'),
    copied: Promise.resolve({ files: 0, bytes: 0, ms: 0, via: 'none', roots: [], externals: 'absent' })
  })
}))
jest.mock('../../src/sync/sync', () => ({ ...jest.requireActual('../../src/sync/sync'), recordBase: async () => undefined }))
jest.mock('../../src/docker/job-folder', () => ({
  ...jest.requireActual('../../src/docker/job-folder'),
  removeJobFolder: async () => undefined
}))
jest.mock('../../src/docker/remote-docker', () => ({
  ...jest.requireActual('../../src/docker/remote-docker'),
  RemoteDocker: class {
    engine = {}
    removeOwned = async (_key: string, _owner: string, sparing?: string): Promise<Record<string, number>> => {
      events.push(sparing === undefined ? 'remove all of the owner (undo)' : `remove leftovers, sparing ${sparing}`)
      if (sparing !== undefined) {
        await leftovers.opened
        events.push('leftovers gone')
      }
      return {}
    }
    imagePresent = async (): Promise<boolean> => true
    createNetwork = async (name: string): Promise<string> => {
      events.push(`network ${name}`)
      return 'net'
    }
    ensureVolume = async (name: string): Promise<string> => {
      events.push(`volume ${name}`)
      return 'created'
    }
    ensureImage = async (): Promise<string> => 'present'
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

test('the network goes out before the folder is made and the leftovers are gone; the volume and the containers after both', async () => {
  events.length = 0
  folder = gate()
  leftovers = gate()
  const ctx = unitHookContext({
    provider: { kind: 'static', hosts: [{ host: '192.0.2.10', user: 'runner', identityFile: '/k', knownHostsFile: '/kh' }] }
  })
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  const done = prepareJob(args, ctx).catch((e: unknown) => e)
  // Give every part that may start now the turns it needs.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  const before = [...events]
  folder.open()
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
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
