// Starting the job's agent, with a real process: its log is a file of its own, named for its pid,
// and an agent that cannot be started at all fails the start with node's reason.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HookError, TransportError } from '../../src/errors'
import { claimLogName, startAgentInBackground } from '../../src/session'
import type { AgentOptions } from '../../src/remote/agent'
import { workerProcess } from '../../src/worker-process'
import { agentStartCtx, cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

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
  const { ctx, local } = agentStartCtx(fake)
  const start = startAgentInBackground(ctx, connect, local)!
  await expect(start.ready).rejects.toMatchObject({ kind: 'auth', message: 'refused by the server' })
  const logs = readdirSync(local).filter((f) => f.endsWith('.log'))
  expect(logs).toHaveLength(1)
  expect(logs[0]).toMatch(/^agent-\d+\.log$/)
})

test("the agent is told its runner's worker (the starting hook's parent), so it pushes nothing once that is gone", async () => {
  // A stand-in agent: writes the options it was given into its log, and exits.
  const fake = join(tempDir(), 'options-agent.js')
  writeFileSync(fake, `console.log('OPTIONS ' + process.argv[process.argv.indexOf('__agent') + 1]); process.exit(3)\n`)
  const { ctx, local } = agentStartCtx(fake)
  const start = startAgentInBackground(ctx, connect, local)!
  await expect(start.ready).rejects.toBeInstanceOf(TransportError)
  const [log] = readdirSync(local).filter((f) => f.endsWith('.log'))
  const line = readFileSync(join(local, log), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('OPTIONS '))
  const opts = JSON.parse(line!.slice('OPTIONS '.length)) as AgentOptions
  expect(opts.socketPath).toContain(local) // positive control: these are the options the agent got
  expect(opts.worker).toEqual(workerProcess(process.ppid))
  expect(opts.worker?.pid).toBe(process.ppid)
})

const openFds = (): number => readdirSync('/proc/self/fd').length

test('a node that cannot be started fails the start at once, naming why, and not as a transport failure', async () => {
  const { ctx, local } = agentStartCtx('/nonexistent/index.js', '/nonexistent/node')
  const start = startAgentInBackground(ctx, connect, local)!
  const e = await start.ready.then(
    () => null,
    (x: unknown) => x
  )
  expect(e).toBeInstanceOf(HookError)
  // A TransportError is what a provider retries as an unreachable host, for up to acquireTimeoutSeconds.
  expect(e).not.toBeInstanceOf(TransportError)
  expect((e as Error).message).toMatch(/^could not start the job's agent: spawn \/nonexistent\/node ENOENT/)
  expect(readdirSync(local).filter((f) => f.endsWith('.log'))).toEqual([]) // the empty log of a process that never was is gone
})

test('a start that node refuses before any process exists (spawn throws): the same failure, no log and no descriptor left', async () => {
  const { ctx, local } = agentStartCtx('/nonexistent/index.js')
  // One argument over Linux's 128 KiB limit for a single argument: spawn throws E2BIG at once.
  const huge = { ...connect, host: 'h'.repeat(200_000) }
  const before = openFds()
  const start = startAgentInBackground(ctx, huge, local)!
  await expect(start.ready).rejects.toThrow(/^could not start the job's agent: spawn E2BIG/)
  await start.stop()
  expect(readdirSync(local)).toEqual([])
  expect(openFds()).toBe(before)
  // positive control: the same start with a normal argument does make a log (it fails later, on the missing hook file)
  const ok = startAgentInBackground(ctx, connect, local)!
  await expect(ok.ready).rejects.toBeInstanceOf(TransportError)
  expect(readdirSync(local).filter((f) => f.endsWith('.log'))).toHaveLength(1)
})

describe("an agent's log takes its pid's name only when that name is free", () => {
  test('a free name: the log is renamed to it, content kept', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'agent-starting-a.log'), 'mine\n')
    expect(claimLogName(join(dir, 'agent-starting-a.log'), join(dir, 'agent-42.log'))).toBe(join(dir, 'agent-42.log'))
    expect(readdirSync(dir)).toEqual(['agent-42.log'])
    expect(readFileSync(join(dir, 'agent-42.log'), 'utf8')).toBe('mine\n')
  })

  test("a name an earlier agent of the job left (its pid reused): that log stays the earlier agent's", () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'agent-42.log'), 'the earlier agent: connect failed [hostkey] …\n')
    writeFileSync(join(dir, 'agent-starting-b.log'), 'mine\n')
    expect(claimLogName(join(dir, 'agent-starting-b.log'), join(dir, 'agent-42.log'))).toBe(join(dir, 'agent-starting-b.log'))
    expect(readFileSync(join(dir, 'agent-42.log'), 'utf8')).toBe('the earlier agent: connect failed [hostkey] …\n')
    expect(readFileSync(join(dir, 'agent-starting-b.log'), 'utf8')).toBe('mine\n')
  })
})
