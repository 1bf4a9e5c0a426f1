import { escapeData, inertLines, MAX_FOREIGN_LOG_CHARS, workflowCommand } from '../../src/workflow-commands'
import { longLineNote } from '../../src/line-tail'

/**
 * The runner's reading of step-log lines, as far as these tests need it: `::name::value` is a
 * command unless it comes between `::stop-commands::TOKEN` and `::TOKEN::`.
 */
function commandsSeen(lines: string[]): string[] {
  const seen: string[] = []
  let stopToken: string | null = null
  for (const line of lines) {
    const m = /^::([a-z-]+)::(.*)$/.exec(line)
    if (stopToken !== null) {
      if (line === `::${stopToken}::`) stopToken = null
      continue
    }
    if (!m) continue
    if (m[1] === 'stop-commands') stopToken = m[2]
    else seen.push(`${m[1]}:${m[2]}`)
  }
  return seen
}

describe('escapeData', () => {
  test('escapes %, CR and LF the way the runner decodes them, % first', () => {
    expect(escapeData('50% done\r\nnext')).toBe('50%25 done%0D%0Anext')
    // a literal "%0A" in a message stays literal after the runner decodes it
    expect(escapeData('%0A')).toBe('%250A')
    expect(escapeData('plain: text')).toBe('plain: text')
  })

  test('workflowCommand escapes the value, so a message cannot start a second command line', () => {
    expect(workflowCommand('error', 'bad\n::add-mask::x')).toBe('::error::bad%0A::add-mask::x')
    expect(workflowCommand('warning', 'a%b')).toBe('::warning::a%25b')
    expect(workflowCommand('endgroup')).toBe('::endgroup::')
  })
})

describe('inertLines', () => {
  const hostile = 'starting\n::error::pwned\n::add-mask::secret\n::set-output name=x::y\nbye\n'

  test('positive control: the raw log lines would be workflow commands', () => {
    expect(commandsSeen(hostile.split('\n'))).toEqual(['error:pwned', 'add-mask:secret'])
  })

  test('wrapped, none of the log lines is a command, and every line is still shown', () => {
    const lines = inertLines(hostile)
    expect(commandsSeen(lines)).toEqual([])
    expect(lines.slice(1, -1)).toEqual(['starting', '::error::pwned', '::add-mask::secret', '::set-output name=x::y', 'bye'])
    expect(lines[0]).toMatch(/^::stop-commands::[0-9a-f]{32}$/)
    expect(lines[lines.length - 1]).toBe(`::${lines[0].slice('::stop-commands::'.length)}::`)
  })

  test('the token is fresh each time, so a log cannot know it to end the block early', () => {
    const a = inertLines('x')[0]
    const b = inertLines('x')[0]
    expect(a).not.toBe(b)
    // a guessed end marker inside the text does not end the block
    expect(commandsSeen(inertLines('::deadbeef::\n::error::still inert'))).toEqual([])
  })

  test('CR and CRLF line ends cannot hide a command on a line of its own', () => {
    expect(commandsSeen(inertLines('a\r::error::cr\r\n::error::crlf'))).toEqual([])
    expect(inertLines('a\r::error::cr').slice(1, -1)).toEqual(['a', '::error::cr'])
  })

  test('a `##[` that starts a line is broken as the multiline search did, in every short mix of spaces, ESC codes and separators', () => {
    const byOldSearch = (t: string): string[] =>
      // eslint-disable-next-line no-control-regex
      t.replace(/^((?:\s|\u001b\[[0-9;?]*[A-Za-z])*)##\[/gm, '$1## [').split('\n')
    const parts = [' ', '\t', '\n', '\u2028', '\u001b[1m', '##[', 'x']
    let strings = ['']
    for (let n = 0; n < 5; n++) strings = strings.flatMap((t) => parts.map((p) => t + p))
    const differ = strings.filter((t) => {
      const text = `${t}##[group]`
      return JSON.stringify(inertLines(text).slice(1, -1)) !== JSON.stringify(byOldSearch(text))
    })
    expect(differ).toEqual([])
  })

  test("a machine's log of a megabyte of CR (one line to docker, a line each here) takes time linear in it", () => {
    // The multiline search took ~27 minutes on this (a service's log, chosen by any workflow).
    const t = performance.now()
    const lines = inertLines('\r'.repeat(1 << 20))
    expect(performance.now() - t).toBeLessThan(2000)
    expect(lines[1]).toBe(`(the log's first part is not shown: it has ${(1 << 20) - 1} characters)`)
  })

  test('a long log is cut to its last part, at a line start, and says so', () => {
    const text = Array.from({ length: 50_000 }, (_, i) => `line ${i}`).join('\n')
    const lines = inertLines(text)
    const body = lines.slice(1, -1)
    expect(body.join('\n').length).toBeLessThanOrEqual(MAX_FOREIGN_LOG_CHARS + 100)
    expect(body[0]).toBe(`(the log's first part is not shown: it has ${text.length} characters)`)
    expect(body[1]).toMatch(/^line \d+$/)
    expect(body[body.length - 1]).toBe('line 49999')
    expect(inertLines('short').length).toBe(3)
  })

  // A value only the runner knows (a secret in the container's env) is masked only where it shows
  // whole: a cut inside the log's one long line must not leave its end on show.
  test('a long log whose kept part is inside one line shows no piece of that line', () => {
    const secret = 'SECRET-0123456789abcdef'
    const text = `${'x'.repeat(100_000)}${secret}${'y'.repeat(MAX_FOREIGN_LOG_CHARS - (secret.length - 5))}`
    // Positive control: the cut falls inside the secret.
    expect(text.slice(text.length - MAX_FOREIGN_LOG_CHARS).startsWith(secret.slice(5))).toBe(true)
    const body = inertLines(text).slice(1, -1)
    expect(body.join('\n')).not.toContain(secret.slice(5))
    expect(body).toEqual([`(the log's first part is not shown: it has ${text.length} characters)`, longLineNote(MAX_FOREIGN_LOG_CHARS)])
    // The last line after a long one is still shown whole.
    const after = inertLines(`${text}\nthe error`).slice(1, -1)
    expect(after.slice(1)).toEqual([longLineNote(MAX_FOREIGN_LOG_CHARS), 'the error'])
  })

  test('an empty log says so', () => {
    expect(inertLines('').slice(1, -1)).toEqual(['(empty)'])
  })
})
