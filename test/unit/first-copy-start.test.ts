// startCopy's two halves (the job's roots and the runner's externals) run side by side. prepare_job
// waits for what is in flight before its undo (cancel.ts), and it sees the copy as one promise: that
// promise must not fail while the externals are still being installed on the VM, or the undo (and
// the closing of the connection) would race an install it believes has ended.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { HookContext } from '../../src/context'
import { TransportError } from '../../src/errors'
import type { ExecChannel, ExitStatus, Remote } from '../../src/remote/remote'
import { startCopy } from '../../src/prepare/first-copy'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

/** A remote whose externals lookup answers only when told; every other command cannot start. */
function remote(): { remote: Remote; answer: () => void; commands: string[] } {
  const commands: string[] = []
  let answer = (): void => undefined
  const r: Remote = {
    openExec: async (command: string): Promise<ExecChannel> => {
      commands.push(command)
      if (!command.includes('.rch-complete')) throw new TransportError('the connection is gone', 'lost')
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      const stdin = new PassThrough()
      stdin.resume()
      const done = new Promise<ExitStatus>((res) => {
        answer = () => {
          // The framed answer of ask(): no record, so the externals are not there yet.
          const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(command)![1]
          stdout.end(`RCH-BEGIN-${nonce}\0RCH-END-${nonce}\0`)
          stderr.end()
          setImmediate(() => res({ code: 0, signal: null }))
        }
      })
      return { stdin, stdout, stderr, done }
    },
    openSocket: () => Promise.reject(new Error('no sockets')),
    close: () => undefined
  }
  return { remote: r, answer: () => answer(), commands }
}

test('the copy fails only once the externals have landed too, not while they are still being installed', async () => {
  const w = tempDir()
  mkdirSync(join(w, 'repo/repo'), { recursive: true })
  writeFileSync(join(w, 'repo/repo/README'), 'hello\n')
  const ext = tempDir()
  writeFileSync(join(ext, 'node'), 'bin\n')
  const r = remote()
  const ctx = { signal: new AbortController().signal } as unknown as HookContext
  const c = startCopy(ctx, r.remote, { host: 'h', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }, tempDir(), {
    hostWork: w,
    jobRoot: '/srv/rch/jobs/j',
    jobId: '0123456789abcdef',
    roots: ['repo/repo'],
    externals: { host: ext, remote: '/srv/rch/externals/v1' }
  })
  let settled = false
  const copied = c.copied.then(
    () => (settled = true),
    (e: unknown) => {
      settled = true
      throw e
    }
  )
  copied.catch(() => undefined)
  // The tar copy of the roots has failed (its channel could not open); the externals lookup is still out.
  const asked = (): boolean => r.commands.some((x) => x.includes('.rch-complete')) && r.commands.some((x) => !x.includes('.rch-complete'))
  expect(await waitUntil(asked, 5000, 5)).toBe(true)
  // Once the failure has had its turn (a copy settling with it would have settled by now):
  await new Promise((res) => setImmediate(res))
  expect(settled).toBe(false)
  r.answer()
  await expect(copied).rejects.toThrow('the connection is gone')
})

// The externals are copied under a temporary name, then renamed into place. A prepare_job killed
// during that copy (the runner's externals are hundreds of MB) left `<workRoot>/externals/<v>.tmp-<jobId>`
// behind: outside the job folder, named by no owner, so no cleanup_job, prune or reap ever found it.
// Inside the job folder, every removal of the job's folder takes it.
test('the externals are copied into the job folder first, where the removal of the job folder finds a half copy', async () => {
  const commands: string[] = []
  const r: Remote = {
    openExec: async (command: string): Promise<ExecChannel> => {
      commands.push(command)
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      const stdin = new PassThrough()
      stdin.resume()
      stdout.end()
      stderr.end('stopped here\n')
      // Every command fails: the copy ends at its first step, with nothing sent.
      return { stdin, stdout, stderr, done: Promise.resolve({ code: 1, signal: null }) }
    },
    openSocket: () => Promise.reject(new Error('no sockets')),
    close: () => undefined
  }
  const ext = tempDir()
  writeFileSync(join(ext, 'node'), 'bin\n')
  const jobRoot = '/srv/rch/jobs/0123456789abcdef-fedcba9876543210'
  const ctx = { signal: new AbortController().signal } as unknown as HookContext
  const c = startCopy(ctx, r, { host: 'h', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }, tempDir(), {
    hostWork: tempDir(),
    jobRoot,
    jobId: 'fedcba9876543210',
    roots: [],
    externals: { host: ext, remote: '/srv/rch/externals/v1' },
    externalsPresent: false
  })
  await expect(c.copied).rejects.toThrow(/exit code 1/)
  expect(commands).toHaveLength(1)
  // The temporary copy is inside the job folder; the shared folder it is renamed into is made beside.
  expect(commands[0]).toBe(`umask 022 && mkdir -p /srv/rch/externals ${jobRoot}/externals.tmp`)
  expect(commands[0]).not.toMatch(/\/srv\/rch\/externals\/v1\.tmp/)
})
