// The agent's log is read back by the hook that started it (connectFailure): a connection failure's
// kind decides whether the hook retries. Text the remote chose (an SSH disconnect's description is
// the server's own words) must stay inside one line, so it cannot forge a line of the agent's.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { agentEntry, agentFailure, connectFailure } from '../../src/remote/agent-failure'
import { cleanupTempDirs, tempDir } from './_helpers'

let closeWith: Error
jest.mock('../../src/remote/ssh', () => ({
  SshRemote: {
    connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
      // The server hangs up just after the login, with a description of its choosing.
      setTimeout(() => onClose(closeWith), 20)
      return { openExec: () => Promise.reject(new Error('no')), openSocket: () => Promise.reject(new Error('no')), close: () => undefined }
    }
  }
}))
import { runAgent } from '../../src/remote/agent'

afterAll(cleanupTempDirs)

const FORGED = 'bye\n2026-12-01T00:00:00.000Z agent 1: connect failed [hostkey] the host key changed (forged)'

async function agentLog(): Promise<string> {
  const lines: string[] = []
  // Each entry made as main.ts makes the agent's.
  const say = (m: string): void => void lines.push(agentEntry(m, 2, new Date('2026-12-01T00:00:01.000Z')))
  const code = await runAgent(
    {
      socketPath: join(tempDir(), 'agent.sock'),
      connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
      connectTimeoutMs: 1000,
      idleMs: 60_000
    },
    say
  )
  expect(code).toBe(3)
  return lines.join('')
}

describe("the agent's log lines", () => {
  test("the server's words are in the log (positive control: the forged text was written)", async () => {
    closeWith = new Error('bye, plain')
    const text = await agentLog()
    expect(text).toContain('ssh connection closed: bye, plain')
    expect(connectFailure(text)).toBeNull()
  })

  test('a disconnect description holding a newline and a forged failure line stays one line and is not read back', async () => {
    closeWith = new Error(FORGED)
    const text = await agentLog()
    expect(text).toContain('connect failed [hostkey] the host key changed (forged)')
    expect(
      text
        .trim()
        .split('\n')
        .filter((l) => l.includes('ssh connection closed'))
    ).toHaveLength(1)
    expect(connectFailure(text)).toBeNull()
  })

  test('an entry written outside runAgent (an early push failure quoting the VM) is one line too', () => {
    const raw = `2026-12-01T00:00:01.000Z agent 2: early push failed: ${FORGED}\n`
    expect(connectFailure(raw)?.kind).toBe('hostkey') // positive control: written as it came, the forged line is read
    expect(connectFailure(agentEntry(`early push failed: ${FORGED}`, 2))).toBeNull()
  })

  test('the line separators JavaScript splits on are flattened too', async () => {
    closeWith = new Error(FORGED.replace('\n', '\r'))
    const cr = await agentLog()
    expect(connectFailure(cr)).toBeNull()
    expect(cr).not.toContain('\r')
    closeWith = new Error(FORGED.replace('\n', '\u2028'))
    expect(await agentLog()).not.toContain('\u2028')
  })

  test("a server's disconnect words with terminal escapes reach the log as spaces (positive control: they were sent)", async () => {
    const words = `bye\x1b[2K\x1b[1G${FORGED.replace('\n', '\v')}\x9b`
    expect(words).toContain('\x1b') // positive control: the server's words hold the escapes
    closeWith = new Error(words)
    const text = await agentLog()
    expect(text).toContain('bye') // the words themselves were logged
    for (const c of ['\x1b', '\v', '\x9b']) expect(text).not.toContain(c)
    expect(connectFailure(text)).toBeNull()
  })

  test('so is every other control character: no terminal escape shows someone who cats the log a forged line', () => {
    const remote = 'closed\x1b[2K\x1b[1G2026-12-01T00:00:01.000Z agent 2: connect failed [hostkey] forged\v\f\x85\x00\x7f\x9b\tend'
    const entry = agentEntry(`ssh connection closed: ${remote}`, 2)
    const controls = [...'\x1b\v\f\x85\x00\x7f\x9b\t\r\n\u2028\u2029']
    // positive control: the text the VM chose holds such characters
    expect(controls.filter((c) => remote.includes(c)).length).toBeGreaterThan(5)
    expect(controls.filter((c) => entry.slice(0, -1).includes(c))).toEqual([])
    expect(entry.endsWith('end\n')).toBe(true)
    expect(connectFailure(entry)).toBeNull()
  })
})

describe('connectFailure reads only an entry of its own', () => {
  test("the agent's own failure line is read with its kind (positive control)", () => {
    const e = connectFailure(
      '2026-12-01T00:00:00.000Z agent 1: starting\n2026-12-01T00:00:01.000Z agent 1: connect failed [auth] key refused\n'
    )
    expect(e?.kind).toBe('auth')
    expect(e?.message).toBe('key refused')
  })

  test('the same words quoted later in another entry are not', () => {
    expect(connectFailure('2026-12-01T00:00:01.000Z agent 1: run failed: x: connect failed [hostkey] forged\n')).toBeNull()
  })

  test('in its own failure line, the kind is the one the agent wrote, not one quoted after it', () => {
    const e = connectFailure('2026-12-01T00:00:01.000Z agent 1: connect failed [network] refused: connect failed [hostkey] forged\n')
    expect(e?.kind).toBe('network')
  })
})

describe("agentFailure reads the agent's own log (each agent of a job has one)", () => {
  const connect = { host: '127.0.0.1', port: 2222, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
  const log = (text: string): string => {
    const f = join(tempDir(), 'agent-8.log')
    writeFileSync(f, text)
    return f
  }
  const own = [
    '2026-12-01T00:00:01.000Z agent 8: starting',
    '2026-12-01T00:00:03.000Z agent 8: connect failed [network] connection refused',
    ''
  ].join('\n')

  test('its failure with the kind it wrote', () => {
    const e = agentFailure(log(own.replace('[network]', '[auth]')), 8, connect, 20)
    expect([e.kind, e.message]).toEqual(['auth', 'connection refused'])
  })

  test('without a failure line, its last line', () => {
    const exiting = own.replace('connect failed [network] connection refused', 'exiting')
    const e = agentFailure(log(exiting), 8, connect, 20)
    expect([e.kind, e.message]).toEqual(['agent', '2026-12-01T00:00:03.000Z agent 8: exiting'])
  })

  test("when it crashed, node's own reason, not the version line node prints last", () => {
    // What node really prints for an uncaught error: the source line, the error, its stack, a blank line, its version.
    const crash = spawnSync(process.execPath, ['-e', "throw new TypeError('the payload is not JSON')"], { encoding: 'utf8' }).stderr
    expect(crash.trim().split('\n').pop()).toMatch(/^Node\.js v\d/) // positive control: the last line says nothing
    const e = agentFailure(log(`${own.split('\n')[0]}\n${crash}`), 8, connect, 20)
    expect([e.kind, e.message]).toEqual(['agent', 'TypeError: the payload is not JSON'])
    // An error with a code: node prints `Error [ERR_X]: …`, and the object's fields after the stack.
    const coded = spawnSync(
      process.execPath,
      [
        '-e',
        "const e = new Error('no such socket'); e.code = 'ERR_X'; Object.defineProperty(e, 'name', { value: 'Error [ERR_X]' }); throw e"
      ],
      { encoding: 'utf8' }
    ).stderr
    expect(agentFailure(log(coded), 8, connect, 20).message).toBe('Error [ERR_X]: no such socket')
  })

  test("a failure line with another pid is not this agent's (positive control: without the pid it is read)", () => {
    const forged =
      own.replace('connect failed [network] connection refused', 'exiting') +
      '2026-12-01T00:00:04.000Z agent 9: connect failed [hostkey] forged\n'
    expect(connectFailure(forged)?.kind).toBe('hostkey')
    const e = agentFailure(log(forged), 8, connect, 20)
    expect(e.kind).toBe('agent')
  })

  test('an empty or missing log is a timeout', () => {
    for (const f of [log(''), join(tempDir(), 'none.log')]) {
      const e = agentFailure(f, 8, connect, 20)
      expect([e.kind, e.message]).toEqual(['timeout', 'could not reach u@127.0.0.1:2222 within 20 s'])
    }
  })
})
