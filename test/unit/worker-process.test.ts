// Whether a recorded worker process still runs, as reap, the lease keeper and early push judge it. On a runner
// host whose /proc is mounted with hidepid, another user's process has no /proc entry for this
// user, though kill(pid, 0) says it exists (EPERM): it was judged gone, so reap run by one runner
// user (or an operator) took another runner user's live static job for dead and removed it.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { isRunning, workerProcess } from '../../src/worker-process'

/** A pid with no /proc entry on any host (above Linux's PID_MAX_LIMIT, 2^22). */
const HIDDEN = 4_194_305

afterEach(() => jest.restoreAllMocks())

const killSays = (code: string): void => {
  jest.spyOn(process, 'kill').mockImplementation(() => {
    throw Object.assign(new Error(code), { code })
  })
}

test("another user's process that /proc hides (kill answers EPERM) is running, where it may be another user's (reap)", () => {
  killSays('EPERM')
  expect(isRunning({ pid: HIDDEN, start: '12345' }, { othersHidden: true })).toBe(true)
})

test("control: where the process is this user's own (the runner's worker, for the lease keeper), EPERM means its pid is someone else's now", () => {
  killSays('EPERM')
  expect(isRunning({ pid: HIDDEN, start: '12345' })).toBe(false)
})

test('control: a pid kill says does not exist (ESRCH) is not running, even with a start recorded', () => {
  killSays('ESRCH')
  expect(isRunning({ pid: HIDDEN, start: '12345' })).toBe(false)
})

test('control: this very process is running; with another start time (its pid reused) it is not', () => {
  const me = workerProcess(process.pid)!
  expect(me.start).toMatch(/^\d+$/)
  expect(isRunning(me)).toBe(true)
  expect(isRunning({ pid: me.pid, start: String(Number(me.start) + 1) })).toBe(false)
})

test('control: EPERM for a pid whose /proc entry is readable still checks its start time', () => {
  killSays('EPERM')
  const me = workerProcess(process.pid)!
  expect(isRunning({ pid: me.pid, start: String(Number(me.start) + 1) })).toBe(false)
  expect(isRunning(me)).toBe(true)
})

test('a process that has ended but is not reaped yet (a zombie: kill and /proc still answer, its start unchanged) is not running', async () => {
  // A parent that forks a child which exits at once, and does not wait for it while it sleeps.
  const py = spawn('python3', [
    '-c',
    'import os,time\npid=os.fork()\nif pid==0: os._exit(0)\ntime.sleep(0.3)\nprint(pid, flush=True)\ntime.sleep(30)'
  ])
  try {
    const pid = await new Promise<number>((res) => py.stdout.once('data', (d: Buffer) => res(Number(d.toString().trim()))))
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    expect(fields[0]).toBe('Z') // control: a zombie, whose pid kill(pid, 0) still finds
    expect(() => process.kill(pid, 0)).not.toThrow()
    expect(isRunning({ pid, start: fields[19] })).toBe(false)
    expect(workerProcess(pid)).toBeNull()
  } finally {
    py.kill('SIGKILL')
  }
})
