// The project's test environment fails a test file that leaves a handle open (a listening server,
// a child process, a pending timer), and passes it when it closes it: run through a real Jest on
// a scratch file.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createServer, Socket } from 'node:net'
import { connectTarget, kindOf, openedSince } from '../helpers/handle-check-env'

const root = resolve(__dirname, '../..')

/** The scratch test files, one per case below. */
const scratch = {
  serverLeft: `
const net = require('net')
test('listens', async () => {
  const s = net.createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
})
`,
  serverClosed: `
const net = require('net')
test('listens', async () => {
  const s = net.createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  await new Promise((r) => s.close(r))
})
`,
  childLeft: `
const { spawn } = require('child_process')
test('spawns', () => { spawn('sleep', ['30'], { stdio: 'ignore' }) })
`,
  pipeHeld: `
const { spawn } = require('child_process')
test('spawns', async () => {
  // The child exits at once; the grandchild it leaves keeps the child's stdout pipe open.
  const c = spawn('sh', ['-c', 'sleep 15 & exit 0'], { stdio: ['ignore', 'pipe', 'ignore'] })
  await new Promise((r) => c.on('exit', r))
})
`,
  // run beside a second file, so that Jest runs it in a worker process of its own
  stdinFirst: `
test('is the first in its worker to touch process.stdin', () => { expect(typeof process.stdin.isTTY).not.toBe('string') })
`,
  timerLeft: `test('waits', () => { setTimeout(() => undefined, 60_000) })`,
  timersFine: `
test('clears', () => { clearTimeout(setTimeout(() => undefined, 60_000)); clearInterval(setInterval(() => undefined, 60_000)) })
test('unrefs', () => { setTimeout(() => undefined, 60_000).unref() })
test('fires', async () => { await new Promise((r) => setTimeout(r, 10)) })
`,
  failedWithChild: `
const { spawn } = require('child_process')
test('times out with its child still running', async () => {
  spawn('sleep', ['30'], { stdio: 'ignore' })
  expect('the real failure').toBe('seen')
})
`,
  beyondLoopback: `
const http = require('http')
test('asks an address beyond loopback', async () => {
  const err = await new Promise((r) => http.get('http://192.0.2.1:9/', () => r(null)).on('error', r))
  expect(String(err)).toContain('test guard: a connection to 192.0.2.1:9 was refused')
})
`,
  loopbackOnly: `
const net = require('net')
test('connects on loopback only', async () => {
  const s = net.createServer((c) => c.end())
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  for (const host of ['127.0.0.1', 'localhost']) {
    const c = net.connect(s.address().port, host)
    await new Promise((r, j) => c.on('connect', r).on('error', j))
    c.destroy()
  }
  // refused by nobody but the closed port itself
  const err = await new Promise((r) => net.connect({ host: '127.0.0.1', port: 9 }).on('error', r))
  expect(err.code).toBe('ECONNREFUSED')
  await new Promise((r) => s.close(r))
})
`,
  nodeTimers: `
test('promisified', async () => { expect(await require('util').promisify(setTimeout)(5, 'v')).toBe('v') })
test('this', async () => {
  const t = await new Promise((r) => { const id = setTimeout(function () { r(this === id) }, 5) })
  expect(t).toBe(true)
})
`
}
type Case = keyof typeof scratch
type Run = { code: number | null; out: string }

/**
 * Runs one scratch file through a Jest of its own: a Jest worker another file ran in would count
 * that file's leftovers. Its cache starts empty, as on a fresh clone: Jest then runs the file in
 * its own process beside workers of its own, which end while the file runs.
 */
function jestOn(body: string, beside?: string): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'rch-handles-'))
  writeFileSync(join(dir, 'scratch.test.js'), body)
  if (beside) writeFileSync(join(dir, 'beside.test.js'), beside)
  const config = {
    rootDir: dir,
    cacheDirectory: join(dir, 'cache'),
    testEnvironment: join(root, 'test/helpers/handle-check-env.ts'),
    transform: { '^.+\\.ts$': [require.resolve('ts-jest'), {}] },
    testMatch: ['<rootDir>/*.test.js']
  }
  // Two files and two workers: Jest runs each in a worker process (one file alone runs in band).
  const workers = beside ? ['--maxWorkers=2'] : []
  const child = spawn(
    process.execPath,
    [require.resolve('jest/bin/jest'), '--ci', '--forceExit', ...workers, '--config', JSON.stringify(config)],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe']
    }
  )
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (out += d.toString()))
  // Within beforeAll's limit: a run that hangs is ended, not left behind.
  const limit = setTimeout(() => child.kill('SIGKILL'), 75_000)
  return new Promise((done) =>
    child.on('close', (code) => {
      clearTimeout(limit)
      rmSync(dir, { recursive: true, force: true })
      done({ code, out })
    })
  )
}

let results: Record<Case, Run>

// Three at a time: most of each run is the environment's wait for handles to close, not work, and
// more would crowd the two cores the other test files share.
beforeAll(async () => {
  const names = Object.keys(scratch) as Case[]
  const runs = {} as Record<Case, Run>
  const lane = async (): Promise<void> => {
    for (let n = names.shift(); n !== undefined; n = names.shift())
      runs[n] = await jestOn(scratch[n], n === 'stdinFirst' ? `test('idles', () => undefined)` : undefined)
  }
  await Promise.all([lane(), lane(), lane()])
  results = runs
}, 90_000)

test('a file that leaves a server listening fails, naming the file and the handle', () => {
  expect(results.serverLeft.code).toBe(1)
  expect(results.serverLeft.out).toMatch(/scratch\.test\.js left open handles 5 s after its last test: \{"TCPServerWrap":1\}/)
})

test('the same file that closes its server passes (control)', () => {
  const r = results.serverClosed
  expect({ code: r.code, leftMessage: /left open handles/.test(r.out) }).toEqual({ code: 0, leftMessage: false })
})

test('a child process left running is named', () => {
  expect(results.childLeft.code).toBe(1)
  expect(results.childLeft.out).toMatch(/"ProcessWrap":1\}; child processes: pid \d+: sleep 30/)
})

test('a pipe a grandchild keeps open after its child exited names the grandchild', () => {
  expect(results.pipeHeld.code).toBe(1)
  expect(results.pipeHeld.out).toMatch(
    /left open handles 5 s after its last test: \{"PipeWrap":1\}; its pipes are held open by pid \d+: sleep 15/
  )
})

test("a worker's stdin, made on its first use by the file that touches it first, is not that file's leak", () => {
  const r = results.stdinFirst
  expect(r.out).toMatch(/Tests: +2 passed, 2 total/)
  expect({ code: r.code, out: r.code ? r.out : '' }).toEqual({ code: 0, out: '' })
})

test('a timer of the file still pending fails it; a cleared or unref-ed one does not (control)', () => {
  expect(results.timerLeft.code).toBe(1)
  expect(results.timerLeft.out).toMatch(/left open handles 5 s after its last test: \{"Timeout":1\}/)
  const fine = results.timersFine
  expect({ code: fine.code, leftMessage: /left open handles/.test(fine.out) }).toEqual({ code: 0, leftMessage: false })
})

test('after a failed test the leak is reported, not thrown: the failure itself stays in the results', () => {
  const r = results.failedWithChild
  expect(r.code).toBe(1)
  expect(r.out).toContain('times out with its child still running')
  expect(r.out).toContain('"the real failure"')
  expect(r.out).toMatch(/"ProcessWrap":1\}; child processes: pid \d+: sleep 30 \(after a failed test; its child processes are stopped/)
})

test("timers keep what node gives them: util.promisify(setTimeout) and the callback's this", () => {
  const r = results.nodeTimers
  expect({ code: r.code, out: r.code ? r.out : '' }).toEqual({ code: 0, out: '' })
})

test('a connection beyond loopback is refused before it is made, and fails the file, naming the address', () => {
  const r = results.beyondLoopback
  expect(r.code).toBe(1)
  expect(r.out).toMatch(/scratch\.test\.js tried to connect beyond loopback \(refused, never made\): 192\.0\.2\.1:9/)
  // the test itself saw the guard's error, not a network's
  expect(r.out).not.toMatch(/✕ asks an address beyond loopback/)
})

test('connections on loopback (127.0.0.1, localhost) go through as usual (control)', () => {
  const r = results.loopbackOnly
  expect({ code: r.code, out: r.code ? r.out : '' }).toEqual({ code: 0, out: '' })
})

test("the guard reads a connection's target in each of Socket#connect's forms", () => {
  expect(connectTarget([{ host: '10.0.0.1', port: 443 }])).toEqual({ host: '10.0.0.1', port: 443 })
  expect(connectTarget([[{ host: 'sts.amazonaws.com', port: 443 }, () => undefined]])).toEqual({ host: 'sts.amazonaws.com', port: 443 })
  expect(connectTarget([{ port: 80 }])).toEqual({ host: 'localhost', port: 80 })
  expect(connectTarget([80, '169.254.169.254'])).toEqual({ host: '169.254.169.254', port: 80 })
  expect(connectTarget([80])).toEqual({ host: 'localhost', port: 80 })
  expect(connectTarget(['/run/docker.sock'])).toEqual({ path: '/run/docker.sock' })
  expect(connectTarget([{ path: '/tmp/agent.sock' }])).toEqual({ path: '/tmp/agent.sock' })
})

test('only what opened since the file began counts, whatever else closed meanwhile', () => {
  const server = createServer()
  const socket = new Socket()
  const jests = [{ spawnargs: ['jest-worker'] }, { spawnargs: ['jest-worker'] }]
  const left = { spawnargs: ['sleep', '30'] }
  // Two processes of Jest's own ended while the file left one running: counting would see fewer.
  expect(openedSince(new Set<object>([...jests, socket]), [socket, left])).toEqual({ ProcessWrap: 1 })
  expect(openedSince(new Set<object>([socket, left]), [socket, left])).toEqual({})
  expect(kindOf(server)).toBe('Server') // not listening: no handle yet
  expect(kindOf({ _handle: { constructor: { name: 'Pipe' } } })).toBe('PipeWrap')
})
