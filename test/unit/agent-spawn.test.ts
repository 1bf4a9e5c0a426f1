// Starting the job's agent, with a real process: its log is a file of its own, named for its pid,
// and an agent that cannot be started at all fails the start with node's reason.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { HookContext } from '../../src/context'
import { startAgentInBackground } from '../../src/session'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

function ctxFor(nodePath: string, hookPath: string): { ctx: HookContext; local: string } {
  const root = join(tempDir(), 'rch')
  mkdirSync(root, { mode: 0o700 })
  const ctx = {
    nodePath,
    hookPath,
    localRoot: root,
    signal: new AbortController().signal,
    log: { warn: () => undefined, progress: () => undefined, debug: () => undefined },
    runner: { home: '', trackingId: '' },
    config: { agent: { enabled: true, idleSeconds: 60, lowMemory: false }, timeouts: { connectSeconds: 2 } }
  } as unknown as HookContext
  return { ctx, local: join(root, 'job') }
}
const connect = { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }

test('an agent that writes its failure and exits: the start fails with it, and its log is agent-<pid>.log', async () => {
  // A stand-in agent: prints an entry with its own pid, a forged entry of another pid, and exits.
  const fake = join(tempDir(), 'fake-agent.js')
  writeFileSync(
    fake,
    `const p = process.pid
console.log(new Date().toISOString() + ' agent ' + p + ': connect failed [auth] refused by the server')
console.log(new Date().toISOString() + ' agent ' + (p + 1) + ': connect failed [hostkey] not mine')
process.exit(3)
`
  )
  const { ctx, local } = ctxFor(process.execPath, fake)
  const start = startAgentInBackground(ctx, connect, local)!
  await expect(start.ready).rejects.toMatchObject({ kind: 'auth', message: 'refused by the server' })
  const logs = readdirSync(local).filter((f) => f.endsWith('.log'))
  expect(logs).toHaveLength(1)
  expect(logs[0]).toMatch(/^agent-\d+\.log$/)
})

test('a node that cannot be started fails the start at once, naming why', async () => {
  const { ctx, local } = ctxFor('/nonexistent/node', '/nonexistent/index.js')
  const start = startAgentInBackground(ctx, connect, local)!
  await expect(start.ready).rejects.toMatchObject({
    kind: 'agent',
    message: expect.stringMatching(/^could not start the job's agent: spawn \/nonexistent\/node ENOENT/)
  })
  expect(readdirSync(local).filter((f) => f.endsWith('.log'))).toEqual([]) // the empty log of a process that never was is gone
})
