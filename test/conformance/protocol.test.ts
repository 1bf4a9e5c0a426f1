// The hook contract at the process boundary: bad input
// starts nothing and fails with exactly one `::error::` line naming the problem; what the runner
// really sends (nulls, unknown keys, a trailing newline) is accepted; prepare_job's response file
// holds exactly one JSON object of the right shape.
import { execFileSync } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import {
  callRaw,
  errorLines,
  leftovers,
  NOTHING,
  runnerSplit,
  staticProvider,
  testVm,
  writeScript,
  type RawRun
} from '../helpers/conformance'

/** Exit != 0 and exactly one `::error::` line, which is returned. */
function oneError(r: Pick<HookRun, 'code' | 'stdout' | 'stderr'>): string {
  const errors = errorLines(r)
  expect({ code: r.code === 0 ? 0 : 'non-zero', errors: errors.length, out: r.stdout + r.stderr }).toEqual({
    code: 'non-zero',
    errors: 1,
    out: expect.any(String)
  })
  return errors[0]
}

describe('protocol: bad input starts nothing and names the problem', () => {
  const runner = new FakeRunner()
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })
  afterEach(async () => {
    // "starts nothing": no container, network, job folder or lease of this runner on the VM
    expect(await leftovers(runner)).toEqual(NOTHING)
  })

  const job = (): unknown => ({ container: runner.jobContainer(testImages.tiny), services: [] })

  test('stdin that is not JSON', async () => {
    const r = await runner.call('prepare_job', job(), { stdin: '{"command":"prepare_job", this is not json\n' })
    expect(oneError(r)).toMatch(/stdin is not valid JSON \(/)
  })

  test('empty stdin', async () => {
    const r = await runner.call('prepare_job', job(), { stdin: '' })
    expect(oneError(r)).toContain("no input on stdin: expected the runner's JSON hook request")
  })

  test('an unknown command', async () => {
    const r = await callRaw(runner, { command: 'frobnicate_job', args: {}, state: null })
    expect(oneError(r)).toContain('frobnicate_job')
  })

  test('run_script_step without args.entryPoint', async () => {
    const { args } = runner.scriptStep('echo never-ran\n')
    const { entryPoint: _dropped, ...noEntryPoint } = args
    const r = await runner.call('run_script_step', noEntryPoint, { state: null })
    expect(oneError(r)).toContain('args.entryPoint')
    expect(r.stdout).not.toContain('never-ran')
  })

  test('prepare_job with args.services of the wrong type (a string)', async () => {
    const r = await runner.call('prepare_job', { container: runner.jobContainer(testImages.tiny), services: 'redis' }, { state: null })
    expect(oneError(r)).toContain('args.services')
  })

  test('prepare_job without the response file the runner pre-creates', async () => {
    const dir = join(runner.temp, '_runner_hook_responses')
    const before = readdirSync(dir).sort()
    const r = await runner.call('prepare_job', job(), { state: null, noResponseFile: true })
    expect(oneError(r)).toMatch(/responseFile/)
    // and it did not create one itself
    expect(readdirSync(dir).sort()).toEqual(before)
  })

  test('a configuration with several problems: all reported, one ::error:: line each, with field paths and a did-you-mean', async () => {
    const vm = testVm()
    const bad = join(runner.root, 'bad-config.json')
    writeFileSync(
      bad,
      JSON.stringify({
        provider: staticProvider(vm, { port: 70000, identityFile: 'relative/id_ed25519' }),
        remote: { workRoot: 'relative/work' },
        timeouts: { connectSeconds: 'soon', healthSecond: 5 }
      })
    )
    const r = await runner.call('prepare_job', job(), { state: null, env: { REMOTE_HOOKS_CONFIG: bad } })
    expect(r.code).toBe(78)
    const fields = errorLines(r).map((l) => /^::error::invalid configuration: ([^:]+):/.exec(l)?.[1])
    expect(fields.sort()).toEqual([
      'provider.hosts.0.identityFile',
      'provider.hosts.0.port',
      'remote.workRoot',
      'timeouts.connectSeconds',
      'timeouts.healthSecond'
    ])
    expect(errorLines(r)).toContain('::error::invalid configuration: timeouts.healthSecond: unknown key (did you mean `healthSeconds`?)')
  })

  test('REMOTE_HOOKS_CONFIG unset', async () => {
    const r = await callRaw(runner, { command: 'prepare_job', args: job(), state: null }, { unset: ['REMOTE_HOOKS_CONFIG'] })
    expect(oneError(r)).toContain('REMOTE_HOOKS_CONFIG')
    expect(r.responseText).toBe('')
  })
})

describe('protocol: what the runner sends is accepted', () => {
  const runner = new FakeRunner()
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })

  function okResponse(r: RawRun): any {
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    return JSON.parse(r.responseText)
  }

  test.each([
    ['a trailing newline', '\n'],
    ['no trailing newline', ''],
    ['a trailing CRLF', '\r\n']
  ])('stdin with %s', async (_what, trailer) => {
    const r = await callRaw(runner, { command: 'prepare_job', args: { container: null, services: [] }, state: null }, { trailer })
    expect(okResponse(r)).toEqual({})
  })

  test('unknown keys and nulls everywhere: prepare_job, run_script_step and cleanup_job still work', async () => {
    const c = runner.jobContainer(testImages.tiny) as Record<string, any>
    const container = {
      ...c,
      entryPointArgs: null,
      portMappings: null,
      userMountVolumes: null,
      environmentVariables: { HOME: '/github/home', NULL_VALUE: null },
      systemMountVolumes: (c.systemMountVolumes as object[]).map((m) => ({ ...m, futureMountKey: null })),
      futureContainerKey: { nested: [1, null] },
      contextName: null
    }
    const prep = await callRaw(runner, {
      command: 'prepare_job',
      args: { container, services: null, futureArgsKey: null },
      state: null,
      futureTopLevelKey: { a: null },
      anotherNull: null
    })
    const res = okResponse(prep)
    expect(typeof res.isAlpine).toBe('boolean')
    expect(res.context.container.id).toMatch(/^[0-9a-f]{64}$/)
    expect(res.context.services).toEqual([])
    expect(res.state).toEqual(expect.any(Object))
    runner.state = res.state

    const fc = runner.newFileCommands()
    const script = writeScript(runner, 'printf "[%s][%s]\\n" "$NULL_VALUE" "$STEP_NULL"; echo nulls-ok\n')
    const step = await callRaw(runner, {
      command: 'run_script_step',
      args: {
        entryPointArgs: ['-e', script],
        entryPoint: 'sh',
        environmentVariables: { ...fc.env, STEP_NULL: null },
        prependPath: null,
        workingDirectory: '/__w/repo/repo',
        futureStepKey: null
      },
      state: res.state,
      futureTopLevelKey: null
    })
    expect({ code: step.code, errors: errorLines(step), stderr: step.stderr }).toEqual({ code: 0, errors: [], stderr: '' })
    expect(step.stdout).toContain('[][]\nnulls-ok\n')

    const clean = await callRaw(runner, { command: 'cleanup_job', args: { futureCleanupKey: null }, state: res.state })
    expect({ code: clean.code, errors: errorLines(clean) }).toEqual({ code: 0, errors: [] })
    runner.state = null
    expect(await leftovers(runner)).toEqual(NOTHING)
  })

  test('services-only prepare_job: one JSON object, context.services in request order, each with object ports', async () => {
    const svc = (tag: string, ports: string[]) =>
      runner.service(testImages.tiny, {
        entryPoint: 'sh',
        entryPointArgs: runnerSplit(`-c "echo ${tag}; exec sleep 3600"`),
        portMappings: ports
      })
    const r = await runner.call(
      'prepare_job',
      { container: null, services: [svc('first', ['80']), svc('second', []), svc('third', [])] },
      { state: null }
    )
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    // exactly one JSON object (a second object or trailing garbage would not parse)
    expect(r.responseText.trim().split('\n')).toHaveLength(1)
    const parsed = JSON.parse(r.responseText)
    expect(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)).toBe(true)
    // no job container was requested: context.container must be absent (the runner crashes on it)
    expect(parsed.context.container).toBeUndefined()
    expect(parsed.context.services).toHaveLength(3)
    for (const s of parsed.context.services) {
      expect(s.ports !== null && typeof s.ports === 'object' && !Array.isArray(s.ports)).toBe(true)
      for (const v of Object.values(s.ports)) expect(typeof v).toBe('string')
      expect(s.id).toMatch(/^[0-9a-f]{64}$/)
    }
    expect(Object.keys(parsed.context.services[0].ports)).toEqual(['80'])
    expect(parsed.context.services[1].ports).toEqual({})
    // in request order: each id belongs to the service that logged its tag
    const logs = parsed.context.services.map((s: { id: string }) => execFileSync('docker', ['logs', s.id], { encoding: 'utf8' }).trim())
    expect(logs).toEqual(['first', 'second', 'third'])
    runner.state = parsed.state ?? null
    const c = await runner.cleanup()
    expect(c.code).toBe(0)
    runner.state = null
  })

  test('prepare_job with a job container: the response file holds exactly one JSON object with boolean isAlpine', async () => {
    const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.responseText.endsWith('\n') ? r.responseText.slice(0, -1) : r.responseText).not.toContain('\n')
    const parsed = JSON.parse(r.responseText)
    expect(typeof parsed).toBe('object')
    expect(typeof parsed.isAlpine).toBe('boolean')
    expect(parsed.context.services).toEqual([])
    const c = await runner.cleanup()
    expect(c.code).toBe(0)
    runner.state = null
    expect(await leftovers(runner)).toEqual(NOTHING)
  })
})

// Steps of a job with a live agent take the fast path: the raw input goes to the agent, which
// validates it exactly as the hook does. The same bad input must fail the same way there.
describe('protocol: bad step input with the job agent running', () => {
  const runner = new FakeRunner()
  beforeAll(async () => {
    const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })

  test('run_script_step without args.entryPoint: one error naming the field, exit 64, nothing ran', async () => {
    const { args } = runner.scriptStep('echo never-ran\n')
    const { entryPoint: _dropped, ...noEntryPoint } = args
    const r = await runner.call('run_script_step', noEntryPoint)
    expect(oneError(r)).toContain('args.entryPoint')
    expect(r.code).toBe(64)
    expect(r.stdout).not.toContain('never-ran')
  })

  test('a step without its response file: one error naming responseFile', async () => {
    const { args } = runner.scriptStep('echo never-ran\n')
    const r = await runner.call('run_script_step', args, { noResponseFile: true })
    expect(oneError(r)).toMatch(/responseFile/)
    expect(r.stdout).not.toContain('never-ran')
  })

  test('a configuration broken mid-job: one error with the field path, exit 78', async () => {
    const bad = join(runner.root, 'broken-mid-job.json')
    writeFileSync(bad, JSON.stringify({ provider: staticProvider(testVm()), remote: { workRoot: 'relative/work' } }))
    const { args } = runner.scriptStep('echo never-ran\n')
    const r = await runner.call('run_script_step', args, { env: { REMOTE_HOOKS_CONFIG: bad } })
    expect(oneError(r)).toContain('remote.workRoot')
    expect(r.code).toBe(78)
    expect(r.stdout).not.toContain('never-ran')
  })

  test('and a good step right after still runs in the same job', async () => {
    const { args } = runner.scriptStep('echo still-fine\n')
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.stdout).toContain('still-fine')
  })
})
