// cleanup_job's ping asks the agent for a round trip over its SSH connection, which may be dead
// while the agent lives (a NAT forgot it; only the keepalives would find it, after minutes). The
// connection is a stand-in whose commands answer, fail or never answer; the agent is the real code.
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import type { ExecChannel } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

type Mode = 'answers' | 'fails' | 'exits 1' | 'silent'
let mode: Mode = 'answers'
const ran: string[] = []
let hangUp: (() => void) | null = null
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
      hangUp = () => onClose(new Error('test over'))
      return {
        openExec: (cmd: string): Promise<ExecChannel> => {
          ran.push(cmd)
          if (mode === 'silent') return new Promise(() => undefined)
          if (mode === 'fails') return Promise.reject(new Error('channel open failed'))
          const stdout = new PassThrough()
          const stderr = new PassThrough()
          setImmediate(() => {
            stdout.end()
            stderr.end()
          })
          return Promise.resolve({
            stdin: new PassThrough(),
            stdout,
            stderr,
            done: Promise.resolve({ code: mode === 'exits 1' ? 1 : 0, signal: null })
          })
        },
        openSocket: () => Promise.reject(new Error('not here')),
        close: () => undefined
      }
    }
  }
}))
import { runAgent } from '../../src/remote/agent'
import { MuxRemote } from '../../src/remote/mux-client'

afterAll(cleanupTempDirs)

let socketPath: string
let ended: Promise<number>

beforeAll(async () => {
  socketPath = join(tempDir(), 'agent.sock')
  ended = runAgent(
    {
      socketPath,
      connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
      connectTimeoutMs: 1000,
      idleMs: 60_000
    },
    () => undefined
  )
  await waitUntil(() => MuxRemote.ping(socketPath, 100), 10_000, 5)
})

afterAll(async () => {
  hangUp?.()
  await ended
})

beforeEach(() => {
  ran.length = 0
})

test.each<[Mode, boolean]>([
  ['answers', true],
  ['fails', false],
  ['exits 1', false]
])('a link ping over a connection that %s: %s, after one command run there', async (m, want) => {
  mode = m
  expect(await MuxRemote.ping(socketPath, 5_000, { link: true })).toBe(want)
  expect(ran).toEqual(['exit 0'])
})

test('a link ping over a connection that never answers is false within its limit; a plain ping is still true and runs nothing', async () => {
  mode = 'silent'
  const t = Date.now()
  expect(await MuxRemote.ping(socketPath, 300, { link: true })).toBe(false)
  expect(Date.now() - t).toBeLessThan(3_000)
  expect(ran).toEqual(['exit 0'])
  // Control: the agent itself answers, so a ping that does not ask for the link would take it.
  expect(await MuxRemote.ping(socketPath, 300)).toBe(true)
  expect(ran).toEqual(['exit 0'])
})
