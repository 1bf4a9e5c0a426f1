// run_container_step's mounts are checked as prepare_job's before anything starts: a mount over `/`
// or two at one path with different sources are refused naming the field, before the job's machine
// is connected to or (without prepare_job) leased. Before, docker refused them at create, after the
// lease, the job folder and the first copy.
const reached: string[] = []
jest.mock('../../src/session', () => ({
  openJobRemote: async () => {
    reached.push('connect')
    throw new Error('connected')
  },
  acquireMachine: async () => {
    reached.push('lease')
    throw new Error('leased')
  },
  jobLocalDir: () => '/nonexistent/rch-test',
  keepOf: () => () => undefined,
  releaseMachine: async () => undefined,
  stopAgent: async () => undefined
}))
jest.mock('../../src/providers/factory', () => ({ ...jest.requireActual('../../src/providers/factory'), providerFor: () => ({}) }))

import { planStep, runContainerStep } from '../../src/handlers/run-container-step'
import { layoutOf } from '../../src/job'
import { InputError } from '../../src/errors'
import type { HookContext } from '../../src/context'
import { containerActionArgs, runnerMount, staticJobState } from './_helpers'
import type { ContainerArgs, Mount } from '../../src/protocol'

const ctx = {
  config: { remote: { workRoot: '/srv/rch', dockerSocket: '/var/run/docker.sock' } },
  runner: { runnerName: 'r', workDir: '/runner/_work', workspace: '/runner/_work/repo/repo', github: {} },
  log: { group: (_title: string, fn: () => unknown) => fn(), warn: () => undefined }
} as unknown as HookContext

const state = staticJobState('/srv/rch', '/nonexistent/rch-test')

const mount = runnerMount
const args = (user: Mount[]): ContainerArgs => containerActionArgs({ userMountVolumes: user })

beforeEach(() => (reached.length = 0))

test.each([
  ['a mount over /', [mount('data1', '/')], 'args.userMountVolumes.0.targetVolumePath'],
  ['a second mount at a path the runner mounts', [mount('data1', '/github/workspace/')], 'args.systemMountVolumes.0.targetVolumePath'],
  ['two mounts at one path, one read-only', [mount('data1', '/d'), mount('data1', '/d', true)], 'args.userMountVolumes.1.targetVolumePath']
])('%s is refused naming the field, with and without state, before any machine is reached', async (_what, user, field) => {
  for (const s of [state, null]) {
    const err = await runContainerStep(args(user), s, ctx).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as Error).message).toMatch(new RegExp(`^${field.replace(/\./g, '\\.')}: `))
    expect((err as Error).message).not.toMatch(/\n/)
  }
  expect(reached).toEqual([])
})

test('control: distinct mounts, and one given twice as it is, go on to the machine', async () => {
  const user = [mount('data1', '/d'), mount('/runner/_work/repo/repo', '/github/workspace'), mount(null, '/cache')]
  await expect(runContainerStep(args(user), state, ctx)).rejects.toThrow('connected')
  await expect(runContainerStep(args(user), null, ctx)).rejects.toThrow('leased')
  expect(reached).toEqual(['connect', 'lease'])
})

test("a container action's mount into the externals copy is read-only and a bind docker will not make, as prepare_job's; a workspace bind stays as given (control)", () => {
  const layout = layoutOf(
    { ...state, externals: { host: '/runner/externals', remote: '/srv/rch/externals/aaaaaaaaaaaaaaaa' } },
    '/var/run/docker.sock'
  )
  const plan = planStep(args([mount('/runner/externals/node20', '/e'), mount('/runner/_work/repo/repo/data', '/data')]), layout)
  expect(plan.mounts.slice(0, 2)).toEqual([
    { source: '/srv/rch/externals/aaaaaaaaaaaaaaaa/node20', target: '/e', readOnly: true, existing: true },
    { source: `${state.jobRoot}/w/repo/repo/data`, target: '/data', readOnly: false }
  ])
})
