import { spawn } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { containerLogs, createArgv, createContainer, type CreateSpec } from '../../src/docker/cli'
import { envDelivery } from '../../src/docker/env-script'
import { OutputLimitError, type Remote } from '../../src/remote/remote'
import { cleanupTempDirs, parseEnv0, splitNul, tempDir } from './_helpers'
import { LocalRemote } from './local-remote'

afterAll(cleanupTempDirs)

function spec(over: Partial<CreateSpec> = {}): CreateSpec {
  return {
    name: 'rch-job1-redis',
    image: 'redis:7',
    labels: { 'rch.owner': 'o1', 'rch.job': 'j1' },
    network: 'rch-net-j1',
    aliases: ['redis', 'redis-1'],
    ports: ['6379:6379', '8080:80/udp'],
    mounts: [
      { source: '/srv/rch/j1/w', target: '/__w', readOnly: false },
      { source: '/srv/rch/externals/abc', target: '/__e', readOnly: true, existing: true },
      { source: 'my_vol', target: '/data', readOnly: false },
      { source: null, target: '/anon', readOnly: false },
      { source: null, target: '/anon-ro', readOnly: true }
    ],
    env: { SECRET: 'hunter2', 'INPUT_node-version': '20' },
    createOptions: ['--health-cmd', 'redis-cli ping', '--health-interval', '10s'],
    entrypoint: 'tail',
    args: ['-f', '/dev/null'],
    workdir: '/__w/repo/repo',
    ...over
  }
}

describe('createArgv', () => {
  it('builds the full argv in order', () => {
    expect(createArgv(spec(), ['-e', 'SECRET', '--env-file', '/scratch/.env-1'])).toEqual([
      'docker',
      'create',
      '--name',
      'rch-job1-redis',
      '--pull',
      'never',
      '--network',
      'rch-net-j1',
      '--network-alias',
      'redis',
      '--network-alias',
      'redis-1',
      '-p',
      '6379:6379',
      '-p',
      '8080:80/udp',
      '-v',
      '/srv/rch/j1/w:/__w',
      '--mount',
      '"type=bind","source=/srv/rch/externals/abc","target=/__e","readonly"',
      '--mount',
      '"type=volume","source=my_vol","target=/data","volume-label=rch.owner=o1","volume-label=rch.job=j1"',
      '-v',
      '/anon',
      '-v',
      '/anon-ro:ro',
      '-e',
      'SECRET',
      '--env-file',
      '/scratch/.env-1',
      '--workdir',
      '/__w/repo/repo',
      '--health-cmd',
      'redis-cli ping',
      '--health-interval',
      '10s',
      '--label',
      'rch.owner=o1',
      '--label',
      'rch.job=j1',
      '--entrypoint',
      'tail',
      'redis:7',
      '-f',
      '/dev/null'
    ])
  })

  it("mounts a named volume with the container's labels as its volume labels, each field quoted as docker's CSV reader takes it", () => {
    const argv = createArgv(spec({ mounts: [{ source: 'cache.v1', target: '/a,b "c"', readOnly: true }] }), [])
    expect(argv.slice(argv.indexOf('--mount'), argv.indexOf('--mount') + 2)).toEqual([
      '--mount',
      '"type=volume","source=cache.v1","target=/a,b ""c""","readonly","volume-label=rch.owner=o1","volume-label=rch.job=j1"'
    ])
    // A host path and an anonymous volume stay `-v`.
    expect(argv).not.toContain('-v')
  })

  it('mounts a host path that must exist (the externals copy) as a bind docker will not make, quoted the same way, without volume labels', () => {
    const argv = createArgv(
      spec({
        mounts: [
          { source: '/srv/a,b "c"/externals/abc', target: '/__e', readOnly: true, existing: true },
          { source: '/srv/rch/j1/w', target: '/__w', readOnly: false }
        ]
      }),
      []
    )
    expect(argv.filter((a, i) => argv[i - 1] === '--mount' || argv[i - 1] === '-v')).toEqual([
      '"type=bind","source=/srv/a,b ""c""/externals/abc","target=/__e","readonly"',
      '/srv/rch/j1/w:/__w'
    ])
  })

  it('holds env names and the env file path only, never values', () => {
    const s = spec({ env: { SECRET: 'hunter2', TOKEN: 'ghp_abc', 'INPUT_x-y': 'inputvalue', CERT: 'pem-line1\npem-line2' } })
    const flags = envDelivery(s.env, '/scratch').flags
    const argv = createArgv(s, flags)
    // Single-line values go through the env file, multi-line ones by name (-e CERT).
    const file = flags[flags.indexOf('--env-file') + 1]
    expect(file).toMatch(/^\/scratch\/\.env-[0-9a-f]{12}$/)
    expect(flags).toEqual(['-e', 'CERT', '--env-file', file])
    const at = argv.indexOf('-e')
    expect(argv.slice(at, at + 4)).toEqual(flags)
    expect(argv.join('\0')).not.toMatch(/hunter2|ghp_abc|inputvalue|pem-line/)
  })

  it('keeps createOptions in place as separate items, before the entrypoint and image', () => {
    const argv = createArgv(spec({ createOptions: ['--cpus', '1', '--label', 'a b=c d'] }), [])
    const i = argv.indexOf('--cpus')
    expect(argv.slice(i, i + 4)).toEqual(['--cpus', '1', '--label', 'a b=c d'])
    expect(i).toBeGreaterThan(argv.indexOf('--workdir'))
    expect(i).toBeLessThan(argv.indexOf('--entrypoint'))
    expect(argv.indexOf('--entrypoint')).toBeLessThan(argv.indexOf('redis:7'))
  })

  it('puts the command arguments after the image, unchanged', () => {
    const argv = createArgv(spec({ args: ['--appendonly', 'yes', '', 'a b'] }), [])
    expect(argv.slice(argv.indexOf('redis:7'))).toEqual(['redis:7', '--appendonly', 'yes', '', 'a b'])
  })

  it('leaves out what is not set', () => {
    expect(
      createArgv(
        spec({
          labels: {},
          network: null,
          aliases: [],
          ports: [],
          mounts: [],
          createOptions: [],
          entrypoint: null,
          args: [],
          workdir: null
        }),
        []
      )
    ).toEqual(['docker', 'create', '--name', 'rch-job1-redis', '--pull', 'never', 'redis:7'])
    expect(createArgv(spec({ entrypoint: '', workdir: '' }), [])).not.toContain('--entrypoint')
  })
})

// createContainer through a "remote" that is the local /bin/sh, with a fake docker that records
// what it was given. Shows what the container would get, and what the docker CLI itself sees.
describe('createContainer over a local shell', () => {
  const FAKE_ID = 'f'.repeat(12) + '0123456789abcdef'.repeat(3) + '0123'

  function setup(sessionEnv: Record<string, string> = {}, before = ''): { bin: string; rec: string; scratch: string; remote: Remote } {
    const bin = tempDir()
    const rec = tempDir()
    const scratch = tempDir()
    writeFileSync(
      `${bin}/docker`,
      `#!/bin/sh
printf '%s\\0' "$@" > ${rec}/argv
/usr/bin/env -0 > ${rec}/env
prev=
for a in "$@"; do
  if [ "$prev" = --env-file ]; then /bin/cat "$a" > ${rec}/envfile; fi
  prev=$a
done
${before}
echo ${FAKE_ID}
`
    )
    chmodSync(`${bin}/docker`, 0o755)
    const remote: Remote = {
      async openExec(command) {
        const p = spawn('/bin/sh', ['-c', command], { env: { PATH: `${bin}:/usr/bin:/bin`, HOME: '/root-of-remote-user', ...sessionEnv } })
        const done = new Promise<{ code: number | null; signal: string | null }>((res) =>
          p.on('close', (code, signal) => res({ code, signal }))
        )
        return { stdin: p.stdin, stdout: p.stdout, stderr: p.stderr, done }
      },
      async openSocket() {
        throw new Error('no sockets here')
      },
      close() {}
    }
    return { bin, rec, scratch, remote }
  }

  /** The environment the container would start with, from the recorded docker call. */
  function containerEnv(rec: string): { argv: string[]; cliEnv: Map<string, Buffer>; container: Map<string, string> } {
    const argv = splitNul(readFileSync(`${rec}/argv`)).map((b) => b.toString('utf8'))
    const cliEnv = parseEnv0(readFileSync(`${rec}/env`))
    const container = new Map<string, string>()
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '-e') {
        const a = argv[++i]
        const eq = a.indexOf('=')
        if (eq >= 0) container.set(a.slice(0, eq), a.slice(eq + 1))
        else if (cliEnv.has(a)) container.set(a, cliEnv.get(a)!.toString('utf8'))
      } else if (argv[i] === '--env-file') {
        i++
        for (const l of readFileSync(`${rec}/envfile`, 'utf8').split('\n').filter(Boolean)) {
          const eq = l.indexOf('=')
          container.set(l.slice(0, eq), l.slice(eq + 1))
        }
      }
    }
    return { argv, cliEnv, container }
  }

  it("a docker that floods its output before the id is refused at a small bound, not kept in the hook's memory", async () => {
    const flood = setup({}, `head -c 1000000 /dev/zero | tr '\\0' a; echo`)
    await expect(createContainer(flood.remote, spec({}), flood.scratch)).rejects.toThrow(OutputLimitError)
    // control: a few lines before the id (warnings) are fine, the id is the last line
    const chatty = setup({}, 'echo one warning; echo another')
    await expect(createContainer(chatty.remote, spec({}), chatty.scratch)).resolves.toBe(FAKE_ID)
  })

  it("a VM's docker that never answers: create and logs fail at their bound, naming the command (control: the answering docker above)", async () => {
    // A remote that ends a command when its channel closes, as sshd does.
    const hung = new LocalRemote(tempDir(), {}, { docker: 'exec sleep 30' })
    const began = Date.now()
    await expect(createContainer(hung, spec({}), tempDir(), 300)).rejects.toThrow('docker create redis:7: no result after 0.3 s')
    await expect(containerLogs(hung, FAKE_ID, 10, 300)).rejects.toThrow('docker logs: no result after 0.3 s')
    expect(Date.now() - began).toBeLessThan(10_000)
  })

  it('returns the id, gives the container every value byte-exact, and removes the env file', async () => {
    const { rec, scratch, remote } = setup()
    const env = {
      SECRET: 'it\'s "$HOME" `id`\nline2\\',
      MULTI: '\n\nx\n',
      EMPTY: '',
      'INPUT_node-version': '20 $x `y`',
      TOKEN: "ghp_single $(id) 'q'"
    }
    const id = await createContainer(remote, spec({ env }), scratch)
    expect(id).toBe(FAKE_ID)
    const { argv, cliEnv, container } = containerEnv(rec)
    for (const [k, v] of Object.entries(env)) expect([k, container.get(k)]).toEqual([k, v])
    // Multi-line values by name; single-line ones only in the env file, never in the CLI's env.
    const file = argv[argv.indexOf('--env-file') + 1]
    expect(file).toMatch(new RegExp(`^${scratch}/\\.env-[0-9a-f]{12}$`))
    expect(argv.filter((a, i) => a === '-e' || argv[i - 1] === '-e')).toEqual(['-e', 'SECRET', '-e', 'MULTI'])
    expect(argv.filter((a) => a === '--env-file')).toHaveLength(1)
    for (const k of ['EMPTY', 'INPUT_node-version', 'TOKEN']) expect([k, cliEnv.has(k)]).toEqual([k, false])
    expect(readFileSync(`${rec}/envfile`, 'utf8')).toBe("EMPTY=\nINPUT_node-version=20 $x `y`\nTOKEN=ghp_single $(id) 'q'\n")
    expect(argv.join('\0')).not.toMatch(/line2|INPUT_node-version=|\$x|ghp_/)
    expect(argv.slice(argv.indexOf('redis:7'))).toEqual(['redis:7', '-f', '/dev/null'])
    expect(readdirSync(scratch)).toEqual([])
    expect(existsSync(`${rec}/envfile`)).toBe(true)
  })

  it('fails with the label when docker fails, and still removes the env file', async () => {
    const { bin, scratch, remote } = setup()
    writeFileSync(`${bin}/docker`, '#!/bin/sh\necho "Error: no such image" >&2\nexit 125\n')
    await expect(createContainer(remote, spec({ env: { 'a-b': '1' } }), scratch)).rejects.toThrow(
      /docker create redis:7 failed \(exit code 125\): Error: no such image/
    )
    expect(readdirSync(scratch)).toEqual([])
  })

  // A job container with `env: DOCKER_HOST: tcp://docker:2375` (the usual docker-in-docker setup)
  // or its own PATH/HOME is a normal workflow: such values must reach the container but must not
  // steer the docker CLI, so they go through the env file, not the shell that runs docker.
  it.each([
    ['DOCKER_HOST', 'tcp://docker:2375'],
    ['DOCKER_CONFIG', '/opt/custom-rch-test/docker-config'],
    ['PATH', '/opt/custom-rch-test/bin'], // no docker there
    ['HOME', '/home/job-user']
  ])('passes %s to the container without applying it to the docker CLI', async (name, value) => {
    const { bin, rec, scratch, remote } = setup()
    await createContainer(remote, spec({ env: { [name]: value } }), scratch)
    const { cliEnv, container } = containerEnv(rec)
    expect(container.get(name)).toBe(value)
    expect(cliEnv.get(name)?.toString()).not.toBe(value)
    // The docker CLI ran with the remote shell's own environment, untouched by the job's.
    const own: Record<string, string> = { PATH: `${bin}:/usr/bin:/bin`, HOME: '/root-of-remote-user' }
    expect(cliEnv.get(name)?.toString()).toBe(own[name])
  })

  // The shell that runs the docker CLI starts from an allow-list: whatever else the SSH session
  // carries (start-up files, AcceptEnv) does not reach the CLI, and of the job's variables only the
  // multi-line ones, exported for `-e NAME`, do.
  it("the docker CLI sees only PATH, HOME, the operator's DOCKER_HOST/DOCKER_CONFIG and the exported multi-line job values", async () => {
    const session = {
      SESSION_JUNK: 'x',
      BASH_ENV: '/tmp/rch-bash-env',
      IFS: ' ',
      DOCKER_HOST: 'unix:///operator.sock',
      DOCKER_CONFIG: '/operator/docker'
    }
    const { rec, scratch, remote } = setup(session)
    await createContainer(remote, spec({ env: { CERT: 'a\nb', LD_PRELOAD: '/job/evil.so', TOKEN: 't' } }), scratch)
    const { cliEnv, container } = containerEnv(rec)
    const names = [...cliEnv.keys()].filter((k) => !['PWD', 'OLDPWD', 'SHLVL', '_'].includes(k)).sort()
    expect(names).toEqual(['CERT', 'DOCKER_CONFIG', 'DOCKER_HOST', 'HOME', 'PATH'])
    expect(cliEnv.get('DOCKER_HOST')?.toString()).toBe('unix:///operator.sock')
    expect(cliEnv.get('DOCKER_CONFIG')?.toString()).toBe('/operator/docker')
    // positive control: the job's values still reach the container
    expect(container.get('LD_PRELOAD')).toBe('/job/evil.so')
    expect(container.get('CERT')).toBe('a\nb')
  })

  it('an unset DOCKER_HOST stays unset (not set to an empty value)', async () => {
    const { rec, scratch, remote } = setup()
    await createContainer(remote, spec({ env: {} }), scratch)
    expect(containerEnv(rec).cliEnv.has('DOCKER_HOST')).toBe(false)
  })

  it('a multi-line value under a steering name is refused before anything runs', async () => {
    const { rec, scratch, remote } = setup()
    await expect(createContainer(remote, spec({ env: { LD_PRELOAD: '/tmp/evil.so\n' } }), scratch)).rejects.toThrow(
      /environmentVariables\.LD_PRELOAD: a multi-line value needs/
    )
    expect(existsSync(`${rec}/argv`)).toBe(false)
  })
})
