// Stand-ins for a prepare_job unit test that runs the real handler on no machine: each returns the
// module a jest.mock factory gives in place of the real one (jest.mock's factory may not refer to
// imports, so the test file asks for these with jest.requireActual).
import type { Remote } from '../../src/remote/remote'

/** A machine that runs nothing (the docker layer is a stand-in of its own in each test). */
const machine: Remote = {
  openExec: () => Promise.reject(new Error('no remote commands here')),
  openSocket: () => Promise.reject(new Error('no sockets here')),
  close: () => undefined
}
const connect = { host: '192.0.2.10', port: 22, user: 'runner', identityFile: '/k', knownHostsFile: '/kh' }

/** The configuration's provider section for that machine. */
export const STAND_IN_PROVIDER = {
  kind: 'static',
  hosts: [{ host: connect.host, user: connect.user, identityFile: connect.identityFile, knownHostsFile: connect.knownHostsFile }]
}

// The stand-in lease is not one a real provider would make for this config: the check of the
// state prepare_job hands over (unit/state.test.ts, adversarial/hostile-engine.test.ts) is not these tests' subject.
export const state = (): object => ({ ...jest.requireActual('../../src/state'), ownStateIssues: () => [] })

export const factory = (): object => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({ kind: 'static', releaseDestroys: false, describe: () => 'the host' })
})

/** A static slot leased on the machine at once, given back without a word, and no agent. */
export const session = (): object => ({
  ...jest.requireActual('../../src/session'),
  acquireMachineDirect: async () => ({ lease: { kind: 'static', host: 'h', slot: 'slot-1', connect }, remote: machine }),
  releaseMachine: async () => undefined,
  startAgentInBackground: () => null
})

/** No sync base is recorded. */
export const sync = (): object => ({ ...jest.requireActual('../../src/sync/sync'), recordBase: async () => undefined })

/** The job folder's removal does nothing. */
export const jobFolder = (): object => ({ ...jest.requireActual('../../src/docker/job-folder'), removeJobFolder: async () => undefined })

/** What startCopy gives for a copy of nothing that has ended (externals absent). */
export const copiedNothing = (): object => ({
  externals: Promise.resolve('absent'),
  copied: Promise.resolve({ files: 0, bytes: 0, ms: 0, via: 'none', roots: [], externals: 'absent' })
})
