// The hook file run by hand: --help and --version; and its log file across hook commands.
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner, HOOK } from '../helpers/fake-runner'
import { errorLines } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'

const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }

test('--version prints the version of package.json and the build id, and exits 0', () => {
  expect(execFileSync(process.execPath, [HOOK, '--version'], { encoding: 'utf8' })).toMatch(
    new RegExp(`^remote-container-hooks ${pkg.version.replace(/\./g, '\\.')} \\(build [0-9a-f]{12}\\)\n$`)
  )
})

test('--help says what the hook is, how the runner calls it, the env it reads and where the docs are, and exits 0', () => {
  const r = spawnSync(process.execPath, [HOOK, '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } })
  expect({ code: r.status, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
  for (const s of [
    'ACTIONS_RUNNER_CONTAINER_HOOKS',
    'prepare_job',
    'responseFile',
    'REMOTE_HOOKS_CONFIG',
    'RUNNER_DEBUG',
    'docs/',
    pkg.version
  ])
    expect(r.stdout).toContain(s)
  expect(r.stdout).not.toMatch(/^::/m)
})

test('an argument that is no command is refused at once (exit 64, a near command named), even with a request on stdin', () => {
  // a request that would run: the hook must not take it when its command line is wrong
  const request = JSON.stringify({ command: 'cleanup_job', responseFile: '/nonexistent/x.json', args: {}, state: null })
  for (const [arg, near] of [
    ['doctr', ' (did you mean doctor?)'],
    ['--hepl', ' (did you mean --help?)'],
    ['prepare_job', '']
  ]) {
    const r = spawnSync(process.execPath, [HOOK, arg], {
      input: request,
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
      timeout: 10_000
    })
    expect({ code: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 64,
      stdout: '',
      stderr: `remote-hooks: unknown command ${JSON.stringify(arg)}${near}; the hook itself takes no arguments\n(see: remote-hooks --help)\n`
    })
  }
  // control: without the argument the same request reaches the hook (and fails there, on its own terms)
  const r = spawnSync(process.execPath, [HOOK], { input: request, encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 10_000 })
  expect(r.stdout).toMatch(/^::error::/)
})

test('started at a terminal, the hook says where its request comes from instead of waiting for one', () => {
  // util-linux `script` gives the hook a terminal as stdin
  const r = spawnSync('script', ['-qec', `${process.execPath} ${HOOK}`, '/dev/null'], { encoding: 'utf8', timeout: 10_000, input: '' })
  expect(r.status).toBe(64)
  expect(r.stdout).toContain('remote-hooks: the hook reads one JSON request on stdin, as the runner sends it')
})

test('the log file is appended to: two hook commands leave both their lines', async () => {
  const runner = new FakeRunner()
  const logFile = join(runner.root, 'logs', 'hook.log')
  const withLog = new FakeRunner({
    name: runner.name,
    config: { ...JSON.parse(readFileSync(runner.configFile, 'utf8')), log: { file: logFile } }
  })
  try {
    // Each fails after the log is open (the /__w mount names another folder), with a message of its own.
    const call = (n: number) => {
      const c = withLog.jobContainer(testImages.tiny) as { systemMountVolumes: { sourceVolumePath: string; targetVolumePath: string }[] }
      c.systemMountVolumes.find((m) => m.targetVolumePath === '/__w')!.sourceVolumePath = `/not-the-work-folder-${n}`
      return withLog.call('prepare_job', { container: c, services: [] })
    }
    const first = await call(1)
    const second = await call(2)
    expect([first.code, second.code]).toEqual([64, 64])
    expect(errorLines(first)).toEqual([expect.stringContaining('/__w mount must be')])
    const text = readFileSync(logFile, 'utf8')
    expect(text).toMatch(/ error .*\/__w mount must be the runner's work folder/)
    expect(text.split('\n').filter((l) => / error /.test(l))).toHaveLength(2)
  } finally {
    rmSync(runner.root, { recursive: true, force: true })
    rmSync(withLog.root, { recursive: true, force: true })
  }
})
