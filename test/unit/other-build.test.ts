// After an upgrade the hook's file is another build. A command that started before it (prepare_job
// waiting for a machine, a step whose agent idled out) and starts a process from the file by name
// then runs the new build: the job's agent (`__agent`) or rsync's transport (`__rsh`). A hook never
// talks to an agent of another build (src/build-id.ts): those refuse, and the command fails as one
// whose file was replaced, not as an unreachable host. With a real build; this process is build "src".
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { HookError, TransportError } from '../../src/errors'
import { agentSocket } from '../../src/agent-client'
import { startAgentInBackground } from '../../src/session'
import { agentStartCtx, cleanupTempDirs, tempDir } from './_helpers'
import { buildBundle } from './_bundle'

let bundle: string
let bundleBuild: string

afterAll(cleanupTempDirs)

beforeAll(() => {
  bundle = buildBundle()
  const version = spawnSync(process.execPath, [bundle, '--version'], { encoding: 'utf8' }).stdout
  bundleBuild = /\(build ([0-9a-f]{12})\)$/m.exec(version)![1]
}, 180_000)

// No key files: an agent that goes on to connect fails with `connect failed [keyfile]`.
const connect = { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }

const agentLog = (local: string): string => {
  const [log] = readdirSync(local).filter((f) => f.endsWith('.log'))
  return readFileSync(join(local, log), 'utf8')
}

test('an agent started from a file of another build serves nothing: the start fails as a replaced hook, not as an unreachable host', async () => {
  const { ctx, local } = agentStartCtx(bundle)
  const e = await startAgentInBackground(ctx, connect, local)!.ready.then(
    () => null,
    (x: unknown) => x
  )
  // A TransportError is what a provider retries as an unreachable host.
  expect(e).toBeInstanceOf(HookError)
  expect(e).not.toBeInstanceOf(TransportError)
  expect((e as Error).message).toBe(
    `${bundle} was replaced by another build while this command ran (run it again): the job's agent started from it is of that build`
  )
  expect(agentLog(local)).toMatch(new RegExp(`this file is build ${bundleBuild}, the hook that started the agent build src: not started`))
  expect(agentLog(local)).not.toContain('connect failed')
})

test('control: the same file given its own build goes on to connect', () => {
  const dir = join(tempDir(), 'job')
  mkdirSync(dir, { mode: 0o700 })
  const opts = { build: bundleBuild, socketPath: agentSocket(dir, connect, bundleBuild), connect, connectTimeoutMs: 2000, idleMs: 1000 }
  const r = spawnSync(process.execPath, [bundle, '__agent', JSON.stringify(opts)], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, TMPDIR: tempDir() }
  })
  expect(r.stderr).toMatch(/: connect failed \[keyfile\] cannot read SSH key files for 127\.0\.0\.1/)
  expect(r.status).toBe(1)
})

test("rsync's transport from a file of another build refuses the socket of the command that started rsync", () => {
  const dir = tempDir()
  const run = (socket: string) =>
    spawnSync(process.execPath, [bundle, '__rsh', socket, 'vm', 'rsync', '--server', '.'], {
      encoding: 'utf8',
      input: '',
      env: { PATH: process.env.PATH, TMPDIR: tempDir() }
    })
  const other = run(agentSocket(dir, connect, 'src'))
  expect(other.status).toBe(255)
  expect(other.stderr).toBe(
    `${bundle} was replaced by another build while this command ran (run it again): ${agentSocket(dir, connect, 'src')} is not an agent of this build (${bundleBuild})\n`
  )
  // Control: a socket of its own build is dialled (none listens there).
  const own = run(agentSocket(dir, connect, bundleBuild))
  expect(own.status).not.toBe(0)
  expect(own.stderr).not.toContain('another build')
  expect(own.stderr).toMatch(/ENOENT/)
})
