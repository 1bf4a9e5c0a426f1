import { Cancelled, ConfigError, HookError, InputError, MESSAGE_MAX, StepFailed } from '../../src/errors'
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

  // The note says what became of a step only where the step's end told it.
  test("a cancel's note says whether the step's processes were seen to stop", () => {
    expect(outcomeOf(new Cancelled('SIGINT', 'stopped'))).toEqual({
      code: 130,
      note: "[remote-hooks] cancelled by SIGINT; the step's processes on the remote machine were stopped\n"
    })
    const cut = outcomeOf(new Cancelled('SIGTERM', 'unconfirmed'))
    expect(cut.code).toBe(143)
    expect(cut.note).toMatch(/^\[remote-hooks\] cancelled by SIGTERM; the remote machine did not confirm .* the step was cut off/)
    expect(cut.note).not.toContain('were stopped')
    expect(outcomeOf(new Cancelled('SIGINT'))).toEqual({ code: 130, note: '[remote-hooks] cancelled by SIGINT\n' })
  })
})

describe("a machine's long text in an error", () => {
  const SECRET = 'ghp_S3cretValueOfTheJob'
  const mask = (s: string): string => s.split(SECRET).join('***')
  // A Docker engine's error body can be 16 MiB: words, then the line that says what went wrong.
  const words = (n: number): string => Array.from({ length: n }, (_, i) => `word${i}`).join(' ')
  const long = `docker create app failed (exit code 1): ${words(200_000)} | the real error at the end`

  test('keeps its start and its end, says how much of the middle was left out, and stays near MESSAGE_MAX', () => {
    const line = outcomeOf(new HookError(long)).errorLine!
    expect(line.length).toBeLessThan(MESSAGE_MAX + 200)
    expect(line).toMatch(/^::error::docker create app failed \(exit code 1\): word0 word1 /)
    expect(line).toMatch(/ … \(\d+ characters not shown\) word\d+ .* \| the real error at the end\n$/)
  })

  test('a secret the hook masks is masked before the cut; one it does not know (the runner masks it whole) is never shown in part', () => {
    const unknown = 'RUNNER_MASKED_' + 'k'.repeat(40)
    for (const at of [MESSAGE_MAX / 4 - 10, MESSAGE_MAX / 4, long.length - (MESSAGE_MAX * 3) / 4 - 10]) {
      const text = `${long.slice(0, at)}${SECRET}${unknown}${long.slice(at)}`
      const line = outcomeOf(new HookError(text), mask).errorLine!
      expect(line).not.toContain(SECRET.slice(0, 6))
      // Whole or not at all: any part of it would escape the runner's mask.
      const parts = [unknown.slice(0, 8), unknown.slice(-8)].map((p) => line.includes(p))
      expect([at, parts[0] === parts[1], line.includes(unknown) === parts[0]]).toEqual([at, true, true])
    }
  })

  test('control: a message under the bound is whole', () => {
    const short = 'z'.repeat(MESSAGE_MAX - 20)
    expect(outcomeOf(new HookError(short)).errorLine).toBe(`::error::${short}\n`)
  })
})
