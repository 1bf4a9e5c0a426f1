import { ConfigError, HookError, InputError, MESSAGE_MAX, StepFailed } from '../../src/errors'
import { EXIT, outcomeOf } from '../../src/outcome'

describe('outcomeOf', () => {
  test('a configuration error with six problems is six ::error:: lines, one problem each', () => {
    const issues = [
      'provider.hosts.0.port: Number must be less than or equal to 65535',
      'provider.hosts.0.identityFile: must be an absolute path',
      'remote.workRoot: must be a normalised absolute path other than /, without .. and only of A-Z a-z 0-9 . _ / -',
      'timeouts.connectSecs: unknown key (did you mean `connectSeconds`?)',
      'images.pullPolicy: Invalid enum value',
      'log.level: Invalid enum value'
    ]
    const o = outcomeOf(new ConfigError(issues))
    expect(o.code).toBe(EXIT.config)
    const lines = o.errorLine!.split('\n').filter(Boolean)
    expect(lines).toEqual(issues.map((i) => `::error::invalid configuration: ${i}`))
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(150)
  })

  test("an error message is escaped: it stays one ::error:: line, and % survives the runner's decoding", () => {
    const o = outcomeOf(new InputError('args.x: 100% wrong\r\n::add-mask::y'))
    expect(o).toEqual({ code: EXIT.input, errorLine: '::error::args.x: 100%25 wrong ::add-mask::y\n' })
    // formatError joins lines first; a carriage return alone is escaped here
    expect(outcomeOf(new HookError('a\rb')).errorLine).toBe('::error::a%0Db\n')
  })

  test("the step's own failure prints no error line", () => {
    expect(outcomeOf(new StepFailed(3))).toEqual({ code: 3 })
  })
})

describe("a machine's long text in an error", () => {
  const SECRET = 'ghp_S3cretValueOfTheJob'
  // A Docker engine's error body can be 16 MiB; the secret straddles the cut.
  const long = 'x'.repeat(MESSAGE_MAX - 5) + SECRET + 'y'.repeat(1_000_000)
  const mask = (s: string): string => s.split(SECRET).join('***')

  test('is cut to MESSAGE_MAX, saying how much was left out, after masking (no part of a secret shows)', () => {
    const line = outcomeOf(new HookError(long), mask).errorLine!
    expect(line.length).toBeLessThan(MESSAGE_MAX + 200)
    expect(line).toMatch(/… \(\d+ more characters not shown\)\n$/)
    expect(line).not.toContain(SECRET.slice(0, 5))
  })

  test('control: a message under the bound is whole', () => {
    const short = 'z'.repeat(MESSAGE_MAX - 20)
    expect(outcomeOf(new HookError(short)).errorLine).toBe(`::error::${short}\n`)
  })
})
