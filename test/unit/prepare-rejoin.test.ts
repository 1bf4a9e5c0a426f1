// A prepare_job whose connection is lost: the undo connects again (rejoinable.ts). After a cancel
// the runner kills the hook 10 s after its SIGINT, so that new connection may not take
// timeouts.connectSeconds (20 s by default) there: a machine that does not answer at once is given
// up, the undo goes on (the release is still tried) and the command ends. Without a cancel the
// reconnect has its whole connect timeout (control).
import { HookError, TransportError } from '../../src/errors'
import type { HookContext } from '../../src/context'
import { PrepareJobArgsSchema } from '../../src/protocol'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs } from './_helpers'
import { UNIT_EC2, unitHookContext } from './_hook-context'

/** Every remote call, in order, by connection. */
const seen: string[] = []
let cancel = new AbortController()
/** Whether the first command also cancels the job (the SIGINT lands as the connection drops). */
let cancelOnDrop = true

/** The leased connection: it drops at the first command (and the job is cancelled then, or not). */
const machine: Remote = {
  openExec: async () => {
    seen.push('old: command')
    if (cancelOnDrop && !cancel.signal.aborted) cancel.abort('SIGINT')
    throw new TransportError('the connection to h is gone: Not connected', 'lost')
  },
  openSocket: async () => {
    seen.push('old: docker')
    throw new TransportError('the connection to h is gone: Not connected', 'lost')
  },
  close: () => void seen.push('old: close')
}

/** The new connection, once made: it answers (every command refused, which the undo only warns about). */
const fresh: Remote = {
  openExec: async () => {
    seen.push('new: command')
    throw new HookError('refused')
  },
  openSocket: async () => {
    seen.push('new: docker')
    throw new HookError('refused')
  },
  close: () => void seen.push('new: close')
}

/** How the reconnect goes: ms until it connects. */
let connectAfterMs = 0
const timers: NodeJS.Timeout[] = []
// The stand-in lease is not one a real provider would make for this config: the check of the
// state prepare_job hands over (tested in unit/state.test.ts and adversarial/hostile-engine.test.ts) is not this file's subject.
jest.mock('../../src/state', () => ({ ...jest.requireActual('../../src/state'), ownStateIssues: () => [] }))
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: () => {
      seen.push('connect')
      return new Promise<Remote>((resolve) => timers.push(setTimeout(() => resolve(fresh), connectAfterMs)))
    }
  }
}))

jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({
    kind: 'static',
    releaseDestroys: false,
    describe: () => 'the host',
    acquire: async () => ({ lease: { kind: 'static', index: 0, slot: 0, connect: {} }, remote: machine }),
    // A static slot is released over the connection.
    release: async (_l: unknown, r: Remote) => {
      seen.push('release')
      await r.openExec('release the slot')
    }
  })
}))

afterAll(cleanupTempDirs)
afterEach(() => timers.splice(0).forEach(clearTimeout))

function context(cancelled: boolean): HookContext {
  cancelOnDrop = cancelled
  cancel = new AbortController()
  seen.length = 0
  return unitHookContext({ provider: UNIT_EC2, signal: cancel.signal })
}

const args = PrepareJobArgsSchema.parse({ container: null, services: [{ image: 'redis:7', environmentVariables: {} }] })

/** How prepare_job ended and how long it took, or 'still running' after `ms`. */
async function ended(ctx: HookContext, ms: number): Promise<{ error: string; ms: number } | 'still running'> {
  const { prepareJob } = await import('../../src/handlers/prepare-job')
  const t = Date.now()
  const done = prepareJob(args, ctx).then(
    () => ({ error: 'none', ms: Date.now() - t }),
    (e: unknown) => ({ error: (e as Error).message, ms: Date.now() - t })
  )
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), ms)))
  try {
    return await Promise.race([done, late])
  } finally {
    clearTimeout(timer)
  }
}

test('cancelled as the connection dropped: a reconnect that does not answer at once is given up, and the command ends well within the runner’s 10 s', async () => {
  connectAfterMs = 60_000 // the machine does not answer (until the connect timeout)
  const r = await ended(context(true), 6000)
  expect(r).not.toBe('still running')
  expect(r).toMatchObject({ error: 'cancelled by SIGINT' })
  // the reconnect was tried once, then the release still ran (and failed without a connection)
  expect(seen.filter((s) => s === 'connect')).toHaveLength(1)
  expect(seen).toContain('release')
  expect(seen.some((s) => s.startsWith('new:'))).toBe(false)
})

test('cancelled, and the machine answers again at once: the undo runs on the new connection, which is closed after', async () => {
  connectAfterMs = 0
  const r = await ended(context(true), 6000)
  expect(r).toMatchObject({ error: 'cancelled by SIGINT' })
  expect(seen).toContain('new: command')
  expect(seen.indexOf('release')).toBeLessThan(seen.lastIndexOf('new: command'))
  expect(seen[seen.length - 1]).toBe('new: close')
})

test('control: without a cancel, a reconnect slower than that bound is still waited for (timeouts.connectSeconds) and used', async () => {
  connectAfterMs = 2500
  const r = await ended(context(false), 15_000)
  expect(r).toMatchObject({ error: expect.stringContaining('is gone') })
  expect(seen).toContain('new: command')
  expect(seen[seen.length - 1]).toBe('new: close')
})
