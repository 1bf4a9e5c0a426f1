/**
 * scripts/testenv/reaped.py, which scripts/test.sh runs Jest under: processes the tests leave
 * running (reparented to it, not to init) are named, ended and counted; the exit code is the
 * command's.
 */
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const script = join(__dirname, '..', '..', 'scripts', 'testenv', 'reaped.py')
// A child subreaper and /proc are Linux's (as is the test environment reaped.py serves).
const test = process.platform === 'linux' ? global.test : global.test.skip
let dir = ''
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rch-reaped-'))))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Run {
  code: number | null
  stderr: string
  strays: string
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** reaped.py around `sh -c SH`; its stderr goes to a file, so that a stray left holding it cannot hold up the test. */
async function run(sh: string): Promise<Run> {
  const id = Math.random().toString(36).slice(2)
  const [strays, errFile] = [join(dir, `strays-${id}`), join(dir, `stderr-${id}`)]
  const err = openSync(errFile, 'w')
  try {
    const child = spawn('python3', [script, '--strays', strays, '--', 'sh', '-c', sh], {
      stdio: ['ignore', 'ignore', err],
      env: { ...process.env, REAPED_GRACE_S: '1', REAPED_TERM_WAIT_S: '1' }
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    return { code, stderr: readOrEmpty(errFile), strays: readOrEmpty(strays) }
  } finally {
    closeSync(err)
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test("a process left running (in the background, or daemonized with setsid) is named, ended and counted; the exit code is the command's", async () => {
  const pids = join(dir, 'pids')
  const r = await run(`sleep 301 & echo $! > ${pids}; (setsid sleep 302 & echo $! >> ${pids}); exit 3`)
  expect(r.code).toBe(3)
  expect(r.strays).toBe('2\n')
  expect(r.stderr).toMatch(/left running by the tests: pid \d+: sleep 301/)
  expect(r.stderr).toMatch(/left running by the tests: pid \d+: sleep 302/)
  const [a, b] = readFileSync(pids, 'utf8').trim().split('\n').map(Number)
  expect([alive(a), alive(b)]).toEqual([false, false])
})

test('one that ignores SIGTERM is killed, and so is the child it leaves', async () => {
  const pids = join(dir, 'pids-term')
  const r = await run(`sh -c 'trap "" TERM; sleep 303; sleep 303' & echo $! > ${pids}; exit 0`)
  expect({ code: r.code, strays: r.strays }).toEqual({ code: 0, strays: '2\n' })
  expect(r.stderr).toMatch(/pid \d+: sleep 303/)
  expect(alive(Number(readFileSync(pids, 'utf8').trim()))).toBe(false)
})

test('control: a command whose processes all end, or end within the grace, leaves no stray', async () => {
  const r = await run('sleep 0.2 & wait; (sleep 0.4 &); exit 0')
  expect(r).toEqual({ code: 0, stderr: '', strays: '0\n' })
})

test('a command killed by a signal exits 128 + its number; a command not found exits 127', async () => {
  expect((await run('kill -TERM $$')).code).toBe(143)
  const child = spawn('python3', [script, '--strays', join(dir, 'nf'), '--', join(dir, 'no-such-command')], { stdio: 'ignore' })
  expect(await new Promise((resolve) => child.on('close', resolve))).toBe(127)
})
