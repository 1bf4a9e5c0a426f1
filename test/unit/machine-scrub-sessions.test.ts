// The scrub of a reused pool member ends the SSH user's processes in other sessions (what a job
// left). Other runner hosts' lease calls on the member run as that user in sessions of their own
// (a waiting job's queue call, a renewal, reap's look) and were ended with them: the waiting job's
// call failed "killed by signal KILL" and it gave up on the member about to be free. The scrub now
// spares a session led by a lease call. Run for real as a throwaway local user (needs root), with
// a docker that lists nothing.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { parseScrub, scrubScript } from '../../src/docker/machine-scrub'
import { LEASE_CALL } from '../../src/remote/lease-call'
import { shq } from '../../src/remote/quote'
import { createLocalUser, type LocalUser } from '../helpers/local-user'
import { settlesWithin } from '../helpers/wait'

let user: LocalUser
const started: ChildProcess[] = []
beforeAll(() => {
  user = createLocalUser()
})
afterAll(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  user.tryRun(['sh', '-c', 'kill -KILL -1'])
  user.remove()
})

/** A session of its own as the user, running `script`; resolves once it runs (its pid printed). */
function session(script: string): Promise<{ child: ChildProcess; pid: number }> {
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--', 'setsid', 'sh', '-c', script], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { PATH: '/usr/bin:/bin', HOME: user.home }
  })
  started.push(child)
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (c: Buffer) => resolve({ child, pid: Number(String(c).trim()) }))
    child.once('exit', (code) => reject(new Error(`session ended before it ran (exit ${code})`)))
  })
}

const alive = (pid: number): boolean => user.tryRun(['kill', '-0', String(pid)]).status === 0

test("a lease call's session survives the scrub; a leftover session (control) does not", async () => {
  // The lease call's shell stays its session's leader while its child works (the trailing `true`
  // keeps sh from handing its process to the last command), as a real lease script's does.
  const lease = await session(`${LEASE_CALL}echo $$; sleep 300; true`)
  const leftover = await session('echo $$; sleep 301; true')
  expect([alive(lease.pid), alive(leftover.pid)]).toEqual([true, true]) // both run before the scrub

  // In the user's home: the test's own folders are private to root.
  const bin = join(user.home, 'bin')
  user.run(['mkdir', '-p', bin])
  user.run(['sh', '-c', `printf '#!/bin/sh\\nexit 0\\n' > ${shq(bin)}/docker && chmod 755 ${shq(bin)}/docker`])
  const work = join(user.home, 'work')
  const r = user.tryRun(['sh', '-c', `HOME=${shq(user.home)}; ${scrubScript(work)}`], { PATH: `${bin}:/usr/bin:/bin` })
  expect(r.status).toBe(0)
  // The answer's records, each ended by a NUL (remote/answer.ts).
  const counts = parseScrub(r.stdout.split('\0').slice(0, -1), 'scrub')
  // The leftover's shell and its sleep.
  expect(counts.processes).toBe(2)
  // Ended (its exit seen by the test, its parent: kill -0 would still find it a zombie until then).
  const ended = new Promise((resolve) =>
    leftover.child.exitCode !== null || leftover.child.signalCode ? resolve(true) : leftover.child.once('exit', resolve)
  )
  expect(await settlesWithin(ended, 10_000)).toBe(true)
  expect(leftover.child.signalCode).toBe('SIGKILL')
  expect(alive(lease.pid)).toBe(true)
  expect(lease.child.exitCode).toBeNull()
  // Nor is the marker whole in the scrub's own command line: a scrub left hanging would be spared by the next.
  expect(scrubScript(work)).not.toContain(LEASE_CALL.trim())
  expect(r.stderr).toBe('')
})

test('a leftover whose program is named like sshd is ended too (only sshd and sshd-session are spared)', async () => {
  user.run(['cp', '/bin/sleep', join(user.home, 'sshd-x')])
  const leftover = await session(`echo $$; exec ${shq(join(user.home, 'sshd-x'))} 302`)
  expect(alive(leftover.pid)).toBe(true)
  const bin = join(user.home, 'bin')
  user.run(['mkdir', '-p', bin])
  user.run(['sh', '-c', `printf '#!/bin/sh\\nexit 0\\n' > ${shq(bin)}/docker && chmod 755 ${shq(bin)}/docker`])
  const r = user.tryRun(['sh', '-c', `HOME=${shq(user.home)}; ${scrubScript(join(user.home, 'work'))}`], { PATH: `${bin}:/usr/bin:/bin` })
  expect(r.status).toBe(0)
  // At least it (the first test's killed leftover may still be a zombie here, and counted).
  expect(parseScrub(r.stdout.split('\0').slice(0, -1), 'scrub').processes).toBeGreaterThanOrEqual(1)
  const ended = new Promise((resolve) =>
    leftover.child.exitCode !== null || leftover.child.signalCode ? resolve(true) : leftover.child.once('exit', resolve)
  )
  expect(await settlesWithin(ended, 10_000)).toBe(true)
  expect(leftover.child.signalCode).toBe('SIGKILL')
})
