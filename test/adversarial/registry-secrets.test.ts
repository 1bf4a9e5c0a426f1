// A registry is as much the job's to choose as its image: a hostile or broken one can echo the
// credentials it was sent back into docker's error, or hang a pull until the connection to the VM
// drops. Neither may leave the password in the step log, in hook.log, or in a file on the VM.
// Through a registry stub on loopback (docker's own client really sends it the credentials) and a
// TCP relay in front of the test VM's sshd that can cut every connection and refuse new ones.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, type Dirent } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { errorLines, leftovers, NOTHING, staticProvider, testVm, waitForOutput } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import { waitUntil } from '../helpers/wait'

const vm = testVm()
/** The hook wants its log in a private folder. */
const logDir = mkdtempSync(join(tmpdir(), 'rch-registry-secrets-'))

/** What the stub does with a request that carries credentials: refuse them, quoting them back, or never answer. */
let mode: 'echo' | 'hang' = 'echo'
/** The credentials docker sent, decoded (the positive control that the stub was really asked). */
const seen: string[] = []
const held = new Set<Socket>()
let registry: HttpServer
let registryPort = 0

let relay: Server
let relayPort = 0
let refuse = false
const relayed = new Set<Socket>()

beforeAll(async () => {
  registry = createHttpServer((req, res) => {
    const auth = req.headers.authorization ?? ''
    const challenge = {
      'WWW-Authenticate': 'Basic realm="stub"',
      'Content-Type': 'application/json',
      'Docker-Distribution-API-Version': 'registry/2.0'
    }
    if (!auth.startsWith('Basic ')) {
      res.writeHead(401, challenge)
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }))
      return
    }
    const creds = Buffer.from(auth.slice(6), 'base64').toString('utf8')
    seen.push(creds)
    if (mode === 'hang') {
      held.add(req.socket)
      return
    }
    res.writeHead(401, challenge)
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: `credentials ${creds} refused (basic ${auth.slice(6)})` }] }))
  })
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r))
  registryPort = (registry.address() as AddressInfo).port

  relay = createServer((client) => {
    if (refuse) return client.destroy()
    const server = createConnection({ host: vm.host, port: vm.port })
    for (const s of [client, server]) {
      relayed.add(s)
      s.on('error', () => undefined)
      s.on('close', () => relayed.delete(s))
    }
    client.pipe(server)
    server.pipe(client)
  })
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r))
  relayPort = (relay.address() as AddressInfo).port
})

afterAll(async () => {
  for (const s of [...held, ...relayed]) s.destroy()
  await new Promise((r) => registry.close(r))
  await new Promise((r) => relay.close(r))
  rmSync(logDir, { recursive: true, force: true })
})

const runners: FakeRunner[] = []
afterEach(async () => {
  mode = 'echo'
  refuse = false
  for (const r of runners.splice(0)) {
    await r.cleanup()
    r.dispose()
  }
})

function newRunner(viaRelay = false): FakeRunner & { logFile: string } {
  const logFile = join(logDir, `hook-${runners.length}.log`)
  const r = new FakeRunner({
    config: {
      log: { file: logFile, level: 'debug' },
      provider: staticProvider(vm, viaRelay ? { host: '127.0.0.1', port: relayPort, knownHostsFile: relayKnownHosts() } : {}, {
        acquireTimeoutSeconds: 60
      }),
      // `missing`: the stub's images are never there, so they are pulled anyway; `always` would also
      // send docker after the local-only job image (rch-test/tiny) to a public registry.
      images: { pullPolicy: 'missing', pullTimeoutSeconds: 600 },
      timeouts: { healthSeconds: 60, connectSeconds: 3 }
    }
  })
  runners.push(r)
  return Object.assign(r, { logFile })
}

/** The VM's own host key, pinned for the relay's port. */
function relayKnownHosts(): string {
  const file = join(logDir, 'relay_known_hosts')
  if (!existsSync(file)) {
    const key = readFileSync(vm.knownHostsFile, 'utf8').split('\n')[0].split(' ').slice(1).join(' ')
    writeFileSync(file, `[127.0.0.1]:${relayPort} ${key}\n`)
  }
  return file
}

const secretCreds = () => ({ username: `user-${randomBytes(4).toString('hex')}`, password: `pw-${randomBytes(12).toString('hex')}` })
const b64 = (c: { username: string; password: string }) => Buffer.from(`${c.username}:${c.password}`).toString('base64')

/** Every trace of `password` (plain or inside docker's base64 auth) in what the runner and its log got. */
function traces(r: HookRun, logFile: string, c: { username: string; password: string }): string[] {
  // A log that was never written would hide nothing: it must be there to be searched.
  expect(existsSync(logFile)).toBe(true)
  const log = readFileSync(logFile, 'utf8')
  const where: string[] = []
  for (const [name, text] of [
    ['stdout', r.stdout],
    ['stderr', r.stderr],
    ['hook.log', log]
  ] as const) {
    if (text.includes(c.password)) where.push(`${name}: password`)
    if (text.includes(b64(c))) where.push(`${name}: base64 auth`)
  }
  return where
}

/** The VM-side files under this runner's job folders that hold the password (plain or base64). */
function filesOnVmWith(runner: FakeRunner, c: { username: string; password: string }): string[] {
  const jobs = join(vm.workRoot, 'jobs')
  const hits: string[] = []
  // The VM removes these folders while tests wait for it: an entry gone mid-walk holds nothing.
  const gone = (e: unknown): void => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const walk = (d: string): void => {
    let entries: Dirent[] = []
    try {
      entries = readdirSync(d, { withFileTypes: true })
    } catch (e) {
      gone(e)
    }
    for (const e of entries) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) {
        let text = ''
        try {
          text = readFileSync(p, 'utf8')
        } catch (e) {
          gone(e)
        }
        if (text.includes(c.password) || text.includes(b64(c))) hits.push(p)
      }
    }
  }
  if (existsSync(jobs)) for (const d of readdirSync(jobs)) if (d.startsWith(`${runner.owner}-`)) walk(join(jobs, d))
  return hits
}

/** prepare_job of a job container pulled from the quoting stub with `c`, and what docker sent the stub meanwhile. */
async function prepareWith(runner: FakeRunner, c: { username: string; password: string }, name: string) {
  const before = seen.length
  const image = `127.0.0.1:${registryPort}/echo/${name}:1`
  const r = await runner.call(
    'prepare_job',
    { container: runner.jobContainer(image, { registry: { ...c, serverUrl: `127.0.0.1:${registryPort}` } }), services: [] },
    { state: null }
  )
  return { r, sent: seen.slice(before) }
}

describe('a registry that quotes the credentials back in its refusal', () => {
  test('prepare_job: the refusal reaches the step log masked, and the password is nowhere', async () => {
    const runner = newRunner()
    const logFile = runner.logFile
    const c = secretCreds()
    const { r, sent } = await prepareWith(runner, c, 'image')
    // positive control: docker sent the stub these credentials, and its quote of them came back (masked)
    expect(sent).toContain(`${c.username}:${c.password}`)
    expect(errorLines(r)).toHaveLength(1)
    expect(errorLines(r)[0]).toContain(`credentials ${c.username}:*** refused`)
    expect(r.code).not.toBe(0)
    expect(traces(r, logFile, c)).toEqual([])
    expect(readFileSync(logFile, 'utf8')).toContain('***')
    expect(filesOnVmWith(runner, c)).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  })

  test("a password of several lines (a JSON key file, as Google's registries take one): sent whole, and no line of it shows", async () => {
    const runner = newRunner()
    const logFile = runner.logFile
    const c = {
      username: '_json_key',
      password: `{\n  "private_key_id": "${randomBytes(8).toString('hex')}",\n  "private_key": "${randomBytes(24).toString('base64')}"\n}\n`
    }
    const { r, sent } = await prepareWith(runner, c, 'json-key')
    // positive control: docker sent the stub the password whole, line breaks and all, and it was quoted back
    expect(sent).toContain(`${c.username}:${c.password}`)
    expect(r.code).not.toBe(0)
    expect(errorLines(r).join('\n')).toContain('refused')
    const lines = c.password
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length >= 3)
    expect(lines).toHaveLength(2)
    const log = readFileSync(logFile, 'utf8')
    const shown = lines.filter((l) => [r.stdout, r.stderr, log].some((text) => text.includes(l)))
    expect(shown).toEqual([])
    expect(traces(r, logFile, c)).toEqual([])
    expect(filesOnVmWith(runner, c)).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  })

  test('run_container_step without state: the same, for a container action pulled with credentials', async () => {
    const runner = newRunner()
    const logFile = runner.logFile
    const c = secretCreds()
    const image = `127.0.0.1:${registryPort}/echo/action:1`
    const before = seen.length
    const { args } = runner.containerStep({ image, entryPoint: 'sh', args: ['-c', 'echo ran'] })
    const r = await runner.call(
      'run_container_step',
      { ...args, registry: { ...c, serverUrl: `127.0.0.1:${registryPort}` } },
      { state: null }
    )
    expect(seen.slice(before)).toContain(`${c.username}:${c.password}`)
    expect(errorLines(r).join('\n')).toContain(`credentials ${c.username}:*** refused`)
    expect(r.code).not.toBe(0)
    expect(r.stdout).not.toContain('ran\n')
    expect(traces(r, logFile, c)).toEqual([])
    expect(filesOnVmWith(runner, c)).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  })
})

/**
 * prepare_job through the relay, its service pulled with credentials from the stub, which holds the
 * pull: resolves once docker has sent the credentials (the stub saw them) and the pull hangs.
 */
async function hungPull(name: string) {
  mode = 'hang'
  const runner = newRunner(true)
  const c = secretCreds()
  const image = `127.0.0.1:${registryPort}/hang/${name}:1`
  const before = seen.length
  const { child, done } = runner.start(
    'prepare_job',
    {
      container: runner.jobContainer(testImages.tiny),
      services: [runner.service(image, { registry: { ...c, serverUrl: `127.0.0.1:${registryPort}` } })]
    },
    { state: null }
  )
  await waitForOutput(child, 'copied ')
  await waitUntil(() => seen.length > before, 20_000)
  expect(seen.slice(before)).toContain(`${c.username}:${c.password}`)
  return { runner, c, image, done }
}

test('the connection to the VM drops during a pull with credentials: the hook fails, and the VM drops the docker config itself', async () => {
  const { runner, c, done } = await hungPull('image')
  // positive control: while the pull hangs, the VM holds the credentials in the job's docker config
  expect(filesOnVmWith(runner, c)).toEqual([expect.stringMatching(/\/docker-config-\d+\/config\.json$/)])

  refuse = true
  for (const s of relayed) s.destroy()
  const r = await done
  expect(r.code).not.toBe(0)
  expect(errorLines(r).length).toBeGreaterThanOrEqual(1)
  expect(r.stdout + r.stderr).not.toContain(c.password)
  // The hook could not reach the VM to undo anything: only the VM's side of the pull removes it.
  await waitUntil(() => filesOnVmWith(runner, c).length === 0, 10_000)
  expect(filesOnVmWith(runner, c)).toEqual([])
  // The undo could not reach the VM either; the runner's next cleanup_job (state null) ends the rest.
  expect(r.stdout).toContain('::warning::while undoing prepare_job, could not remove the job folder')
  refuse = false
  expect((await runner.call('cleanup_job', {}, { state: null })).code).toBe(0)
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test('the connection drops during prepare_job but the VM is still reachable: the undo connects again and leaves nothing (control: the test above, where it cannot)', async () => {
  const { runner, c, image, done } = await hungPull('blip')
  // positive control: the job's things are on the VM when the connection drops
  const made = await leftovers(runner)
  expect(made.jobFolders).toHaveLength(1)
  expect(made.leases).toHaveLength(1)
  expect(made.networks).toHaveLength(1)
  for (const s of relayed) s.destroy()
  const r = await done
  // A dropped connection is still a failure, said as one.
  expect(r.code).not.toBe(0)
  expect(errorLines(r)).toEqual([`::error::connection lost while running docker pull ${image}`])
  expect(r.stdout).not.toContain('while undoing prepare_job')
  expect(await leftovers(runner)).toEqual(NOTHING)
  expect(filesOnVmWith(runner, c)).toEqual([])
})
