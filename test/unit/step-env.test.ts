// What a step request carries from the hook's environment to the job's agent: exactly the
// variables the agent's validation reads, never the rest (cloud credentials, the job's PATH).
import { readRunnerEnv, stepEnv, STEP_ENV_NAMES } from '../../src/runner-env'
import { loadConfig } from '../../src/config'

const hookEnv = {
  PATH: '/w/_temp/evil:/usr/bin',
  HOME: '/home/runner',
  TMPDIR: '/tmp',
  LD_PRELOAD: '/w/_temp/evil.so',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'canary-secret',
  AWS_SESSION_TOKEN: 'token',
  ACTIONS_RUNTIME_TOKEN: 'runtime-token',
  REMOTE_HOOKS_CONFIG: '/etc/rch/config.yaml',
  RUNNER_TEMP: '/w/_temp',
  RUNNER_NAME: 'r1',
  RUNNER_DEBUG: '1',
  RUNNER_TRACKING_ID: 'github_1234',
  GITHUB_WORKSPACE: '/w/repo/repo',
  GITHUB_REPOSITORY: 'o/r',
  GITHUB_WORKFLOW: 'ci',
  GITHUB_WORKFLOW_REF: 'o/r/.github/workflows/ci.yml@refs/heads/main',
  GITHUB_RUN_ID: '1',
  GITHUB_RUN_ATTEMPT: '2',
  GITHUB_JOB: 'build'
}

test('a step request keeps the allow-listed variables and drops everything else', () => {
  const sent = stepEnv(hookEnv)
  expect(Object.keys(sent).sort()).toEqual([...STEP_ENV_NAMES].sort())
  for (const k of STEP_ENV_NAMES) expect(sent[k]).toBe(hookEnv[k])
  expect(JSON.stringify(sent)).not.toMatch(/AWS|canary-secret|evil|runtime-token|\/home\/runner/)
})

test('unset names are left out, not sent as undefined', () => {
  expect(stepEnv({ RUNNER_TEMP: '/t', AWS_SECRET_ACCESS_KEY: 'x' })).toEqual({ RUNNER_TEMP: '/t' })
})

test("every variable the agent's validation reads (runner env, config) is on the allow-list", () => {
  const read = new Set<string>()
  const env: Record<string, string | undefined> = { ...hookEnv }
  const spy = new Proxy(env, {
    get(t, k) {
      if (typeof k === 'string') read.add(k)
      return t[k as string]
    }
  })
  const runner = readRunnerEnv(spy, '/w/repo/repo')
  // throws on the empty config, after reading its path
  expect(() => loadConfig(spy, { readFile: () => '{}', canRead: () => null })).toThrow(/provider/)
  // HOME is read only for the agent's own environment, which the hook sets when it starts one.
  read.delete('HOME')
  expect([...read].filter((k) => !(STEP_ENV_NAMES as readonly string[]).includes(k))).toEqual([])
  expect(read.has('REMOTE_HOOKS_CONFIG')).toBe(true) // positive control: the spy saw the reads
  // and the agent, given only what was sent, reads the same runner facts as the hook
  expect(readRunnerEnv(stepEnv(hookEnv), '/elsewhere')).toEqual({ ...runner, home: undefined })
})

test('the workflow counted is its file from GITHUB_WORKFLOW_REF, which a pull request cannot give another workflow’s; else its name', () => {
  const wf = (ref: string | undefined, name = 'CI'): string | undefined =>
    readRunnerEnv({ RUNNER_TEMP: '/w/_temp', GITHUB_REPOSITORY: 'o/r', GITHUB_WORKFLOW: name, GITHUB_WORKFLOW_REF: ref }, '/w/r/r').github
      .workflow
  expect(wf('o/r/.github/workflows/ci.yml@refs/heads/main')).toBe('.github/workflows/ci.yml')
  // A pull request's new file named like another workflow: its own file, not the name it took.
  expect(wf('o/r/.github/workflows/evil.yaml@refs/pull/7/merge', 'CI')).toBe('.github/workflows/evil.yaml')
  // A workflow of another repository (an organisation's required workflow) keeps that repository.
  expect(wf('o/policies/.github/workflows/scan.yml@refs/heads/main')).toBe('o/policies/.github/workflows/scan.yml')
  // A file name with a space or an `@` is still the file (it fell back to the name the pull request chose).
  expect(wf('o/r/.github/workflows/a b.yml@refs/pull/7/merge', '.github/workflows/release.yml')).toBe('.github/workflows/a b.yml')
  expect(wf('o/r/.github/workflows/release.yml@x.yml@refs/pull/7/merge')).toBe('.github/workflows/release.yml@x.yml')
  expect(wf('o/r/.github/workflows/a.yml@r')).toBe('.github/workflows/a.yml')
  // No file named: the name, as before (control: the name is what the pull request chose)...
  for (const ref of [
    undefined,
    '',
    'o/r/dynamic/github-code-scanning/codeql@refs/heads/main',
    'o/r/.github/workflows/ci.yml',
    'o/r/.github/workflows/x/ci.yml@r'
  ])
    expect(wf(ref, 'CI')).toBe('CI')
  // ...marked when it reads like a workflow's file, so it never counts as that file.
  expect(wf(undefined, '.github/workflows/release.yml')).toBe('name:.github/workflows/release.yml')
  expect(wf('o/r/dynamic/x@refs/heads/main', 'o/policies/.github/workflows/scan.yml')).toBe('name:o/policies/.github/workflows/scan.yml')
})
