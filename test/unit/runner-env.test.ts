// RUNNER_TEMP is checked when it is read: its folder is the job's `_work`, which prepare_job writes
// into the state as hostWork, and every later command refuses a hostWork that is not a normalised
// absolute folder other than /. Before, such a RUNNER_TEMP got a machine, copied files and started
// the containers, and only the first step failed (on the state prepare_job itself wrote).
import { InputError } from '../../src/errors'
import { readRunnerEnv, stepOwnersOf } from '../../src/runner-env'
import { statedOwners } from '../../src/labels'

test.each([
  '_work/_temp',
  '/_temp',
  '/home/runner//_work/_temp',
  '/home/runner/x/../_work/_temp',
  '/home/runner/./_work/_temp',
  '/a\n/_temp'
])('RUNNER_TEMP %j is refused, naming it, in one line', (runnerTemp) => {
  let err: unknown
  try {
    readRunnerEnv({ RUNNER_TEMP: runnerTemp }, '/w/repo/repo')
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(InputError)
  expect((err as Error).message).toMatch(/^RUNNER_TEMP: /)
  expect((err as Error).message).not.toMatch(/\n/)
})

test("control: the runner's own RUNNER_TEMP (also with a trailing slash) gives its _work", () => {
  expect(readRunnerEnv({ RUNNER_TEMP: '/home/runner/_work/_temp' }, '/w').workDir).toBe('/home/runner/_work')
  expect(readRunnerEnv({ RUNNER_TEMP: '/home/runner/_work/_temp/' }, '/w').workDir).toBe('/home/runner/_work')
})

test("a step's fast path takes the owner ids of RUNNER_TEMP's parent, as the hook does; none without RUNNER_TEMP", () => {
  const env = { RUNNER_NAME: 'r1', RUNNER_TEMP: '/home/gh/a/_work/_temp' }
  expect(stepOwnersOf(env)).toEqual(statedOwners('r1', readRunnerEnv(env, '/').workDir))
  expect(stepOwnersOf(env)).toEqual(statedOwners('r1', '/home/gh/a/_work'))
  expect(stepOwnersOf({ RUNNER_NAME: 'r1' })).toEqual([])
})
