import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import {
  Cancelled,
  ConfigError,
  HookError,
  InputError,
  RemoteCommandError,
  StepFailed,
  TransportError,
  formatError
} from '../../src/errors'
import { SRC, bundle, cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

describe('formatError', () => {
  it('formats an Error by its message', () => {
    expect(formatError(new Error('boom'))).toBe('boom')
  })

  it('joins lines as the regular expression it replaced did: each break and the white space around it one space', () => {
    const byRegex = (s: string): string => s.replace(/\s*\n\s*/g, ' ')
    const parts = ['a', ' ', '\n', '\r', '\t', '\u2028', 'b ']
    // Every string of up to five parts (16,800 of them), line breaks where they fall.
    let strings = ['']
    for (let n = 0; n < 5; n++) strings = strings.flatMap((s) => parts.map((p) => s + p))
    const differ = strings.filter((s) => formatError(new Error(`x${s}`)) !== byRegex(`x${s}`))
    expect(differ).toEqual([])
  })

  it("takes time linear in a machine's text: a run of spaces without a line break before one", () => {
    // A hostile engine's error body (the VM is the job's): the regular expression took ~30 s on this.
    const body = `x${' '.repeat(256 * 1024)}y\nz`
    const t = performance.now()
    expect(formatError(new Error(body))).toBe(`x${' '.repeat(256 * 1024)}y z`)
    expect(performance.now() - t).toBeLessThan(1000)
  })

  it('appends the cause', () => {
    expect(formatError(new Error('connect failed', { cause: new Error('ECONNREFUSED 10.0.0.1:22') }))).toBe(
      'connect failed: ECONNREFUSED 10.0.0.1:22'
    )
    expect(formatError(new TransportError('ssh to a failed', 'network', { cause: 'timeout' }))).toBe('ssh to a failed: timeout')
  })

  it('follows a chain of causes', () => {
    const err = new HookError('prepare_job failed', { cause: new Error('pull failed', { cause: new Error('401 unauthorized') }) })
    expect(formatError(err)).toBe('prepare_job failed: pull failed: 401 unauthorized')
  })

  it('does not repeat a cause already in the message', () => {
    const cause = new Error('ECONNRESET')
    expect(formatError(new TransportError('connection lost: ECONNRESET', 'lost', { cause }))).toBe('connection lost: ECONNRESET')
    expect(formatError(new Error('read ECONNRESET', { cause }))).toBe('read ECONNRESET')
  })

  it('uses the name of an Error without a message', () => {
    expect(formatError(new TypeError())).toBe('TypeError')
    expect(formatError(new InputError(''))).toBe('InputError')
  })

  it('puts a multi-line message on one line', () => {
    expect(formatError(new Error('first\n  second\r\nthird'))).toBe('first second third')
    expect(formatError(new Error('outer', { cause: new Error('a\nb') }))).toBe('outer: a b')
  })

  it('formats non-Errors', () => {
    expect(formatError('plain string')).toBe('plain string')
    expect(formatError(42)).toBe('42')
    expect(formatError(null)).toBe('null')
    expect(formatError(undefined)).toBe('undefined')
    expect(formatError(true)).toBe('true')
    expect(formatError(10n)).toBe('10')
    expect(formatError({ code: 'E1', errno: 5 })).toBe('{"code":"E1","errno":5}')
    expect(formatError(Symbol('s'))).toBe('Symbol(s)')
  })

  it('uses the message of an error-like object', () => {
    expect(formatError({ message: 'from a worker', stack: 'x' })).toBe('from a worker')
    expect(formatError({ message: 17 })).toBe('17')
  })

  it('does not throw on a circular object', () => {
    const o: Record<string, unknown> = { a: 1 }
    o.self = o
    expect(formatError(o)).toBe('[object Object]')
  })

  it('does not throw on a circular error-like object', () => {
    const o: Record<string, unknown> = { message: 'm' }
    o.self = o
    expect(formatError(o)).toBe('m')
  })

  // "Turns any thrown value into a single line": a string thrown by a dependency is a thrown value too.
  it('puts a multi-line thrown string or message-object on one line', () => {
    expect(formatError('line1\nline2')).toBe('line1 line2')
    expect(formatError({ message: 'a\nb' })).toBe('a b')
  })

  // "… without throwing itself (circular objects, non-Errors)": an object without a prototype has
  // no toString, so the last-resort String(err) throws too.
  it('does not throw on a circular object without a prototype', () => {
    const o = Object.create(null) as Record<string, unknown>
    o.self = o
    expect(() => formatError(o)).not.toThrow()
  })

  // A cause cycle (a.cause = b, b.cause = a) must not recurse without end. Run in a child process:
  // if formatError never returns or takes the process down, the test must still finish.
  it.each([
    ['Error', 'new Error("a", { cause: null })'],
    ['HookError', 'new HookError("a")']
  ])('returns a short line for a %s whose cause chain is circular', (_kind, make) => {
    const dir = tempDir()
    const entry = join(dir, 'cycle.ts')
    writeFileSync(
      entry,
      `import { HookError, formatError } from ${JSON.stringify(join(SRC, 'errors'))}
const a: any = ${make}
const b: any = new Error("b", { cause: a })
a.cause = b
process.stdout.write(JSON.stringify(formatError(a)))
`
    )
    const js = bundle(entry, join(dir, 'cycle.js'))
    const r = spawnSync(process.execPath, [js], { timeout: 10_000 })
    expect(r.signal).toBeNull() // SIGTERM: did not return in time; SIGABRT: V8 ran out of memory
    expect(r.status).toBe(0)
    const line = JSON.parse(r.stdout.toString()) as string
    expect(line.startsWith('a: b')).toBe(true)
    expect(line.length).toBeLessThan(200)
  })
})

describe('error classes', () => {
  it('name themselves after the class', () => {
    expect(new InputError('x').name).toBe('InputError')
    expect(new TransportError('x', 'lost').name).toBe('TransportError')
    expect(new StepFailed(3).name).toBe('StepFailed')
    expect(new InputError('x')).toBeInstanceOf(HookError)
  })

  it('RemoteCommandError keeps the last three stderr lines on one line', () => {
    const e = new RemoteCommandError('docker pull x', 1, 'l1\nl2\nl3\nl4\n\n')
    expect(e.message).toBe('docker pull x failed (exit code 1): l2 | l3 | l4')
    expect(new RemoteCommandError('tar', null, '', 'KILL').message).toBe('tar failed (killed by signal KILL)')
    expect(new RemoteCommandError('tar', null, '   ').message).toBe('tar failed (killed by signal unknown)')
  })

  it('ConfigError, StepFailed and Cancelled say what happened', () => {
    expect(new ConfigError(['a: x', 'b: y']).message).toBe('invalid configuration: a: x; b: y')
    expect(new StepFailed(3).message).toBe("the step's process exited with code 3")
    expect(new StepFailed(3).exitCode).toBe(3)
    expect(new Cancelled('SIGINT').message).toBe('cancelled by SIGINT')
  })
})
