// The agent socket is named from the build: scripts/build.mjs stamps a hash of the built code into
// the bundle, so a hook of one build never talks to an agent of another, and rebuilding the same
// sources gives the same name. Real builds of a copy of the sources, real hooks, a real socket.
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { agentSocket } from '../../src/agent-client'
import { ownerId } from '../../src/labels'
import { localDirOf } from '../../src/paths'
import { F, frame } from '../../src/remote/mux-frames'

const ROOT = resolve(__dirname, '..', '..')

/** Copies what the build reads into `dir`, applies `edit` to the copy, builds; returns the bundle and its build id. */
function buildCopy(dir: string, edit: (srcDir: string) => void = () => undefined, quality = 5): { bundle: string; id: string } {
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true })
  mkdirSync(join(dir, 'scripts'))
  cpSync(join(ROOT, 'scripts', 'build.mjs'), join(dir, 'scripts', 'build.mjs'))
  for (const f of ['package.json', 'tsconfig.json']) cpSync(join(ROOT, f), join(dir, f))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  edit(join(dir, 'src'))
  // Low brotli quality: the id is of the code before compression (`again` is built at another
  // quality), and a loaded CI machine took over 60 s for one build at the default quality.
  const r = spawnSync(process.execPath, ['scripts/build.mjs'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 150_000,
    env: { ...process.env, RCH_BROTLI_QUALITY: String(quality) }
  })
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' })
  const id = /; build ([0-9a-f]{12})\)$/m.exec(r.stdout)?.[1]
  expect({ stdout: r.stdout, id }).toEqual({ stdout: r.stdout, id: expect.any(String) })
  const bundle = join(dir, 'dist', 'index.js')
  expect(readFileSync(bundle, 'utf8')).toContain(JSON.stringify(id))
  return { bundle, id: id! }
}

describe('build id and agent socket name', () => {
  afterAll(cleanupTempDirs)
  let a: { bundle: string; id: string }
  let again: { bundle: string; id: string }
  let other: { bundle: string; id: string }

  beforeAll(() => {
    const base = tempDir('rch-build-id-')
    a = buildCopy(join(base, 'a'))
    again = buildCopy(join(base, 'again'), undefined, 9)
    // One byte of code: a letter of the --help text.
    other = buildCopy(join(base, 'other'), (src) => {
      const file = join(src, 'usage.ts')
      const text = readFileSync(file, 'utf8')
      const at = text.indexOf('prepare_job')
      expect(at).toBeGreaterThan(0)
      writeFileSync(file, text.slice(0, at) + 'Prepare_job' + text.slice(at + 'prepare_job'.length))
    })
  }, 450_000)

  test('the same sources give the same id; one byte of code more or less gives another', () => {
    expect(again.id).toBe(a.id)
    // control: the two builds did compress differently (the quality was applied), yet have one id
    expect(readFileSync(again.bundle).equals(readFileSync(a.bundle))).toBe(false)
    expect(other.id).not.toBe(a.id)
    expect(a.id).not.toBe('src')
  })

  test("a step goes to the agent socket of its own build only: another build's hook runs it itself", async () => {
    const tmp = tempDir('rch-build-sock-')
    const uid = process.getuid!()
    const runner = 'build-id-test'
    const jobId = '0123456789abcdef'
    const host = { user: 'rchvm', host: '127.0.0.1', port: 2231 }
    const owner = ownerId(runner, dirname(tmp))
    const localDir = localDirOf(join(tmp, `rch-${uid}`), owner, jobId)
    mkdirSync(localDir, { recursive: true, mode: 0o700 })
    const socket = agentSocket(localDir, host, a.id)
    expect(socket).not.toBe(agentSocket(localDir, host, other.id))

    // A stand-in agent of build a: answers every run request with exit 42.
    const requests: string[] = []
    const server: Server = createServer((c) => {
      let text = ''
      c.on('data', (d: Buffer) => {
        text += d.toString()
        if (!text.includes('\n')) return
        requests.push(text.slice(0, text.indexOf('\n')))
        c.end(frame(F.EXIT, JSON.stringify({ code: 42, signal: null })))
      })
    })
    await new Promise<void>((res) => server.listen(socket, res))
    try {
      const responseFile = join(tmp, 'r.json')
      writeFileSync(responseFile, '')
      const args = {
        entryPointArgs: ['-e', '/__w/_temp/1.sh'],
        entryPoint: 'sh',
        environmentVariables: {},
        prependPath: [],
        workingDirectory: '/__w/app/app'
      }
      const input = JSON.stringify({ command: 'run_script_step', responseFile, args, state: { v: 1, jobId, owner, host } })
      // Not spawnSync: the stand-in agent answers from this process's event loop.
      const run = (bundle: string): Promise<{ status: number | null; stdout: string }> =>
        new Promise((res) => {
          const child = spawn(process.execPath, [bundle], {
            env: { PATH: process.env.PATH, TMPDIR: tmp, RUNNER_NAME: runner, RUNNER_TEMP: tmp }
          })
          let stdout = ''
          child.stdout.on('data', (c) => (stdout += c))
          child.on('close', (status) => res({ status, stdout }))
          child.stdin.end(input)
        })

      const mine = await run(a.bundle)
      expect({ code: mine.status, requests: requests.length }).toEqual({ code: 42, requests: 1 }) // positive control: build a's hook reached the agent
      expect(JSON.parse(requests[0])).toMatchObject({ op: 'run', raw: input })

      const theirs = await run(other.bundle)
      expect(requests.length).toBe(1) // never connected
      // It ran the step itself, and stopped at the missing configuration.
      expect({ code: theirs.status, stdout: theirs.stdout }).toEqual({ code: 78, stdout: expect.stringContaining('REMOTE_HOOKS_CONFIG') })
    } finally {
      server.close()
    }
  })
})
