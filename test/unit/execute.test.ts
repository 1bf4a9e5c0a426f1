// execute(): the one path from the runner's raw input to an exit code, for the hook process and
// for a `run` request served by the job's agent. Both must write the handler's response file and
// report failures with the same exit codes and lines; the handler here is a stand-in (dispatch is
// mocked), everything else (input, config, runner env, response file, log) is the real code.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, staticConfigFile, tempDir } from './_helpers'
import type { HandlerResult, HookContext } from '../../src/context'

const handler = jest.fn<Promise<HandlerResult>, unknown[]>()
jest.mock('../../src/dispatch', () => ({ dispatch: (...a: unknown[]) => handler(...a) }))

import { execute, executeRequest, type ExecuteIo } from '../../src/execute'
import { EXIT } from '../../src/outcome'
import { RemoteCommandError, StepFailed, TransportError } from '../../src/errors'

/** A sink that records what was written, as the runner would see it. */
function recorder(): { write(c: Buffer | string): boolean; once(e: 'drain', fn: () => void): unknown; text(): string } {
  const parts: string[] = []
  return { write: (c) => (parts.push(String(c)), true), once: () => undefined, text: () => parts.join('') }
}

let dir: string
let env: Record<string, string>
let responseFile: string

beforeEach(() => {
  handler.mockReset()
  dir = tempDir('rch-execute-')
  const config = staticConfigFile(dir)
  mkdirSync(join(dir, '_work', '_temp', '_runner_hook_responses'), { recursive: true })
  responseFile = join(dir, '_work', '_temp', '_runner_hook_responses', 'r.json')
  writeFileSync(responseFile, '')
  env = { REMOTE_HOOKS_CONFIG: config, RUNNER_TEMP: join(dir, '_work', '_temp'), RUNNER_NAME: 'exec-test' }
})
afterAll(cleanupTempDirs)

const args = {
  entryPointArgs: ['-e', '/__w/_temp/1.sh'],
  entryPoint: 'sh',
  environmentVariables: { CI: 'true' },
  prependPath: [],
  workingDirectory: '/__w/app/app'
}
const raw = (): string => JSON.stringify({ command: 'run_script_step', responseFile, args, state: null })

function io(): ExecuteIo & { stdout: ReturnType<typeof recorder>; stderr: ReturnType<typeof recorder> } {
  const local = join(dir, 'local')
  mkdirSync(local, { recursive: true, mode: 0o700 })
  chmodSync(local, 0o700)
  return {
    cwd: dir,
    signal: new AbortController().signal,
    stdout: recorder(),
    stderr: recorder(),
    place: {
      hookPath: '/hook/index.js',
      nodePath: process.execPath,
      localRoot: join(local, 'root'),
      defaultLogFile: join(local, 'log', 'hook.log')
    }
  }
}

/** The two ways a command is run: by the hook itself, and as the `run` request the hook sends to its agent. */
const paths = {
  hook: (o: ExecuteIo) => execute(raw(), env, o),
  agent: (o: ExecuteIo) => executeRequest({ op: 'run', raw: raw(), env: { ...env, AWS_SECRET_ACCESS_KEY: 'x' }, cwd: o.cwd }, o)
}

describe.each(Object.entries(paths))('execute, %s path', (_name, run) => {
  test("the handler's response is written to the response file by the handler's respond(), and returned", async () => {
    handler.mockImplementation(async (_input, ctx) => {
      const response = { state: { v: 1 }, context: {} }
      await (ctx as HookContext).respond(response)
      return { exitCode: 0, response }
    })
    const o = io()
    const r = await run(o)
    expect(handler).toHaveBeenCalledTimes(1) // positive control: the command reached the handler
    expect(r).toEqual({ code: 0, response: { state: { v: 1 }, context: {} } })
    expect(JSON.parse(readFileSync(responseFile, 'utf8'))).toEqual({ state: { v: 1 }, context: {} })
    expect(o.stdout.text()).toBe('')
  })

  test("a response write that fails is the handler's failure: it sees the error, and the command fails naming the file", async () => {
    let seen: unknown
    handler.mockImplementation(async (_input, ctx) => {
      // The runner's file replaced by a folder: open fails (EISDIR).
      const { rmSync } = await import('node:fs')
      rmSync(responseFile)
      mkdirSync(responseFile)
      try {
        await (ctx as HookContext).respond({ state: { v: 1 } })
      } catch (e) {
        seen = e
        throw e
      }
      return { exitCode: 0 }
    })
    const o = io()
    const r = await run(o)
    expect(seen).toBeInstanceOf(Error)
    expect(r.code).not.toBe(0)
    expect(o.stdout.text()).toContain(`::error::responseFile: cannot open ${JSON.stringify(responseFile)} for writing (EISDIR)`)
  })

  test("no response: the file is left as the runner made it, the exit code is the handler's", async () => {
    handler.mockResolvedValue({ exitCode: 3 })
    const r = await run(io())
    expect(r).toEqual({ code: 3, response: undefined })
    expect(readFileSync(responseFile, 'utf8')).toBe('')
  })

  test.each([
    [
      'a transport error',
      new TransportError('ssh: connection lost', 'lost'),
      { code: EXIT.transport, lost: true },
      '::error::ssh: connection lost\n'
    ],
    ['an internal error', new Error('boom'), { code: EXIT.internal }, '::error::boom\n'],
    ["the step's own failure", new StepFailed(5), { code: 5 }, '']
  ])('%s: its exit code and one ::error:: line on stdout', async (_what, err, ended, line) => {
    handler.mockRejectedValue(err)
    const o = io()
    expect(await run(o)).toStrictEqual(ended)
    expect(o.stdout.text()).toBe(line)
  })

  test("the error line is masked as the command's log is: a registry password a failed pull quoted is not shown", async () => {
    const password = 'ghp_R3gistryPassw0rd'
    const fail = new RemoteCommandError('docker pull ghcr.io/o/a:1', 1, `denied: ${password}`)
    // positive control: the error line quotes what the machine printed
    handler.mockRejectedValue(fail)
    const plain = io()
    await run(plain)
    expect(plain.stdout.text()).toContain(`denied: ${password}`)
    handler.mockImplementation(async (...a: unknown[]) => {
      ;(a[1] as HookContext).log.addSecret(password)
      throw fail
    })
    const o = io()
    await run(o)
    expect(o.stdout.text()).toBe('::error::docker pull ghcr.io/o/a:1 failed (exit code 1): denied: ***\n')
  })

  test("a step that exits 75 itself is not a lost connection (the hook asks nothing of the machine's fate)", async () => {
    handler.mockResolvedValue({ exitCode: EXIT.transport })
    const r = await run(io())
    expect(r.code).toBe(EXIT.transport)
    expect(r.lost).toBeUndefined()
    handler.mockResolvedValue({ exitCode: 0 })
    handler.mockRejectedValue(new StepFailed(EXIT.transport))
    expect(await run(io())).toStrictEqual({ code: EXIT.transport })
  })

  test('a config error never reaches the handler: exit 78, one line per problem', async () => {
    writeFileSync(env.REMOTE_HOOKS_CONFIG, JSON.stringify({ provider: { kind: 'static', hosts: [] }, remote: { workRoot: 'relative' } }))
    const o = io()
    const r = await run(o)
    expect(handler).not.toHaveBeenCalled()
    expect(r.code).toBe(EXIT.config)
    expect(o.stdout.text()).toMatch(/^(::error::invalid configuration: [^\n]+\n){2,}$/)
  })

  test('a cancel turns whatever failed after it into the cancel (exit 130, a note on stderr)', async () => {
    const c = new AbortController()
    handler.mockImplementation(async () => {
      c.abort('SIGINT')
      throw new Error('channel closed')
    })
    const o = { ...io(), signal: c.signal }
    expect(await run(o)).toEqual({ code: 130 })
    expect(o.stderr.text()).toContain('cancelled by SIGINT')
    expect(o.stdout.text()).toBe('')
  })
})

test('the agent path uses only the allow-listed environment the request carries', async () => {
  handler.mockResolvedValue({ exitCode: 0 })
  await paths.agent(io())
  const ctx = handler.mock.calls[0][1] as { runner: { runnerName: string; home?: string } }
  expect(ctx.runner.runnerName).toBe('exec-test')
  // HOME is not on the list: the agent never takes it (or anything else) from the request
  handler.mockClear()
  const o = io()
  await executeRequest({ op: 'run', raw: raw(), env: { ...env, HOME: '/elsewhere' }, cwd: o.cwd }, o)
  expect((handler.mock.calls[0][1] as { runner: { home?: string } }).runner.home).toBeUndefined()
})

// A failure before the command's own log was opened reached the step log only: an operator reading
// hook.log saw nothing of a refused input, a broken config or a response file the runner cannot get.
describe('a failure before the log is opened still reaches a file log', () => {
  const logged = (o: ExecuteIo): string => {
    try {
      return readFileSync(o.place.defaultLogFile, 'utf8')
    } catch {
      return ''
    }
  }

  test('input the hook refuses: the error line in the default log file, at error level', async () => {
    const o = io()
    const r = await execute(
      JSON.stringify({ command: 'run_script_step', responseFile, args: { ...args, entryPoint: 7 }, state: null }),
      env,
      o
    )
    expect(r.code).toBe(EXIT.input)
    expect(handler).not.toHaveBeenCalled()
    const line = /::error::(.*)\n/.exec(o.stdout.text())?.[1]
    expect(line).toMatch(/entryPoint/)
    expect(logged(o)).toMatch(new RegExp(` error .*entryPoint`))
  })

  test('a config that does not load: in the default file', async () => {
    writeFileSync(env.REMOTE_HOOKS_CONFIG, '{"provider":{"kind":"nope"}}')
    const o = io()
    expect((await execute(raw(), env, o)).code).toBe(EXIT.config)
    expect(logged(o)).toMatch(/ error .*provider/)
  })

  test("a config whose log.file is inside the runner's work folder: in the default file, never there", async () => {
    const inside = join(dir, '_work', 'hook.log')
    env.REMOTE_HOOKS_CONFIG = staticConfigFile(dir, { log: { file: inside } })
    const o = io()
    expect((await execute(raw(), env, o)).code).toBe(EXIT.config)
    expect(logged(o)).toMatch(/ error .*log\.file/)
    expect(() => readFileSync(inside)).toThrow()
  })

  test("a TMPDIR inside the runner's work folder (the default file with it), or no RUNNER_TEMP: no file line at all", async () => {
    const o = io()
    o.place.defaultLogFile = join(dir, '_work', 'tmp', 'rch', 'hook.log')
    writeFileSync(env.REMOTE_HOOKS_CONFIG, '{"provider":{"kind":"nope"}}')
    expect((await execute(raw(), env, o)).code).toBe(EXIT.config)
    expect(logged(o)).toBe('')
    const unset = io()
    expect((await execute(raw(), { ...env, RUNNER_TEMP: '' }, unset)).code).not.toBe(0)
    expect(logged(unset)).toBe('')
  })

  test('control: a configured log.file outside it gets the line, and a command that succeeds writes no error', async () => {
    const elsewhere = join(dir, 'private-log', 'hook.log')
    mkdirSync(join(dir, 'private-log'), { mode: 0o700 })
    env.REMOTE_HOOKS_CONFIG = staticConfigFile(dir, { log: { file: elsewhere } })
    const o = io()
    await execute(JSON.stringify({ command: 'run_script_step', responseFile, args: { ...args, entryPoint: 7 }, state: null }), env, o)
    expect(readFileSync(elsewhere, 'utf8')).toMatch(/ error .*entryPoint/)
    expect(logged(o)).toBe('')
    handler.mockResolvedValue({ exitCode: 0 })
    const ok = io()
    expect((await execute(raw(), env, ok)).code).toBe(0)
    expect(logged(ok)).toBe('')
  })
})
