// A remote command's timeout and cancel bound the whole call, the channel's open included: an sshd
// that still answers keepalives but never answers a channel open must not hold the call (a lease
// renewal, cleanup's work on the VM) for ever. A channel that opens after the call gave up is closed.
import { PassThrough } from 'node:stream'
import { check, run, type ExecChannel, type Remote } from '../../src/remote/remote'
import { Cancelled, RemoteCommandError } from '../../src/errors'
import { waitUntil } from '../helpers/wait'

/** A channel whose command exits 0 at once, and whether it was closed from our side. */
function channel(runMs = 0): ExecChannel & { closed: () => boolean } {
  const stdout = new PassThrough()
  const stdin = new PassThrough()
  let exit!: (s: { code: number; signal: null }) => void
  const done = new Promise<{ code: number; signal: null }>((r) => (exit = r))
  setTimeout(() => {
    stdout.end()
    exit({ code: 0, signal: null })
  }, runMs)
  return { stdin, stdout, stderr: new PassThrough(), done, closed: () => stdout.destroyed && stdin.destroyed }
}

/** A remote whose channel opens after `ms` (never when null). */
function slowRemote(ms: number | null, runMs = 0): Remote & { opened: (ExecChannel & { closed: () => boolean })[] } {
  const opened: (ExecChannel & { closed: () => boolean })[] = []
  return {
    opened,
    openExec: () =>
      new Promise((res) => {
        if (ms !== null)
          setTimeout(() => {
            const ch = channel(runMs)
            opened.push(ch)
            res(ch)
          }, ms)
      }),
    openSocket: () => Promise.reject(new Error('no')),
    close: () => undefined
  }
}

test('an open that is never answered ends at the timeout, naming the call', async () => {
  const t = Date.now()
  await expect(run(slowRemote(null), 'true', { label: 'renew the lease', timeoutMs: 200 })).rejects.toThrow(
    'renew the lease: no result after 0.2 s'
  )
  expect(Date.now() - t).toBeLessThan(10_000)
})

test('an open that is never answered ends at a cancel, as Cancelled', async () => {
  const ac = new AbortController()
  setTimeout(() => ac.abort('SIGINT'), 50)
  await expect(run(slowRemote(null), 'true', { signal: ac.signal })).rejects.toBeInstanceOf(Cancelled)
})

test('a channel that opens after the call gave up is closed at once', async () => {
  const r = slowRemote(300)
  await expect(run(r, 'true', { timeoutMs: 100 })).rejects.toThrow('no result after 0.1 s')
  await waitUntil(() => r.opened.length === 1 && r.opened[0].closed(), 5000, 10)
  expect(r.opened).toHaveLength(1)
  expect(r.opened[0].closed()).toBe(true)
})

test('one bound for the whole call: an open and a command that each fit in it, together do not', async () => {
  await expect(run(slowRemote(200, 200), 'true', { timeoutMs: 300 })).rejects.toThrow('no result after 0.3 s')
})

test('control: a slow open within the bound runs the command', async () => {
  const r = slowRemote(100)
  await expect(run(r, 'true', { timeoutMs: 2000 })).resolves.toMatchObject({ code: 0 })
  expect(r.opened[0].closed()).toBe(false)
  // Without a bound or signal the open is simply awaited.
  await expect(run(slowRemote(50), 'true')).resolves.toMatchObject({ code: 0 })
})

describe('how a failed command is named', () => {
  /** A remote whose command fails with exit 1 and `stderr`. */
  const failing = (stderr: string): Remote => ({
    openExec: async () => {
      const stdout = new PassThrough()
      const err = new PassThrough()
      err.end(stderr)
      stdout.end()
      // The exit status comes after the output, as over SSH.
      const done = new Promise<{ code: number; signal: null }>((res) => setTimeout(() => res({ code: 1, signal: null }), 20))
      return { stdin: new PassThrough(), stdout, stderr: err, done }
    },
    openSocket: () => Promise.reject(new Error('unused')),
    close: () => undefined
  })
  const command = `docker run --rm -e TOKEN=tok-4f9e1c img:1 sh -c 'echo hi'`

  test('without a label: by its first three words only, never the whole command line', async () => {
    const err = await check(failing('no such image\n'), command).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RemoteCommandError)
    expect((err as Error).message).toBe('docker run --rm failed (exit code 1): no such image')
    expect((err as Error).message).not.toContain('tok-4f9e1c')
  })

  test('control: a label names it as given, and the stderr that a machine printed is quoted', async () => {
    await expect(check(failing('no such image\n'), command, { label: 'start the probe' })).rejects.toThrow(
      'start the probe failed (exit code 1): no such image'
    )
    // What the command itself printed is shown (the log masks what was registered as secret).
    await expect(check(failing('TOKEN=tok-4f9e1c\n'), command, { label: 'start the probe' })).rejects.toThrow(
      'start the probe failed (exit code 1): TOKEN=tok-4f9e1c'
    )
  })
})
