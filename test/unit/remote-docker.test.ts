// The remote-docker layer against a recording remote: which Engine API requests and shell commands
// each operation sends, what it makes of the answers (ids, counts, presence), that names and labels
// reach a shell only quoted by shq, and that secrets never reach a command line.
import { InputError, TransportError } from '../../src/errors'
import { createBody, describeCounts, RemoteDocker, REMOVALS_AT_ONCE, settledInTurn } from '../../src/docker/remote-docker'
import { EngineError } from '../../src/docker/engine'
import { UnexpectedAnswer } from '../../src/remote/answer'
import { shq } from '../../src/remote/quote'
import { LABEL_JOB, LABEL_OWNER, labelFlagsOf, labelMap } from '../../src/labels'
import { buildImage, type CreateSpec } from '../../src/docker/cli'
import { RecordingRemote } from './recording-remote'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { cleanupTempDirs, sh } from './_helpers'

afterAll(cleanupTempDirs)

const SOCK = '/var/run/docker.sock'
const ID = (c: string): string => c.repeat(64)
const OWNER = '0123456789abcdef'
const JOB = 'fedcba9876543210'
/** A runner name with a space, a quote and shell syntax: labels carry it verbatim. */
const RUNNER = "my runner's $(id) `x`"

let remote: RecordingRemote
let docker: RemoteDocker
beforeEach(async () => {
  remote = await new RecordingRemote().start()
  docker = new RemoteDocker(remote, SOCK)
})
afterEach(() => remote.stop())

describe('network and volumes (Engine API)', () => {
  it('creates the network with the job labels as a JSON map, no shell involved', async () => {
    remote.onApi('POST', /^\/networks\/create$/, { status: 201, body: { Id: ID('a') } })
    await expect(docker.createNetwork('rch-net', labelMap(OWNER, JOB, RUNNER))).resolves.toBe(ID('a'))
    expect(remote.api).toEqual([
      {
        method: 'POST',
        path: '/networks/create',
        rawPath: '/networks/create',
        body: { Name: 'rch-net', Labels: labelMap(OWNER, JOB, RUNNER), CheckDuplicate: true }
      }
    ])
    expect(remote.execs).toEqual([])
  })

  it("a failed network create names the network and carries docker's message", async () => {
    remote.onApi('POST', /^\/networks\/create$/, { status: 409, body: { message: 'network with name rch-net already exists' } })
    const err = await docker.createNetwork('rch-net', {}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(EngineError)
    expect((err as Error).message).toBe('docker network create rch-net: network with name rch-net already exists')
  })

  it('uses a volume that exists as it is, and creates a missing one with the labels', async () => {
    remote.onApi('GET', /^\/volumes\/have$/, { status: 200, body: { Name: 'have' } })
    remote.onApi('GET', /^\/volumes\/new-vol$/, { status: 404, body: { message: 'no such volume' } })
    remote.onApi('POST', /^\/volumes\/create$/, { status: 201, body: { Name: 'new-vol' } })
    await expect(docker.ensureVolume('have', labelMap(OWNER, JOB, RUNNER))).resolves.toBe('existing')
    await expect(docker.ensureVolume('new-vol', labelMap(OWNER, JOB, RUNNER))).resolves.toBe('created')
    expect(remote.api.map((c) => `${c.method} ${c.path}`)).toEqual(['GET /volumes/have', 'GET /volumes/new-vol', 'POST /volumes/create'])
    expect(remote.api[2].body).toEqual({ Name: 'new-vol', Labels: labelMap(OWNER, JOB, RUNNER) })
  })

  it('a volume inspect failing otherwise than "not found" is an error, not a create', async () => {
    remote.onApi('GET', /^\/volumes\//, { status: 500, body: { message: 'daemon broke' } })
    await expect(docker.ensureVolume('v', {})).rejects.toThrow('docker volume inspect v: daemon broke')
    expect(remote.api.map((c) => c.method)).toEqual(['GET'])
  })
})

describe('images', () => {
  it('presence comes from the engine; the reference keeps its slashes in the path', async () => {
    remote.onApi('GET', /^\/images\/127\.0\.0\.1:5000\/private\/tiny:1\/json$/, { status: 200, body: { Id: 'sha256:x' } })
    remote.onApi('GET', /^\/images\//, { status: 404, body: { message: 'No such image' } })
    await expect(docker.imagePresent('127.0.0.1:5000/private/tiny:1')).resolves.toBe(true)
    await expect(docker.imagePresent('redis:7')).resolves.toBe(false)
    expect(remote.api[0].rawPath).toBe('/images/127.0.0.1%3A5000/private/tiny%3A1/json')
  })

  it('a reference with . or .. segments cannot climb out of /images/ in the request path', async () => {
    remote.onApi('GET', /^\/images\//, { status: 404, body: { message: 'No such image' } })
    await expect(docker.imagePresent('../../containers/x')).resolves.toBe(false)
    await expect(docker.imagePresent('a/./b')).resolves.toBe(false)
    expect(remote.api.map((c) => c.rawPath)).toEqual(['/images/%2E%2E/%2E%2E/containers/x/json', '/images/a/%2E/b/json'])
    // positive control: the plain reference still keeps its slashes
    await docker.imagePresent('org/img:1')
    expect(remote.api[2].rawPath).toBe('/images/org/img%3A1/json')
  })

  it('a present image under pullPolicy "missing" costs no shell command', async () => {
    remote.onApi('GET', /^\/images\//, { status: 200, body: {} })
    await expect(docker.ensureImage('redis:7', 'missing', null, '/w/cfg', () => undefined, {})).resolves.toBe('present')
    expect(remote.execs).toEqual([])
  })

  it('a pull with registry credentials: the password on stdin only, names quoted', async () => {
    remote.onExec(/docker image inspect/, { code: 1 })
    remote.onExec(/ pull /, { code: 0, stdout: 'pulled\n' })
    const image = '127.0.0.1:5000/private/tiny:1'
    const how = await docker.ensureImage(
      image,
      'missing',
      { username: "o'user", password: 'pw-s3cret', serverUrl: '127.0.0.1:5000' },
      '/w/cfg dir',
      () => undefined,
      {},
      false
    )
    expect(how).toBe('pulled')
    const pull = remote.execs.find((e) => / pull /.test(e.command))!
    // positive control: the credentials were really sent, on stdin, as a docker config
    expect(JSON.parse(String(pull.stdin))).toEqual({
      auths: { '127.0.0.1:5000': { auth: Buffer.from("o'user:pw-s3cret").toString('base64') } }
    })
    for (const e of remote.execs) for (const secret of ['pw-s3cret', "o'user", shq("o'user")]) expect(e.command).not.toContain(secret)
    expect(pull.command).toContain(`pull ${shq(image)}`)
    expect(pull.command).toContain(`d=${shq('/w/cfg dir')}`)
  })

  // The build's labels go on the image only: the legacy builder's container for a step that fails
  // carries none, and without --force-rm it stays, where no removal by label finds it.
  it('a build labels the image and asks that the intermediate containers go even when it fails', async () => {
    remote.onExec(/docker build/, { code: 0, stdout: 'sha256:abc\n' })
    const labels = labelFlagsOf(labelMap(OWNER, JOB, RUNNER))
    await buildImage(remote, `rch-action-${JOB}:0a1b2c3d`, '/w/a/Dockerfile', '/w/a', labels, () => undefined)
    const argv = ['docker', 'build', '-q', '--force-rm', ...labels, '-t', `rch-action-${JOB}:0a1b2c3d`, '-f', '/w/a/Dockerfile', '/w/a']
    // Run by the watcher that stops it once the channel is gone (see the cancel test in pull-limits.test.ts).
    expect(remote.execs).toHaveLength(1)
    expect(remote.execs[0].command.endsWith(`; watched ${argv.map(shq).join(' ')}`)).toBe(true)
  })
})

describe('containers', () => {
  const spec = (over: Partial<CreateSpec> = {}): CreateSpec => ({
    name: 'rch-fedcba9876543210-redis',
    image: 'redis:7',
    labels: labelMap(OWNER, JOB, RUNNER),
    network: 'rch-fedcba9876543210',
    aliases: ['redis', "svc'1"],
    ports: ['6379'],
    mounts: [{ source: '/work/jobs/a b/w', target: '/__w', readOnly: false }],
    env: { PASSWORD: 'hunter2-secret', CERT: 'line1\nline2-secret' },
    createOptions: ['--health-cmd', 'redis-cli ping; echo $HOME'],
    entrypoint: null,
    args: [],
    workdir: null,
    ...over
  })

  /** A container inspect answer (the fields inspectShape checks) for a created container. */
  const made = (image: string, labels: Record<string, string>) => ({
    Id: ID('c'),
    Config: { Env: null, Image: image, Labels: labels },
    State: { Running: false, Status: 'created', ExitCode: 0 },
    NetworkSettings: { Ports: null }
  })

  it('create: labels, names and options reach the shell only as shq-quoted words; env values only on stdin', async () => {
    remote.onExec(/docker.*create/, { code: 0, stdout: `${ID('c')}\n` })
    // Read back after a create through the CLI: the image and the job's labels as asked.
    remote.onApi('GET', /^\/containers\/c+\/json$/, {
      status: 200,
      body: made('redis:7', labelMap(OWNER, JOB, RUNNER))
    })
    await expect(docker.create(spec(), '/work/jobs/x')).resolves.toBe(ID('c'))
    expect(remote.execs).toHaveLength(1)
    const { command, stdin } = remote.execs[0]
    // The create runs inside cliShell's `/bin/sh -c '<inner>'`; the shell itself unquotes the inner text.
    const outer = command.slice(command.indexOf('/bin/sh -c ') + '/bin/sh -c '.length)
    const inner = sh(`printf '%s' ${outer}`).stdout.toString()
    expect(inner).toMatch(/^eval "\$\(cat\)"; docker create /)
    for (const word of [`dev.remote-container-hooks.runner=${RUNNER}`, "svc'1", 'redis-cli ping; echo $HOME', '/work/jobs/a b/w:/__w']) {
      expect(inner).toContain(` ${shq(word)} `)
    }
    expect(command).not.toMatch(/hunter2-secret|line2-secret/)
    // positive control: the values were delivered, on stdin
    expect(stdin).toContain('PASSWORD=hunter2-secret')
    expect(stdin).toContain(`export CERT=${shq('line1\nline2-secret')}`)
  })

  // docker takes the first word of the options that is no flag for the image, and the hook's labels
  // for the command: such a container is outside the job's cleanup.
  it("create through the CLI of a container without the job's labels or with another image: removed, and the options refused naming the field", async () => {
    remote.onExec(/docker.*create/, { code: 0, stdout: `${ID('c')}\n` })
    remote.onApi('GET', /^\/containers\/c+\/json$/, { status: 200, body: made('busybox', { 'rch-test': '1' }) })
    remote.onApi('DELETE', /^\/containers\/c+\?force=1&v=1$/, { status: 204, body: null })
    const err = await docker.create(spec({ optionsField: 'args.services.0.createOptions' }), '/work/jobs/x').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as Error).message).toMatch(
      /^args\.services\.0\.createOptions: docker took "busybox" for the image, not redis:7 .*; the container lacks the job's labels \(dev\.remote-container-hooks\.owner, .*\); the container was removed$/
    )
    expect(remote.api.map((a) => `${a.method} ${a.path.replace(/c{64}/, 'C')}`)).toEqual([
      'GET /containers/C/json',
      'DELETE /containers/C?force=1&v=1'
    ])
  })

  it('create without options goes to the Engine API with the body docker create would send; env values only in that body', async () => {
    remote.onApi('POST', /^\/containers\/create\?name=/, { status: 201, body: { Id: ID('e') } })
    const s = spec({
      createOptions: [],
      ports: ['6379', '8080:80/udp'],
      mounts: [
        ...spec().mounts,
        { source: 'vol', target: '/v', readOnly: true },
        { source: null, target: '/anon', readOnly: false },
        { source: '/work/externals/abc', target: '/__e', readOnly: true, existing: true }
      ],
      entrypoint: 'tail',
      args: ['-f', '/dev/null']
    })
    await expect(docker.create(s, '/work/jobs/x')).resolves.toBe(ID('e'))
    expect(remote.execs).toEqual([])
    expect(remote.api).toHaveLength(1)
    expect(remote.api[0].path).toBe(`/containers/create?name=${s.name}`)
    expect(remote.api[0].body).toEqual({
      Image: 'redis:7',
      Env: ['PASSWORD=hunter2-secret', 'CERT=line1\nline2-secret'],
      Labels: labelMap(OWNER, JOB, RUNNER),
      Entrypoint: ['tail'],
      Cmd: ['-f', '/dev/null'],
      ExposedPorts: { '6379/tcp': {}, '80/udp': {} },
      Volumes: { '/anon': {} },
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        Binds: ['/work/jobs/a b/w:/__w'],
        Mounts: [
          { Type: 'volume', Source: 'vol', Target: '/v', ReadOnly: true, VolumeOptions: { Labels: labelMap(OWNER, JOB, RUNNER) } },
          { Type: 'bind', Source: '/work/externals/abc', Target: '/__e', ReadOnly: true }
        ],
        NetworkMode: s.network,
        PortBindings: { '6379/tcp': [{ HostIp: '', HostPort: '' }], '80/udp': [{ HostIp: '', HostPort: '8080' }] }
      },
      NetworkingConfig: { EndpointsConfig: { [s.network!]: { Aliases: ['redis', "svc'1"] } } }
    })
  })

  it('what only the CLI reads exactly goes to the CLI: options, port ranges or addresses, a read-only anonymous volume', () => {
    const plain = spec({ createOptions: [] })
    expect(createBody(plain)).not.toBeNull()
    expect(createBody(spec())).toBeNull()
    expect(createBody({ ...plain, ports: ['8000-8001:80-81'] })).toBeNull()
    expect(createBody({ ...plain, ports: ['127.0.0.1:80:80'] })).toBeNull()
    expect(createBody({ ...plain, mounts: [{ source: null, target: '/a', readOnly: true }] })).toBeNull()
  })

  it('an API create answering without a container id fails clearly', async () => {
    remote.onApi('POST', /^\/containers\/create/, { status: 201, body: { Id: '../x' } })
    await expect(docker.create(spec({ createOptions: [] }), '/w')).rejects.toThrow('docker create redis:7 returned no container id')
  })

  it('create fails clearly when docker prints no container id', async () => {
    remote.onExec(/docker.*create/, { code: 0, stdout: 'WARNING: something\n' })
    await expect(docker.create(spec(), '/work/jobs/x')).rejects.toThrow('docker create redis:7 printed no container id')
  })

  it('start goes to the engine; its failure names the container', async () => {
    remote.onApi('POST', new RegExp(`^/containers/${ID('c')}/start$`), { status: 204 })
    remote.onApi('POST', /^\/containers\/.*\/start$/, { status: 500, body: { message: 'port is already allocated' } })
    await docker.start(ID('c'), 'redis')
    await expect(docker.start(ID('d'), 'redis-1')).rejects.toThrow('docker start (redis-1): port is already allocated')
    expect(remote.execs).toEqual([])
  })

  it('logs: a bounded tail through the CLI, the id quoted', async () => {
    remote.onExec(/docker logs/, { code: 0, stdout: 'ready\n' })
    await expect(docker.logs(ID('c'))).resolves.toBe('ready\n')
    expect(remote.execs[0].command).toBe(`docker logs --tail 100 ${shq(ID('c'))} 2>&1`)
  })
})

describe('removeOwned', () => {
  const filter = JSON.stringify({ label: [`${LABEL_OWNER}=${OWNER}`] })

  function scriptListing(containers: string[], networks: string[], volumes: string[], images: string[] = []): void {
    remote.onApi('GET', /^\/containers\/json/, { status: 200, body: containers.map((Id) => ({ Id })) })
    remote.onApi('GET', /^\/networks\?/, { status: 200, body: networks.map((Id) => ({ Id })) })
    remote.onApi('GET', /^\/volumes\?/, { status: 200, body: { Volumes: volumes.length ? volumes.map((Name) => ({ Name })) : null } })
    remote.onApi('GET', /^\/images\/json\?/, { status: 200, body: images.map((Id) => ({ Id, RepoTags: [`rch-action-${JOB}:0a1b2c3d`] })) })
    remote.onApi('DELETE', new RegExp(`^/containers/${ID('2')}`), { status: 404, body: { message: 'No such container' } })
    remote.onApi('DELETE', /./, { status: 204 })
  }

  it('removes containers, then networks, then volumes by label, and counts them', async () => {
    scriptListing([ID('1'), ID('2')], [ID('3')], ['cache-vol'])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 2, networks: 1, volumes: 1, images: 0 })
    const calls = remote.api.map((c) => `${c.method} ${c.path}`)
    expect(calls.filter((c) => c.startsWith('GET'))).toEqual(
      expect.arrayContaining([
        `GET /containers/json?all=1&filters=${filter}`,
        `GET /networks?filters=${filter}`,
        `GET /volumes?filters=${filter}`
      ])
    )
    const deletes = calls.filter((c) => c.startsWith('DELETE'))
    expect(deletes.slice(0, 2).sort()).toEqual([`DELETE /containers/${ID('1')}?force=1&v=1`, `DELETE /containers/${ID('2')}?force=1&v=1`])
    expect(deletes.slice(2)).toEqual([`DELETE /networks/${ID('3')}`, 'DELETE /volumes/cache-vol?force=1'])
    // the networks and volumes were listed only once the containers were gone
    expect(calls.lastIndexOf(`GET /networks?filters=${filter}`)).toBeGreaterThan(calls.lastIndexOf(deletes[1]))
    expect(remote.execs).toEqual([])
  })

  // A container step killed between its `docker build` and the image's removal (or one whose
  // container could not be created) leaves the image it built: labelled at the build, and found
  // only if the removal by label lists images too. Before, cleanup_job, the next prepare_job's prune
  // and reap listed containers, networks and volumes only, and such images stayed on static hosts.
  it('removes the images a container action built (by label, after the containers), and counts them', async () => {
    const img = (c: string): string => `sha256:${c.repeat(64)}`
    remote.onApi('DELETE', new RegExp(`^/images/${img('b')}`), { status: 404, body: { message: 'No such image' } })
    remote.onApi('DELETE', new RegExp(`^/images/${img('c')}`), {
      status: 409,
      body: { message: 'image is being used by running container' }
    })
    scriptListing([ID('1')], [], [], [img('a'), img('b'), img('c')])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 1, networks: 0, volumes: 0, images: 1 })
    const calls = remote.api.map((c) => `${c.method} ${c.path}`)
    expect(calls).toContain(`GET /images/json?filters=${filter}`)
    const imageDeletes = calls.filter((c) => c.startsWith('DELETE /images/'))
    expect(imageDeletes.sort()).toEqual([img('a'), img('b'), img('c')].map((i) => `DELETE /images/${i}?force=1`))
    // listed only once the containers (which may use them) were gone
    expect(calls.lastIndexOf(`GET /images/json?filters=${filter}`)).toBeGreaterThan(
      calls.indexOf(`DELETE /containers/${ID('1')}?force=1&v=1`)
    )
    expect(describeCounts({ containers: 1, networks: 0, volumes: 0, images: 1 })).toBe('1 containers, 0 networks, 0 volumes, 1 images')
    expect(describeCounts({ containers: 1, networks: 0, volumes: 0, images: 0 })).toBe('1 containers, 0 networks, 0 volumes')
  })

  // Two runners' jobs on one static host whose workflows name the same volume (`pgdata:/var/lib/…`):
  // job A creates it (labelled A's), job B finds it existing and mounts it too. A's cleanup (or its
  // runner's next prepare_job prune, or reap) then meets the engine's 409 "volume is in use" from
  // B's container. Before, that failed A's cleanup_job, and the next prepare_job of A's runner on
  // that host as long as B ran; the volume now stays until B is done, and goes at the next removal.
  it("a volume another job's container uses is left to it, not a failure; the next removal takes it", async () => {
    const JOB_A = 'aaaaaaaaaaaaaaaa'
    const JOB_B = 'bbbbbbbbbbbbbbbb'
    const volumes = new Map<string, Record<string, string>>()
    /** The containers using each volume, by job. */
    const users = new Map<string, Set<string>>()
    remote.onApi('GET', /^\/volumes\/pgdata$/, () =>
      volumes.has('pgdata') ? { status: 200, body: { Name: 'pgdata' } } : { status: 404, body: { message: 'no such volume' } }
    )
    remote.onApi('POST', /^\/volumes\/create$/, (c) => {
      const b = c.body as { Name: string; Labels: Record<string, string> }
      if (!volumes.has(b.Name)) volumes.set(b.Name, b.Labels)
      return { status: 201, body: { Name: b.Name } }
    })
    remote.onApi('GET', /^\/containers\/json/, { status: 200, body: [] })
    remote.onApi('GET', /^\/networks\?/, { status: 200, body: [] })
    remote.onApi('GET', /^\/images\/json\?/, { status: 200, body: [] })
    remote.onApi('GET', /^\/volumes\?/, (c) => {
      const want = (JSON.parse(decodeURIComponent(c.path.split('filters=')[1])) as { label: string[] }).label[0]
      const [k, v] = want.split('=')
      const hits = [...volumes].filter(([, labels]) => labels[k] === v).map(([Name]) => ({ Name }))
      return { status: 200, body: { Volumes: hits.length ? hits : null } }
    })
    remote.onApi('DELETE', /^\/volumes\/pgdata\?force=1$/, () => {
      if (users.get('pgdata')?.size) return { status: 409, body: { message: `remove pgdata: volume is in use - [${ID('b')}]` } }
      volumes.delete('pgdata')
      return { status: 204 }
    })
    const labelsA = labelMap(OWNER, JOB_A, RUNNER)
    const labelsB = labelMap('1111111111111111', JOB_B, 'runner-2')
    await expect(docker.ensureVolume('pgdata', labelsA)).resolves.toBe('created')
    await expect(docker.ensureVolume('pgdata', labelsB)).resolves.toBe('existing')
    users.set('pgdata', new Set([JOB_A, JOB_B]))
    // A's containers are removed first; B's still uses the volume
    users.get('pgdata')!.delete(JOB_A)
    await expect(docker.removeOwned(LABEL_JOB, JOB_A)).resolves.toEqual({
      containers: 0,
      networks: 0,
      volumes: 0,
      images: 0,
      keptInUse: ['pgdata']
    })
    expect(volumes.has('pgdata')).toBe(true)
    // positive control: the removal was asked for, and the engine refused it as in use
    expect(remote.api.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual(['/volumes/pgdata?force=1'])
    // B is done: the next removal by A's runner's owner label (its next prune) takes it
    users.get('pgdata')!.delete(JOB_B)
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 0, networks: 0, volumes: 1, images: 0 })
    expect(volumes.has('pgdata')).toBe(false)
  })

  // prepare_job removes its runner's leftovers while it makes its own network and containers: the
  // job being prepared (a job id new to the machine) is spared, whatever else is listed.
  it("sparing a job: its containers, network, volume and image stay; every other owner's leftover goes (control: without it, all go)", async () => {
    const own = { [LABEL_JOB]: JOB }
    const other = { [LABEL_JOB]: '0123456789abcdef' }
    const list = () => {
      remote.onApi('GET', /^\/containers\/json/, {
        status: 200,
        // a listing's odd entries (no labels, labels not a map, the label on the prototype) are not the job's
        body: [
          { Id: ID('1'), Labels: own },
          { Id: ID('2'), Labels: other },
          { Id: ID('4') },
          { Id: ID('5'), Labels: JOB },
          { Id: ID('6'), Labels: JSON.parse(`{"__proto__": {"${LABEL_JOB}": "${JOB}"}}`) as object }
        ]
      })
      remote.onApi('GET', /^\/networks\?/, {
        status: 200,
        body: [
          { Id: ID('3'), Labels: own },
          { Id: ID('7'), Labels: other }
        ]
      })
      remote.onApi('GET', /^\/volumes\?/, {
        status: 200,
        body: {
          Volumes: [
            { Name: 'mine', Labels: own },
            { Name: 'old', Labels: other }
          ]
        }
      })
      remote.onApi('GET', /^\/images\/json\?/, { status: 200, body: [{ Id: `sha256:${ID('8')}`, Labels: own }] })
      remote.onApi('DELETE', /./, { status: 204 })
    }
    list()
    await expect(docker.removeOwned(LABEL_OWNER, OWNER, JOB)).resolves.toEqual({ containers: 4, networks: 1, volumes: 1, images: 0 })
    const deleted = (): string[] => remote.api.filter((c) => c.method === 'DELETE').map((c) => c.path.split('?')[0])
    expect(deleted().sort()).toEqual(
      [ID('2'), ID('4'), ID('5'), ID('6')]
        .map((i) => `/containers/${i}`)
        .concat([`/networks/${ID('7')}`, '/volumes/old'])
        .sort()
    )
    remote.api.length = 0
    list()
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 5, networks: 2, volumes: 2, images: 1 })
  })

  it('a volume removal failing otherwise than "in use" or "gone" is still a failure', async () => {
    remote.onApi('DELETE', /^\/volumes\/cache-vol/, { status: 500, body: { message: 'daemon broke' } })
    scriptListing([], [], ['cache-vol'])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow('daemon broke')
  })

  it('a listed image id that is not one is refused before it becomes a request path', async () => {
    scriptListing([], [], [], ['../../containers/x'])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/images with an unexpected name: "..\/..\/containers\/x"/)
    expect(remote.api.filter((c) => c.method === 'DELETE')).toEqual([])
  })

  it('nothing labelled: zero counts and no removal', async () => {
    scriptListing([], [], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 0, networks: 0, volumes: 0, images: 0 })
    expect(remote.api.filter((c) => c.method === 'DELETE')).toEqual([])
  })

  it('a listed name that is not an id is refused before it becomes a request path', async () => {
    scriptListing(['../../images/redis'], [], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toBeInstanceOf(UnexpectedAnswer)
    // positive control: the hostile listing was really read; nothing was removed
    expect(remote.api.filter((c) => c.path.startsWith('/containers/json')).length).toBe(1)
    expect(remote.api.filter((c) => c.method !== 'GET')).toEqual([])
  })

  it("with no containers (a prune of nothing) each other listing is asked once, beside the containers', and not again", async () => {
    scriptListing([], [ID('3')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 0, networks: 1, volumes: 0, images: 0 })
    const gets = remote.api.filter((c) => c.method === 'GET').map((c) => c.path.split('?')[0])
    expect(gets.sort()).toEqual(['/containers/json', '/images/json', '/networks', '/volumes'])
  })

  // The engine is the job's (root on the VM): a listing of another shape is docker's answer gone
  // wrong, refused as such before anything is removed, not a TypeError out of the hook.
  it.each([
    ['containers listed as an object', /^\/containers\/json/, { Id: ID('1') }, 'containers'],
    ['a null in the container list', /^\/containers\/json/, [{ Id: ID('1') }, null], 'containers'],
    ['networks listed as a string', /^\/networks\?/, 'nope', 'networks'],
    ['volumes as an object, not a list', /^\/volumes\?/, { Volumes: { Name: 'x' } }, 'volumes']
  ])('%s is an unexpected answer and nothing is removed', async (_what, path, body, what) => {
    remote.onApi('GET', path, { status: 200, body })
    scriptListing([], [], [])
    const err = await docker.removeOwned(LABEL_OWNER, OWNER).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnexpectedAnswer)
    expect((err as Error).message).toMatch(new RegExp(`docker listed ${what} as something other than a list`))
    // positive control: the hostile listing was really sent
    expect(remote.api.some((c) => c.method === 'GET' && path.test(c.path))).toBe(true)
    expect(remote.api.filter((c) => c.method === 'DELETE')).toEqual([])
  })

  it("a network another container joined (not ours) is removed after that container is disconnected; the engine's 403 alone left it", async () => {
    let deletes = 0
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('3')}$`), () =>
      ++deletes === 1
        ? { status: 403, body: { message: 'error while removing network: network rch-j1 has active endpoints' } }
        : { status: 204 }
    )
    remote.onApi('GET', new RegExp(`^/networks/${ID('3')}$`), { status: 200, body: { Containers: { [ID('9')]: { Name: 'intruder' } } } })
    remote.onApi('POST', /\/disconnect$/, { status: 200 })
    scriptListing([], [ID('3')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 0, networks: 1, volumes: 0, images: 0 })
    const calls = remote.api.filter((c) => c.method !== 'GET' || c.path.startsWith('/networks/')).map((c) => `${c.method} ${c.path}`)
    expect(calls).toEqual([
      `DELETE /networks/${ID('3')}`,
      `GET /networks/${ID('3')}`,
      `POST /networks/${ID('3')}/disconnect`,
      `DELETE /networks/${ID('3')}`
    ])
    expect(remote.api.find((c) => c.method === 'POST')!.body).toEqual({ Container: ID('9'), Force: true })
  })

  it(`a network a hostile listing says 1,000 containers joined: at most REMOVALS_AT_ONCE (${REMOVALS_AT_ONCE}) disconnects open at once, each sent`, async () => {
    let deletes = 0
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('3')}$`), () =>
      ++deletes === 1 ? { status: 403, body: { message: 'has active endpoints' } } : { status: 204 }
    )
    const joined = Array.from({ length: 1000 }, (_, i) => i.toString(16).padStart(64, '0'))
    remote.onApi('GET', new RegExp(`^/networks/${ID('3')}$`), {
      status: 200,
      body: { Containers: Object.fromEntries(joined.map((j) => [j, {}])) }
    })
    remote.onApi('POST', /\/disconnect$/, { status: 200 })
    scriptListing([], [ID('3')], [])
    // Every Engine call opens its own socket: the sockets open at once are the calls in flight.
    let open = 0
    let most = 0
    const openSocket = remote.openSocket.bind(remote)
    remote.openSocket = async (path) => {
      open++
      most = Math.max(most, open)
      const s = await openSocket(path)
      s.once('close', () => open--)
      return s
    }
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toMatchObject({ networks: 1 })
    expect(remote.api.filter((c) => c.method === 'POST')).toHaveLength(1000) // positive control: every one was sent
    expect(most).toBeLessThanOrEqual(REMOVALS_AT_ONCE + 1)
  })

  it('a joined container whose id is not an id is refused before it becomes a request', async () => {
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('3')}$`), { status: 403, body: { message: 'has active endpoints' } })
    remote.onApi('GET', new RegExp(`^/networks/${ID('3')}$`), { status: 200, body: { Containers: { '../../containers/x': {} } } })
    scriptListing([], [ID('3')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/a container id that is not one: "..\/..\/containers\/x"/)
    expect(remote.api.some((c) => c.method === 'GET' && c.path === `/networks/${ID('3')}`)).toBe(true) // control: it was read
    expect(remote.api.filter((c) => c.method === 'POST')).toEqual([])
  })

  it('a stale endpoint (ep-<id>, its container gone) is disconnected by the name it was made for', async () => {
    let deletes = 0
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('3')}$`), () =>
      ++deletes === 1 ? { status: 403, body: { message: 'has active endpoints' } } : { status: 204 }
    )
    const ep = `ep-${'e'.repeat(64)}`
    remote.onApi('GET', new RegExp(`^/networks/${ID('3')}$`), {
      status: 200,
      body: {
        Containers: {
          [ep]: { Name: 'ghost_1', EndpointID: 'e'.repeat(64) },
          [ID('9')]: { Name: 'intruder' },
          // the same container twice (its id, and its id as a stale endpoint's name): one disconnect
          [`ep-${'f'.repeat(64)}`]: { Name: ID('9') }
        }
      }
    })
    remote.onApi('POST', /\/disconnect$/, { status: 200 })
    scriptListing([], [ID('3')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 0, networks: 1, volumes: 0, images: 0 })
    expect(remote.api.filter((c) => c.method === 'POST').map((c) => c.body)).toEqual([
      { Container: 'ghost_1', Force: true },
      { Container: ID('9'), Force: true }
    ])
    expect(remote.api.filter((c) => c.method === 'DELETE').map((c) => c.path)).toEqual([`/networks/${ID('3')}`, `/networks/${ID('3')}`])
  })

  it.each([
    ['a load balancer endpoint', `lb-${'a'.repeat(12)}`, { Name: 'lb' }],
    ['a stale endpoint without a name', `ep-${'e'.repeat(64)}`, {}],
    ['a stale endpoint whose name is not a name', `ep-${'e'.repeat(64)}`, { Name: '../x' }]
  ])('%s is refused before anything is disconnected', async (_what, key, entry) => {
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('3')}$`), { status: 403, body: { message: 'has active endpoints' } })
    remote.onApi('GET', new RegExp(`^/networks/${ID('3')}$`), { status: 200, body: { Containers: { [key]: entry } } })
    scriptListing([], [ID('3')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/a container id that is not one/)
    expect(remote.api.some((c) => c.method === 'GET' && c.path === `/networks/${ID('3')}`)).toBe(true)
    expect(remote.api.filter((c) => c.method === 'POST')).toEqual([])
  })

  it('a network that cannot go does not keep the volumes: every removal is tried, the first failure reported', async () => {
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('4')}$`), { status: 500, body: { message: 'boom' } })
    scriptListing([ID('1')], [ID('4')], ['cache-vol'])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/boom/)
    const deletes = remote.api.filter((c) => c.method === 'DELETE').map((c) => c.path)
    expect(deletes).toEqual([`/containers/${ID('1')}?force=1&v=1`, `/networks/${ID('4')}`, '/volumes/cache-vol?force=1'])
  })

  it('a listing that fails after a removal failed reports the removal; a lost connection ends it at once', async () => {
    remote.onApi('DELETE', new RegExp(`^/containers/${ID('1')}`), { status: 500, body: { message: 'container stuck' } })
    remote.onApi('GET', /^\/networks\?/, { status: 500, body: { message: 'listing broke' } })
    scriptListing([ID('1')], [], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/container stuck/)
  })

  it('another failure to remove a network fails as it is, without a retry', async () => {
    remote.onApi('DELETE', new RegExp(`^/networks/${ID('4')}$`), { status: 500, body: { message: 'boom' } })
    scriptListing([], [ID('4')], [])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/boom/)
    expect(remote.api.filter((c) => c.path === `/networks/${ID('4')}`).map((c) => c.method)).toEqual(['DELETE'])
  })

  it('a hostile volume name is refused too', async () => {
    scriptListing([], [], ['../x'])
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).rejects.toThrow(/volumes with an unexpected name: "..\/x"/)
    expect(remote.api.filter((c) => c.method === 'DELETE')).toEqual([])
  })
})

describe('removals from a listing the VM gives are made a few at a time', () => {
  // The listing comes from the VM's docker (the job is root there): 200,000 made-up ids must not
  // become 200,000 channels opened at once.
  const track = () => {
    let now = 0
    let most = 0
    const fn = async (i: number): Promise<number> => {
      most = Math.max(most, ++now)
      await new Promise((r) => setImmediate(r))
      now--
      if (i % 7 === 3) throw new Error(`no ${i}`)
      return i * 2
    }
    return { fn, most: () => most }
  }
  const items = Array.from({ length: 1000 }, (_, i) => i)

  it(`at most REMOVALS_AT_ONCE (${REMOVALS_AT_ONCE}) in flight, every one settled, in order`, async () => {
    const t = track()
    const out = await settledInTurn(items, REMOVALS_AT_ONCE, t.fn)
    expect(t.most()).toBe(REMOVALS_AT_ONCE)
    expect(out.values).toEqual(items.filter((i) => i % 7 !== 3).map((i) => i * 2))
    expect([out.failed, out.first, out.stopped]).toEqual([143, new Error('no 3'), undefined])
  })

  it('control: all at once (what Promise.allSettled over the listing did) has all 1000 in flight', async () => {
    const t = track()
    await Promise.allSettled(items.map(t.fn))
    expect(t.most()).toBe(1000)
  })

  it('a lost connection stops the removals not yet begun (each would wait its bound)', async () => {
    let begun = 0
    const out = await settledInTurn(
      items,
      REMOVALS_AT_ONCE,
      async (i) => {
        begun++
        await new Promise((r) => setImmediate(r))
        if (i === 0) throw new TransportError('the connection to h is gone', 'lost')
        return i
      },
      (x) => x instanceof TransportError
    )
    expect(begun).toBeLessThanOrEqual(2 * REMOVALS_AT_ONCE)
    expect(out.stopped).toEqual(new TransportError('the connection to h is gone', 'lost'))
  })

  it('removeOwned removes every container of a long listing', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `${i.toString(16).padStart(4, '0')}${'a'.repeat(60)}`)
    remote.onApi('GET', /^\/containers\/json/, { status: 200, body: ids.map((Id) => ({ Id })) })
    remote.onApi('GET', /^\/networks\?/, { status: 200, body: [] })
    remote.onApi('GET', /^\/volumes\?/, { status: 200, body: { Volumes: null } })
    remote.onApi('GET', /^\/images\/json\?/, { status: 200, body: [] })
    remote.onApi('DELETE', /./, { status: 204 })
    await expect(docker.removeOwned(LABEL_OWNER, OWNER)).resolves.toEqual({ containers: 200, networks: 0, volumes: 0, images: 0 })
    expect(remote.api.filter((c) => c.method === 'DELETE')).toHaveLength(200)
  })

  // The engine fails each removal with an error of a megabyte (not Latin-1, so two bytes a
  // character in V8): only the first failure is kept, and its message is a copy, not a cut of the
  // megabyte (which would keep all of it alive). Before, every failure was kept: 120 of them held
  // well over 100 MiB.
  it('removals failing with a long error each: what stays in memory is one error, not one per removal', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const ids = Array.from({ length: 120 }, (_, i) => `${i.toString(16).padStart(4, '0')}${'b'.repeat(60)}`)
    // ids repeated: each is asked once
    remote.onApi('GET', /^\/containers\/json/, { status: 200, body: [...ids, ...ids].map((Id) => ({ Id })) })
    const big = { message: `refused € ${'x '.repeat(512 * 1024)}` }
    remote.onApi('DELETE', /^\/containers\//, { status: 500, body: big })
    gc()
    const before = process.memoryUsage().heapUsed
    const err = await docker.removeOwned(LABEL_OWNER, OWNER).catch((e: unknown) => e)
    gc()
    const grown = process.memoryUsage().heapUsed - before
    expect(err).toBeInstanceOf(EngineError)
    expect(grown).toBeLessThan(40 * 1024 * 1024)
    expect(remote.api.filter((c) => c.method === 'DELETE')).toHaveLength(120)
  }, 60_000)
})
