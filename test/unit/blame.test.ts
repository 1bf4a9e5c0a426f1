// A step's failure blamed on its connection is told from one the VM caused while the connection
// still works (a killed step shell, a Docker socket stopped or held): only a real loss makes the
// hook ask the provider what became of the machine (execute.ts lostConnection).
import { PassThrough } from 'node:stream'
import { blameOf, type ExecChannel, type Remote } from '../../src/remote/remote'
import { lostConnection } from '../../src/execute'
import { TransportError } from '../../src/errors'
import { EXIT } from '../../src/outcome'
import { LocalRemote } from './local-remote'
import { failedStep } from '../../src/handlers/failed-step'
import { StepShellFailed } from '../../src/docker/warm-shell'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

const kindOf = async (err: unknown, remote: Remote, signal?: AbortSignal): Promise<string> => {
  const e = await blameOf(err, remote, signal)
  return e instanceof TransportError ? e.kind : String(e)
}

/** A remote whose commands end as `status` says (null: the channel closes without an exit status). */
const ending = (status: { code: number | null; signal: string | null }): Remote => ({
  openExec: async (): Promise<ExecChannel> => {
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    stdout.end()
    stderr.end()
    return { stdin: new PassThrough(), stdout, stderr, done: Promise.resolve(status) }
  },
  openSocket: () => Promise.reject(new Error('no')),
  close: () => undefined
})

describe('on a connection that still runs a command', () => {
  test.each(['lost', 'timeout'] as const)(
    "a %s failure is the VM's doing: kind stream, its words kept, not a lost connection",
    async (kind) => {
      const err = new TransportError("the step shell ended before the step's exit status came", kind)
      const e = (await blameOf(err, new LocalRemote(tempDir()))) as TransportError
      expect({ kind: e.kind, message: e.message, cause: e.cause }).toEqual({ kind: 'stream', message: err.message, cause: err })
      expect(lostConnection(e, EXIT.transport)).toBe(false)
    }
  )

  test('an exit status the job made non-zero, or a signal it made `true` kill itself with, still shows the connection works', async () => {
    expect(await kindOf(new TransportError('x', 'lost'), ending({ code: 1, signal: null }))).toBe('stream')
    expect(await kindOf(new TransportError('x', 'lost'), ending({ code: null, signal: 'KILL' }))).toBe('stream')
  })

  test('positive control: the same failure, untold, is a lost connection', () => {
    expect(lostConnection(new TransportError('x', 'lost'), EXIT.transport)).toBe(true)
    expect(lostConnection(new TransportError('x', 'lost'), 3)).toBe(false)
  })
})

describe('a real loss stays a loss', () => {
  test('a command channel that closes without an exit status', async () => {
    expect(await kindOf(new TransportError('x', 'lost'), ending({ code: null, signal: null }))).toBe('lost')
  })

  test('a connection that opens no channel', async () => {
    const gone: Remote = {
      openExec: () => Promise.reject(new TransportError('the connection to h is gone: Not connected', 'lost')),
      openSocket: () => Promise.reject(new Error('no')),
      close: () => undefined
    }
    expect(await kindOf(new TransportError('x', 'timeout'), gone)).toBe('timeout')
  })

  test('after a cancel the check does not wait for a connection that does not answer', async () => {
    const silent: Remote = {
      openExec: () => new Promise<never>(() => undefined),
      openSocket: () => Promise.reject(new Error('no')),
      close: () => undefined
    }
    const t0 = Date.now()
    expect(await kindOf(new TransportError('x', 'lost'), silent, AbortSignal.abort('SIGINT'))).toBe('lost')
    expect(Date.now() - t0).toBeLessThan(2000)
  })
})

test('other failures are returned as they are, without a check', async () => {
  const never: Remote = {
    openExec: () => Promise.reject(new Error('not to be called')),
    openSocket: () => Promise.reject(new Error('no')),
    close: () => undefined
  }
  const plain = new Error('plain')
  expect(await blameOf(plain, never)).toBe(plain)
  for (const kind of ['hostkey', 'auth', 'keyfile', 'network', 'agent'] as const) {
    const e = new TransportError('x', kind)
    expect(await blameOf(e, never)).toBe(e)
  }
})

describe("the step shell's end, as failedStep words it", () => {
  const ctx = { signal: new AbortController().signal, log: { debug: () => undefined } } as unknown as Parameters<typeof failedStep>[2]
  const shellEnded = (): StepShellFailed => new StepShellFailed("the step shell ended before the step's exit status came", 'lost')

  test('on a connection that does not answer either: the connection was lost, in the words of the message too', async () => {
    const e = (await failedStep(shellEnded(), ending({ code: null, signal: null }), ctx, null)) as TransportError
    expect({ kind: e.kind, message: e.message }).toEqual({
      kind: 'lost',
      message: "the connection to the machine was lost during the step (the step shell ended before the step's exit status came)"
    })
    expect(lostConnection(e, EXIT.transport)).toBe(true)
  })

  test("control: on a connection that still runs a command, the VM's doing, its words kept", async () => {
    const e = (await failedStep(shellEnded(), new LocalRemote(tempDir()), ctx, null)) as TransportError
    expect({ kind: e.kind, message: e.message }).toEqual({
      kind: 'stream',
      message: "the step shell ended before the step's exit status came"
    })
  })
})
