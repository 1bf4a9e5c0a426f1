// The whole job through dist/index.js on a loopback "VM": prepare → steps → cleanup.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { dockerIds, FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'

describe('a job end to end on a static host', () => {
  const runner = new FakeRunner()
  // This file runs twice (e2e-no-agent.test.ts), maybe at the same time: each run its own host port.
  const hostPort = process.env.RCH_TEST_AGENT === 'off' ? '8081' : '8080'
  afterAll(async () => {
    const r = await runner.cleanup()
    runner.dispose()
    // A job container left behind keeps its host port, and the next suite to map it fails far
    // from the cause.
    expect({ code: r.code, errors: r.stdout.split('\n').filter((l) => l.startsWith('::error::')) }).toEqual({ code: 0, errors: [] })
  })

  test('prepare_job starts the job container and a service and answers as the runner expects', async () => {
    writeFileSync(join(runner.workspace, 'host-file.txt'), 'from the host\n')
    const r = await runner.prepare({
      container: runner.jobContainer(testImages.glibc, { portMappings: [`${hostPort}:80`] }),
      services: [
        runner.service(testImages.tiny, {
          entryPoint: 'sh',
          entryPointArgs: ['-c', '"while', 'true;', 'do', 'echo', 'PONG', '|', 'nc', '-l', '-p', '6379;', 'done"'],
          portMappings: ['6379']
        })
      ]
    })
    expect(r.stdout + r.stderr).not.toContain('::error::')
    expect(r.code).toBe(0)
    expect(r.response.isAlpine).toBe(false)
    expect(r.response.context.container.id).toMatch(/^[0-9a-f]{64}$/)
    expect(r.response.context.container.ports).toEqual({ '80': hostPort })
    expect(r.response.context.services).toHaveLength(1)
    expect(Object.keys(r.response.context.services[0].ports)).toEqual(['6379'])
    expect(r.response.state.jobId).toMatch(/^[0-9a-f]{16}$/)
    expect(r.responseText.trim().split('\n')).toHaveLength(1)
  })

  test('a run step sees the synced workspace, event.json, HOME and the service by alias', async () => {
    const { args } = runner.scriptStep(
      'cat host-file.txt; test -f /github/workflow/event.json && echo event-ok; echo "home=$HOME"; exec 3<>/dev/tcp/tiny/6379; head -1 <&3\n',
      { shell: 'bash' }
    )
    const r = await runner.call('run_script_step', args)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('from the host')
    expect(r.stdout).toContain('event-ok')
    expect(r.stdout).toContain('home=/github/home')
    expect(r.stdout).toContain('PONG')
  })

  test('file commands and workspace changes come back, deletions included; user exit code passes through', async () => {
    const { args, fc } = runner.scriptStep(
      'echo "greeting=hello" >> "$GITHUB_OUTPUT"\necho "FOO=bar" >> "$GITHUB_ENV"\necho /opt/tool/bin >> "$GITHUB_PATH"\n' +
        'echo "cache-key=k1" >> "$GITHUB_STATE"\necho "### Summary" >> "$GITHUB_STEP_SUMMARY"\n' +
        'cat "$GITHUB_ARTIFACTS_LIST"\nmkdir -p out && echo built > out/result.txt\nrm host-file.txt\nexit 3\n'
    )
    const r = await runner.call('run_script_step', args)
    expect(r.code).toBe(3)
    expect(r.stdout).toContain('"subjects"')
    expect(r.stdout).not.toContain('::error::')
    // Every file the runner reads after a step, from the host, failed step or not.
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('greeting=hello\n')
    expect(readFileSync(fc.files.GITHUB_ENV, 'utf8')).toBe('FOO=bar\n')
    expect(readFileSync(fc.files.GITHUB_PATH, 'utf8')).toBe('/opt/tool/bin\n')
    expect(readFileSync(fc.files.GITHUB_STATE, 'utf8')).toBe('cache-key=k1\n')
    expect(readFileSync(fc.files.GITHUB_STEP_SUMMARY, 'utf8')).toBe('### Summary\n')
    // The runner reads a response only after prepare_job: none is written for a step.
    expect(r.responseText).toBe('')
    expect(readFileSync(join(runner.workspace, 'out/result.txt'), 'utf8')).toBe('built\n')
    expect(existsSync(join(runner.workspace, 'host-file.txt'))).toBe(false)
  })

  test('env values arrive byte-exact and prependPath comes first', async () => {
    const hostile = `a $HOME \`id\` "dq" 'sq' \\ back\nline2 ünïcødé ${'$(rm -rf /)'}`
    const { args } = runner.scriptStep('printf "%s" "$HOSTILE" > hostile.out; echo "$PATH" > path.out\n', {
      env: { HOSTILE: hostile, 'INPUT_NODE-VERSION': '20.x' },
      prependPath: ['/opt/first', '/opt/second']
    })
    const r = await runner.call('run_script_step', args)
    expect(r.code).toBe(0)
    expect(readFileSync(join(runner.workspace, 'hostile.out'), 'utf8')).toBe(hostile)
    expect(readFileSync(join(runner.workspace, 'path.out'), 'utf8')).toMatch(/^\/opt\/first:\/opt\/second:\/usr\/local\/sbin/)
  })

  test('a JS action runs with /__e/node20/bin/node', async () => {
    const dir = join(runner.work, '_actions', 'acme', 'hello', 'v1', 'dist')
    mkdirSync(dir, { recursive: true })
    writeFileSync(
      join(dir, 'index.js'),
      'require("fs").appendFileSync(process.env.GITHUB_OUTPUT, "node=" + process.version + "\\n"); console.log("js-action " + process.env.INPUT_WHO)\n'
    )
    const fc = runner.newFileCommands()
    const r = await runner.call('run_script_step', {
      entryPointArgs: ['/__w/_actions/acme/hello/v1/dist/index.js'],
      entryPoint: '/__e/node20/bin/node',
      environmentVariables: { ...fc.env, INPUT_WHO: 'world' },
      prependPath: [],
      workingDirectory: '/__w/repo/repo'
    })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('js-action world')
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toMatch(/^node=v20\./)
  })

  test('a container action (image) gets /github/* mounts and its file commands come back', async () => {
    const { args, fc } = runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: ['-c', '"echo', 'from-action=$INPUT_X', '>>', '$GITHUB_OUTPUT;', 'ls', '/github/workspace;', 'echo', 'action-ran"'],
      env: { INPUT_X: 'y y' }
    })
    const r = await runner.call('run_container_step', args)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('action-ran')
    expect(r.stdout).toContain('hostile.out')
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('from-action=y y\n')
    expect(r.responseText).toBe('')
  })

  test('a container action built from its Dockerfile on the remote', async () => {
    const dir = join(runner.work, '_actions', 'acme', 'docker-action', 'v1')
    mkdirSync(dir, { recursive: true })
    writeFileSync(
      join(dir, 'Dockerfile'),
      `FROM ${testImages.tiny}\nCOPY entrypoint.sh /entrypoint.sh\nENTRYPOINT ["sh", "/entrypoint.sh"]\n`
    )
    writeFileSync(join(dir, 'entrypoint.sh'), 'echo "built-action $1"\necho "built=yes" >> "$GITHUB_OUTPUT"\n')
    const { args, fc } = runner.containerStep({ dockerfile: join(dir, 'Dockerfile'), args: ['"hello', 'world"'] })
    const r = await runner.call('run_container_step', args)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('built-action hello world')
    // The build in a fold of its own, closed before the action's output.
    const folds = r.stdout.split('\n').filter((l) => /^::(end)?group::/.test(l))
    expect(folds.slice(-2)).toEqual([`::group::Building ${join(dir, 'Dockerfile')}`, '::endgroup::'])
    expect(r.stdout.lastIndexOf('::endgroup::')).toBeLessThan(r.stdout.indexOf('built-action hello world'))
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('built=yes\n')
  })

  test('cleanup_job removes everything and is safe to run twice', async () => {
    const jobId = (runner.state as { jobId: string }).jobId
    // A container action's image left by a step killed between its build and its removal: found by its label.
    const label = `dev.remote-container-hooks.job=${jobId}`
    const images = (): string[] =>
      execFileSync('docker', ['images', '-q', '--filter', `label=${label}`], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
    const [job] = await dockerIds(`label=${label}`)
    execFileSync('docker', ['commit', '--change', `LABEL ${label}`, job, `rch-action-${jobId}:left`], { stdio: 'ignore' })
    expect(images()).toHaveLength(1) // positive control
    const r1 = await runner.cleanup()
    expect({ code: r1.code, out: r1.stdout + r1.stderr }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
    expect(r1.responseText).toBe('')
    expect(r1.stdout).toMatch(/cleaned up .*, 1 images/)
    expect(images()).toEqual([])
    expect(await dockerIds(`label=dev.remote-container-hooks.job=${jobId}`)).toEqual([])
    const r2 = await runner.cleanup()
    expect({ code: r2.code, out: r2.stdout + r2.stderr }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
  })
})
