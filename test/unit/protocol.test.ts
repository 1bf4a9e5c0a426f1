import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseHookInput } from '../../src/protocol'
import { InputError } from '../../src/errors'

// A prepare_job request as the runner sends it, with the elided mounts written out.
const PREPARE_JOB =
  '{"command":"prepare_job","responseFile":"/home/runner/_work/_temp/_runner_hook_responses/5b1c.json",' +
  '"args":{"container":{"image":"node:22","dockerfile":null,"entryPointArgs":[],"entryPoint":null,' +
  '"workingDirectory":"/__w/myrepo/myrepo","createOptions":"--cpus 1","registry":null,' +
  '"environmentVariables":{"NODE_ENV":"development","HOME":"/github/home"},' +
  '"portMappings":["8080:80"],' +
  '"systemMountVolumes":[{"userProvidedValue":null,"sourceVolumePath":"/var/run/docker.sock","targetVolumePath":"/var/run/docker.sock","readOnly":false},' +
  '{"userProvidedValue":null,"sourceVolumePath":"/home/runner/_work","targetVolumePath":"/__w","readOnly":false},' +
  '{"userProvidedValue":null,"sourceVolumePath":"/home/runner/externals","targetVolumePath":"/__e","readOnly":true}],' +
  '"userMountVolumes":[{"userProvidedValue":"my_vol:/data","sourceVolumePath":"my_vol","targetVolumePath":"/data","readOnly":false}]},' +
  '"services":[{"image":"redis","dockerfile":null,"entryPointArgs":[],"entryPoint":null,"workingDirectory":null,' +
  '"createOptions":"--health-cmd \\"redis-cli ping\\" --health-interval 10s","registry":null,' +
  '"environmentVariables":{},"portMappings":["6379:6379"],"systemMountVolumes":[],"userMountVolumes":[]}]},' +
  '"state":null}\n'

// A run_script_step request as the runner sends it, verbatim apart from the elided guids.
const RUN_SCRIPT_STEP =
  '{"command":"run_script_step","responseFile":"/home/runner/_work/_temp/_runner_hook_responses/9e0.json",' +
  '"args":{"entryPointArgs":["-e","/__w/_temp/3f2a.sh"],"entryPoint":"sh",' +
  '"environmentVariables":{"CI":"true","GITHUB_ENV":"/__w/_temp/_runner_file_commands/set_env_77c",' +
  '"GITHUB_OUTPUT":"/__w/_temp/_runner_file_commands/set_output_77c","GITHUB_EVENT_PATH":"/github/workflow/event.json",' +
  '"GITHUB_WORKSPACE":"/__w/myrepo/myrepo","RUNNER_TEMP":"/__w/_temp", "…":"…"},' +
  '"prependPath":["/__w/_tool/node/20/x64/bin"],"workingDirectory":"/__w/myrepo/myrepo"},' +
  '"state":{"network":"github_network_1","container":"<id>","services":["<id>"]}}\n'

function input(command: string, args: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ command, responseFile: '/w/_temp/_runner_hook_responses/x.json', args, state: null, ...extra }) + '\n'
}

function errorOf(text: string): InputError {
  try {
    parseHookInput(text)
  } catch (e) {
    expect(e).toBeInstanceOf(InputError)
    return e as InputError
  }
  throw new Error('expected an InputError')
}

const SCRIPT_ARGS = {
  entryPointArgs: ['-e', '/__w/_temp/x.sh'],
  entryPoint: 'sh',
  environmentVariables: {},
  prependPath: [],
  workingDirectory: '/__w/r/r'
}

describe('parseHookInput: requests as the runner sends them', () => {
  it('parses prepare_job (docs/protocol.md)', () => {
    const h = parseHookInput(PREPARE_JOB)
    expect(h.command).toBe('prepare_job')
    if (h.command !== 'prepare_job') throw new Error()
    expect(h.responseFile).toBe('/home/runner/_work/_temp/_runner_hook_responses/5b1c.json')
    expect(h.state).toBeNull()
    const c = h.args.container!
    expect(c.image).toBe('node:22')
    expect(c.entryPoint).toBeNull()
    expect(c.entryPointArgs).toEqual([])
    expect(c.createOptions).toBe('--cpus 1')
    expect(c.environmentVariables).toEqual({ NODE_ENV: 'development', HOME: '/github/home' })
    expect(c.systemMountVolumes.map((m) => [m.sourceVolumePath, m.targetVolumePath, m.readOnly])).toEqual([
      ['/var/run/docker.sock', '/var/run/docker.sock', false],
      ['/home/runner/_work', '/__w', false],
      ['/home/runner/externals', '/__e', true]
    ])
    expect(c.userMountVolumes[0]).toMatchObject({
      userProvidedValue: 'my_vol:/data',
      sourceVolumePath: 'my_vol',
      targetVolumePath: '/data'
    })
    expect(h.args.services).toHaveLength(1)
    expect(h.args.services[0].createOptions).toBe('--health-cmd "redis-cli ping" --health-interval 10s')
    expect(h.args.services[0].workingDirectory).toBeNull()
    expect(h.args.services[0].portMappings).toEqual(['6379:6379'])
  })

  it('parses run_script_step (docs/protocol.md)', () => {
    const h = parseHookInput(RUN_SCRIPT_STEP)
    if (h.command !== 'run_script_step') throw new Error(h.command)
    expect(h.args.entryPoint).toBe('sh')
    expect(h.args.entryPointArgs).toEqual(['-e', '/__w/_temp/3f2a.sh'])
    expect(h.args.prependPath).toEqual(['/__w/_tool/node/20/x64/bin'])
    expect(h.args.workingDirectory).toBe('/__w/myrepo/myrepo')
    expect(h.args.environmentVariables.RUNNER_TEMP).toBe('/__w/_temp')
    expect(h.args.environmentVariables['…']).toBe('…')
    expect(h.state).toEqual({ network: 'github_network_1', container: '<id>', services: ['<id>'] })
  })

  it('parses cleanup_job with args {} and with state null', () => {
    const h = parseHookInput(input('cleanup_job', {}))
    expect(h).toEqual({ command: 'cleanup_job', responseFile: '/w/_temp/_runner_hook_responses/x.json', args: {}, state: null })
  })

  it('parses run_container_step', () => {
    const h = parseHookInput(
      input('run_container_step', {
        image: null,
        dockerfile: '/home/runner/_work/_actions/o/r/v1/Dockerfile',
        entryPointArgs: ['"hello', 'world"'],
        entryPoint: null,
        workingDirectory: '/github/workspace',
        createOptions: null,
        registry: null,
        environmentVariables: { 'INPUT_node-version': '20' },
        portMappings: [],
        systemMountVolumes: [],
        userMountVolumes: []
      })
    )
    if (h.command !== 'run_container_step') throw new Error(h.command)
    expect(h.args.image).toBeNull()
    expect(h.args.dockerfile).toBe('/home/runner/_work/_actions/o/r/v1/Dockerfile')
    expect(h.args.entryPointArgs).toEqual(['"hello', 'world"'])
    expect(h.args.environmentVariables).toEqual({ 'INPUT_node-version': '20' })
  })
})

describe('parseHookInput: tolerance', () => {
  it('tolerates nulls everywhere and fills in empty defaults', () => {
    const h = parseHookInput(
      input('prepare_job', {
        container: {
          image: 'alpine',
          dockerfile: null,
          entryPointArgs: null,
          entryPoint: null,
          workingDirectory: null,
          createOptions: null,
          registry: null,
          environmentVariables: null,
          portMappings: null,
          systemMountVolumes: [{ userProvidedValue: null, sourceVolumePath: null, targetVolumePath: '/anon', readOnly: null }],
          userMountVolumes: null
        },
        services: null
      })
    )
    if (h.command !== 'prepare_job') throw new Error()
    const c = h.args.container!
    expect(c).toMatchObject({
      image: 'alpine',
      entryPointArgs: [],
      registry: null,
      environmentVariables: {},
      portMappings: [],
      userMountVolumes: []
    })
    expect(c.systemMountVolumes).toEqual([{ userProvidedValue: null, sourceVolumePath: null, targetVolumePath: '/anon', readOnly: false }])
    expect(h.args.services).toEqual([])
  })

  it('fills keys the runner left out', () => {
    const h = parseHookInput(input('prepare_job', { container: { image: 'alpine', systemMountVolumes: [{ targetVolumePath: '/x' }] } }))
    if (h.command !== 'prepare_job') throw new Error()
    expect(h.args.container).toMatchObject({
      dockerfile: null,
      entryPoint: null,
      registry: null,
      createOptions: null,
      environmentVariables: {}
    })
    expect(h.args.container!.systemMountVolumes[0]).toEqual({
      userProvidedValue: null,
      sourceVolumePath: null,
      targetVolumePath: '/x',
      readOnly: false
    })
  })

  it('turns null env values into empty strings', () => {
    const h = parseHookInput(input('run_script_step', { ...SCRIPT_ARGS, environmentVariables: { A: null, B: 'b', C: '' } }))
    if (h.command !== 'run_script_step') throw new Error()
    expect(h.args.environmentVariables).toEqual({ A: '', B: 'b', C: '' })
  })

  it('turns null entryPointArgs items of a script step into empty strings', () => {
    const h = parseHookInput(input('run_script_step', { ...SCRIPT_ARGS, entryPointArgs: ['-e', null, 'x'] }))
    if (h.command !== 'run_script_step') throw new Error()
    expect(h.args.entryPointArgs).toEqual(['-e', '', 'x'])
  })

  it('treats null args as {} (services-only prepare, cleanup)', () => {
    const p = parseHookInput(input('prepare_job', null))
    expect(p.args).toEqual({ container: null, services: [] })
    expect(parseHookInput(input('cleanup_job', null)).args).toEqual({})
  })

  it('keeps unknown keys (e.g. a service contextName) and ignores unknown top-level keys', () => {
    const h = parseHookInput(
      input(
        'prepare_job',
        { container: null, services: [{ image: 'redis', contextName: 'cache', newThing: [1] }], futureArg: true },
        { extra: 'x' }
      )
    )
    if (h.command !== 'prepare_job') throw new Error()
    expect((h.args.services[0] as Record<string, unknown>).contextName).toBe('cache')
    expect((h.args.services[0] as Record<string, unknown>).newThing).toEqual([1])
    expect((h.args as Record<string, unknown>).futureArg).toBe(true)
    expect(Object.keys(h).sort()).toEqual(['args', 'command', 'responseFile', 'state'])
  })

  it('accepts prependPath as an array, a legacy ":"-joined string, or null', () => {
    const parse = (prependPath: unknown): string[] => {
      const h = parseHookInput(input('run_script_step', { ...SCRIPT_ARGS, prependPath }))
      if (h.command !== 'run_script_step') throw new Error()
      return h.args.prependPath
    }
    expect(parse(['/b', '/a'])).toEqual(['/b', '/a'])
    expect(parse('/__w/_tool/node/bin:/opt/x/bin')).toEqual(['/__w/_tool/node/bin', '/opt/x/bin'])
    expect(parse('/a::/b:')).toEqual(['/a', '/b'])
    expect(parse('')).toEqual([])
    expect(parse(null)).toEqual([])
    expect(parse(undefined)).toEqual([])
  })

  it('keeps the last of several JSON lines (as hooklib does)', () => {
    const h = parseHookInput(input('cleanup_job', {}) + '\n' + RUN_SCRIPT_STEP)
    expect(h.command).toBe('run_script_step')
  })

  it('tolerates surrounding whitespace and CRLF', () => {
    expect(parseHookInput('\n  ' + input('cleanup_job', {}).trim() + '\r\n\r\n').command).toBe('cleanup_job')
  })

  // The doc comment says the whole of stdin is one JSON object, and the runner's contract is to read
  // to EOF and parse; an indented object (a hand-written test request) is still one object.
  it('parses one JSON object spread over several lines', () => {
    const pretty = JSON.stringify(JSON.parse(input('cleanup_job', {})), null, 2)
    expect(parseHookInput(pretty).command).toBe('cleanup_job')
  })
})

describe('parseHookInput: errors', () => {
  it('refuses empty input', () => {
    expect(errorOf('').message).toMatch(/^no input on stdin/)
    expect(errorOf(' \n\t\n').message).toMatch(/^no input on stdin/)
  })

  it('says why stdin is not JSON without quoting any of it (the text may be a secret)', () => {
    const secret = 'ghp_N0tJs0nS3cret'
    for (const text of [
      `{"command":"run_script_step","args":{"environmentVariables":{"TOKEN": ${secret}}}}`,
      `${secret}`,
      `{"a":1} ${secret}`,
      `{"TOKEN":"${secret}`
    ]) {
      const msg = errorOf(text).message
      expect(msg).toMatch(/^stdin is not valid JSON \(.+\)$/)
      expect(msg).not.toContain(secret.slice(0, 4))
    }
    // control: the reason itself is kept
    expect(errorOf('{"a":1,}').message).toMatch(/^stdin is not valid JSON \(.*position 7/)
  })

  it('refuses invalid JSON and non-objects', () => {
    expect(errorOf('{"command":').message).toMatch(/^stdin is not valid JSON \(/)
    expect(errorOf('[1,2]').message).toBe('stdin JSON must be an object')
    expect(errorOf('null').message).toBe('stdin JSON must be an object')
    expect(errorOf('"prepare_job"').message).toBe('stdin JSON must be an object')
  })

  it('names an unknown command', () => {
    expect(errorOf(input('job_cleanup', {})).message).toBe('invalid hook input: command: unknown command "job_cleanup"')
  })

  it('names a command that is no name, however deeply nested (its text once overflowed the stack: exit 70, no field)', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000)
    const msg = (command: string): string =>
      errorOf(`{"command":${command},"responseFile":"/w/_temp/_runner_hook_responses/x.json","args":{},"state":null}`).message
    expect(msg(deep)).toBe('invalid hook input: command: unknown command an array')
    expect(msg(`{"a":${deep}}`)).toBe('invalid hook input: command: unknown command an object')
    expect(msg('7')).toBe('invalid hook input: command: unknown command 7')
    expect(msg(JSON.stringify('x'.repeat(1000)))).toBe(`invalid hook input: command: unknown command "${'x'.repeat(80)}"`)
    // control: a known command in the same envelope is accepted
    expect(parseHookInput(`{"command":"cleanup_job","responseFile":"/w/r.json","args":{"a":${deep}},"state":null}`).command).toBe(
      'cleanup_job'
    )
  })

  it('names a missing command (it once crashed the message builder: exit 70 instead of 64)', () => {
    expect(errorOf(JSON.stringify({ responseFile: '/tmp/r.json', args: {} })).message).toBe('invalid hook input: command: missing')
    expect(errorOf('{}').message).toMatch(/^invalid hook input: command: missing/)
  })

  it('names missing envelope fields', () => {
    const msg = errorOf(JSON.stringify({ command: 'cleanup_job', args: {} })).message
    expect(msg).toBe('invalid hook input: responseFile: Required')
  })

  it('refuses a state that is not an object', () => {
    expect(errorOf(input('cleanup_job', {}, { state: ['x'] })).message).toMatch(/^invalid hook input: state: /)
  })

  it('names the field path of a bad argument', () => {
    const { entryPoint: _e, ...noEntryPoint } = SCRIPT_ARGS
    expect(errorOf(input('run_script_step', noEntryPoint)).message).toBe('invalid hook input: args.entryPoint: Required')
    expect(errorOf(input('run_script_step', { ...SCRIPT_ARGS, entryPoint: 7 })).message).toBe(
      'invalid hook input: args.entryPoint: Expected string, received number'
    )
  })

  it('reports every bad argument at once with nested paths', () => {
    const msg = errorOf(
      input('prepare_job', {
        container: { image: 5, systemMountVolumes: [{ sourceVolumePath: '/x' }] },
        services: [{ image: 'redis', portMappings: 'bad' }]
      })
    ).message
    expect(msg).toMatch(/^invalid hook input: /)
    expect(msg).toContain('args.container.image: Expected string, received number')
    expect(msg).toContain('args.container.systemMountVolumes.0.targetVolumePath: Required')
    expect(msg).toContain('args.services.0.portMappings: Expected array, received string')
    expect(msg.split('; ')).toHaveLength(3)
  })

  it('does not echo env values (they may be secrets) in errors', () => {
    const msg = errorOf(
      input('run_script_step', { ...SCRIPT_ARGS, environmentVariables: { TOKEN: { v: 'ghp_supersecret' } }, workingDirectory: null })
    ).message
    expect(msg).toContain('args.environmentVariables.TOKEN')
    expect(msg).toContain('args.workingDirectory')
    expect(msg).not.toContain('ghp_supersecret')
  })
})

describe('parseHookInput: hostile values are refused, naming the field', () => {
  const container = (extra: Record<string, unknown>) => ({ image: 'node:22', ...extra })
  test.each([
    ['image with a leading -', { container: container({ image: '--privileged' }) }, 'args.container.image'],
    ['image with a space', { container: container({ image: 'alpine -v /:/h' }) }, 'args.container.image'],
    ['service image $()', { services: [container({ image: '$(id)' })] }, 'args.services.0.image'],
    [
      'registry server with a leading -',
      { container: container({ registry: { username: 'u', password: 'p', serverUrl: '-H tcp://x' } }) },
      'args.container.registry.serverUrl'
    ],
    [
      'registry password with NUL',
      { container: container({ registry: { username: 'u', password: 'p\0x', serverUrl: 'ghcr.io' } }) },
      'args.container.registry.password'
    ],
    [
      'registry username with a newline',
      { container: container({ registry: { username: 'u\nx', password: 'p', serverUrl: 'ghcr.io' } }) },
      'args.container.registry.username'
    ],
    [
      'registry username with NUL',
      { container: container({ registry: { username: 'u\0', password: 'p', serverUrl: 'ghcr.io' } }) },
      'args.container.registry.username'
    ],
    [
      'volume name with a leading -',
      { container: container({ userMountVolumes: [{ sourceVolumePath: '-v', targetVolumePath: '/d' }] }) },
      'args.container.userMountVolumes.0.sourceVolumePath'
    ],
    [
      'relative mount target',
      { container: container({ userMountVolumes: [{ sourceVolumePath: 'vol', targetVolumePath: 'd' }] }) },
      'args.container.userMountVolumes.0.targetVolumePath'
    ],
    [
      'mount target with :',
      { container: container({ userMountVolumes: [{ sourceVolumePath: 'vol', targetVolumePath: '/d:/etc' }] }) },
      'args.container.userMountVolumes.0.targetVolumePath'
    ],
    [
      'mount source with :',
      { container: container({ systemMountVolumes: [{ sourceVolumePath: '/w/_work/a:/etc', targetVolumePath: '/d' }] }) },
      'args.container.systemMountVolumes.0.sourceVolumePath'
    ],
    ['port 70000', { container: container({ portMappings: ['70000:80'] }) }, 'args.container.portMappings.0'],
    ['port by name', { services: [container({ portMappings: ['http'] })] }, 'args.services.0.portMappings.0'],
    ['NUL in an argument', { container: container({ entryPointArgs: ['a\0b'] }) }, 'args.container.entryPointArgs.0'],
    ['NUL in the entry point', { container: container({ entryPoint: 'sh\0' }) }, 'args.container.entryPoint'],
    ['relative workingDirectory', { container: container({ workingDirectory: 'src' }) }, 'args.container.workingDirectory'],
    ['empty workingDirectory', { container: container({ workingDirectory: '' }) }, 'args.container.workingDirectory'],
    ['env name with =', { container: container({ environmentVariables: { 'A=B': '1' } }) }, 'args.container.environmentVariables.A=B'],
    ['empty env name', { container: container({ environmentVariables: { '': '1' } }) }, 'args.container.environmentVariables'],
    ['env value with NUL', { container: container({ environmentVariables: { A: 'x\0y' } }) }, 'args.container.environmentVariables.A'],
    ['service contextName with a leading -', { services: [container({ contextName: '--privileged' })] }, 'args.services.0.contextName'],
    ['createOptions with NUL', { container: container({ createOptions: '--cpus 1\0' }) }, 'args.container.createOptions'],
    // Both pass docker's name rules but fail at create, after the job's machine was got.
    [
      'one-character volume name',
      { container: container({ userMountVolumes: [{ sourceVolumePath: 'a', targetVolumePath: '/d' }] }) },
      'args.container.userMountVolumes.0.sourceVolumePath'
    ],
    [
      'container port range beside one host port',
      { services: [container({ portMappings: ['8080:80-81'] })] },
      'args.services.0.portMappings.0'
    ]
  ])('prepare_job: %s', (_what, args, field) => {
    const msg = errorOf(input('prepare_job', args)).message
    expect(msg).toContain(`${field}:`)
    expect(msg).not.toMatch(/\n/)
  })

  test("a registry password of several lines (a service account's JSON key) is taken as it is", () => {
    const password = '{\n  "type": "service_account",\r\n  "private_key": "k"\n}\n'
    const r = parseHookInput(
      input('prepare_job', { container: container({ registry: { username: '_json_key', password, serverUrl: 'gcr.io' } }) })
    )
    expect((r.args as { container: { registry: { password: string } } }).container.registry.password).toBe(password)
  })

  test.each([
    ['empty entryPoint', { entryPoint: '' }, 'args.entryPoint'],
    ['entryPoint with NUL', { entryPoint: 'sh\0' }, 'args.entryPoint'],
    ['NUL in an argument', { entryPointArgs: ['-e', 'x\0'] }, 'args.entryPointArgs.1'],
    ['relative workingDirectory', { workingDirectory: 'repo' }, 'args.workingDirectory'],
    ['empty workingDirectory', { workingDirectory: '' }, 'args.workingDirectory'],
    ['workingDirectory with a newline', { workingDirectory: '/a\n/b' }, 'args.workingDirectory'],
    ['env name with a newline', { environmentVariables: { 'A\nB': '1' } }, 'args.environmentVariables'],
    ['env value with NUL', { environmentVariables: { A: '\0' } }, 'args.environmentVariables.A'],
    ['prependPath with NUL', { prependPath: ['/x\0'] }, 'args.prependPath']
  ])('run_script_step: %s', (_what, extra, field) => {
    expect(errorOf(input('run_script_step', { ...SCRIPT_ARGS, ...extra })).message).toContain(`${field}`)
  })

  test.each([
    ['relative dockerfile', { image: null, dockerfile: 'Dockerfile' }, 'args.dockerfile'],
    ['image with a leading -', { image: '-alpine' }, 'args.image']
  ])('run_container_step: %s', (_what, args, field) => {
    expect(errorOf(input('run_container_step', args)).message).toContain(`${field}:`)
  })

  test('what docker takes is kept: a two-character volume, a host range for one container port, the protocol in capitals', () => {
    const h = parseHookInput(
      input('prepare_job', {
        container: container({ userMountVolumes: [{ sourceVolumePath: 'ab', targetVolumePath: '/d' }] }),
        services: [container({ portMappings: ['8000-8010:80', '5000-5001:6000-6001', '53/UDP'] })]
      })
    )
    if (h.command !== 'prepare_job') throw new Error(h.command)
    expect(h.args.container!.userMountVolumes[0].sourceVolumePath).toBe('ab')
    expect(h.args.services[0].portMappings).toEqual(['8000-8010:80', '5000-5001:6000-6001', '53/UDP'])
  })

  test('a relative or NUL responseFile is refused', () => {
    expect(errorOf(input('cleanup_job', {}, { responseFile: 'resp.json' })).message).toContain('responseFile:')
    expect(errorOf(input('cleanup_job', {}, { responseFile: '/tmp/r\0.json' })).message).toContain('responseFile:')
  })

  test('env values with quotes, $(), newlines and 100k characters pass through exactly', () => {
    const values = { Q: `it's "quoted"`, S: '$(id) `id` ${HOME}', N: 'a\nb\r\nc', L: 'x'.repeat(100000), E: '' }
    const got = parseHookInput(input('run_script_step', { ...SCRIPT_ARGS, environmentVariables: values }))
    expect(got.args).toMatchObject({ environmentVariables: values })
  })
})

describe('responseFile', () => {
  const { mkdtempSync, writeFileSync, symlinkSync, readFileSync, mkdirSync, rmSync } = require('node:fs') as typeof import('node:fs')
  const { tmpdir } = require('node:os') as typeof import('node:os')
  const { assertResponseFile, writeResponse } = require('../../src/protocol') as typeof import('../../src/protocol')
  let dir = ''
  beforeEach(() => (dir = mkdtempSync(`${tmpdir()}/rch-resp-`)))
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  test('a regular file is accepted and written', async () => {
    writeFileSync(`${dir}/r.json`, '')
    await assertResponseFile(`${dir}/r.json`)
    await writeResponse(`${dir}/r.json`, { a: 1 })
    expect(readFileSync(`${dir}/r.json`, 'utf8')).toBe('{"a":1}\n')
  })

  test('a symlink, a folder or a missing file is refused, naming responseFile', async () => {
    writeFileSync(`${dir}/target`, 'keep')
    symlinkSync(`${dir}/target`, `${dir}/link.json`)
    mkdirSync(`${dir}/d.json`)
    for (const p of [`${dir}/link.json`, `${dir}/d.json`, `${dir}/missing.json`]) {
      await expect(assertResponseFile(p)).rejects.toThrow(/^responseFile: /)
    }
  })

  test('a symlink swapped in after the check is not followed', async () => {
    writeFileSync(`${dir}/target`, 'keep')
    symlinkSync(`${dir}/target`, `${dir}/link.json`)
    await expect(writeResponse(`${dir}/link.json`, { a: 1 })).rejects.toThrow(/^responseFile: /)
    expect(readFileSync(`${dir}/target`, 'utf8')).toBe('keep')
  })
})

// docs/protocol.md shows a request for each command: each must be one this hook takes as written
// (a user drives the hook by hand from them).
describe('the example requests of docs/protocol.md', () => {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'protocol.md'), 'utf8')
  const requests = [...doc.matchAll(/```json\n(\{"command":[^\n]*\})\n```/g)].map(([, j]) => j)
  test('there is one for each command', () => {
    expect(requests.map((r) => (JSON.parse(r) as { command: string }).command).sort()).toEqual(
      expect.arrayContaining(['cleanup_job', 'prepare_job', 'run_container_step', 'run_script_step'])
    )
  })
  test.each(requests.map((r) => [(JSON.parse(r) as { command: string }).command, r]))('%s parses', (_command, raw) => {
    expect(() => parseHookInput(raw)).not.toThrow()
  })
})
