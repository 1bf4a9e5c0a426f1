import { rejoinArgs, shlexScan, shlexSplit } from '../../src/shlex'
import { sh, splitNul } from './_helpers'

/** A real POSIX shell's word splitting of `input` (inputs here have no expansions or operators). */
function shellSplit(input: string): string[] {
  const r = sh(`printf '%s\\0' ${input}`)
  expect(r.status).toBe(0)
  return splitNul(r.stdout).map((b) => b.toString('utf8'))
}

describe('shlexSplit', () => {
  it('splits createOptions as the runner sends them', () => {
    expect(shlexSplit('--health-cmd "redis-cli ping" --health-interval 10s --health-timeout 5s --health-retries 5')).toEqual([
      '--health-cmd',
      'redis-cli ping',
      '--health-interval',
      '10s',
      '--health-timeout',
      '5s',
      '--health-retries',
      '5'
    ])
    expect(shlexSplit("--cpus 1 --label 'a b=c d'")).toEqual(['--cpus', '1', '--label', 'a b=c d'])
  })

  it('treats spaces, tabs and newlines as separators and collapses runs of them', () => {
    expect(shlexSplit('  a \t b\n\nc  ')).toEqual(['a', 'b', 'c'])
    expect(shlexSplit('')).toEqual([])
    expect(shlexSplit(' \t\n ')).toEqual([])
  })

  it('keeps empty quoted words', () => {
    expect(shlexSplit('a "" b')).toEqual(['a', '', 'b'])
    expect(shlexSplit("''")).toEqual([''])
  })

  it('handles backslash escapes outside quotes', () => {
    expect(shlexSplit('a\\ b')).toEqual(['a b'])
    expect(shlexSplit('\\"x\\"')).toEqual(['"x"'])
    expect(shlexSplit("it\\'s")).toEqual(["it's"])
    expect(shlexSplit('a\\\\b')).toEqual(['a\\b'])
    expect(shlexSplit('a\\\nb')).toEqual(['ab'])
  })

  it('handles backslash inside double quotes only before " \\ $ ` and newline', () => {
    expect(shlexSplit('"a\\"b"')).toEqual(['a"b'])
    expect(shlexSplit('"a\\\\b"')).toEqual(['a\\b'])
    expect(shlexSplit('"\\$x \\`y\\`"')).toEqual(['$x `y`'])
    expect(shlexSplit('"a\\nb"')).toEqual(['a\\nb'])
    expect(shlexSplit('"a\\\nb"')).toEqual(['ab'])
  })

  it('takes single-quoted text literally', () => {
    expect(shlexSplit('\'a\\b "c" $d\'')).toEqual(['a\\b "c" $d'])
    expect(shlexSplit('"it\'s"')).toEqual(["it's"])
  })

  it('does no expansion', () => {
    expect(shlexSplit('$HOME "$HOME" ~ * `id`')).toEqual(['$HOME', '$HOME', '~', '*', '`id`'])
  })

  it('concatenates adjacent quoted and unquoted parts into one word', () => {
    expect(shlexSplit('-e"x y"z\'1 2\'')).toEqual(['-ex yz1 2'])
  })

  it.each(['"abc', "'abc", 'a "b c', "a 'b", '"a\\"', 'ok "', "ok '"])('returns null on the unterminated quote in %j', (input) => {
    expect(shlexSplit(input)).toBeNull()
  })

  it.each([
    ['"abc', 0],
    ['a "b c', 2],
    ["x 'y' \"z", 6],
    ['"it\'s" \'a', 7],
    ['"a\\"', 0]
  ])('shlexScan locates the quote that is never closed in %j', (input, at) => {
    expect(shlexScan(input)).toEqual({ unterminatedAt: at })
  })

  // The same strings through a real shell, as the oracle.
  it.each([
    '--health-cmd "redis-cli ping" --health-interval 10s',
    '"a b"c\'d e\'f',
    '"a\\"b" "a\\\\b" "a\\b"',
    'a\\ b \\"q\\"',
    "'a\\b' \"it's\" 'say \"hi\"'",
    'a "" b \'\'',
    '  leading   and\ttrailing  ',
    '-e"x y"z',
    '"héllo wörld" ☃',
    'a\\\nb "c\\\nd"',
    '--label "x=\\"y\\""'
  ])('agrees with /bin/sh on %j', (input) => {
    expect(shlexSplit(input)).toEqual(shellSplit(input))
  })
})

describe('shlexSplit: line continuations between words', () => {
  // YAML `options: |` blocks are often written with shell line continuations. A backslash-newline
  // is removed by the shell; between two words it must not leave an empty word behind (docker would
  // get '' as an argument and take it for the image name).
  it('treats a backslash-newline between words as nothing, like /bin/sh', () => {
    const options = '--health-cmd "pg_isready" \\\n  --health-interval 10s'
    expect(shellSplit(options)).toEqual(['--health-cmd', 'pg_isready', '--health-interval', '10s'])
    expect(shlexSplit(options)).toEqual(['--health-cmd', 'pg_isready', '--health-interval', '10s'])
  })
})

describe('rejoinArgs', () => {
  it('rejoins a quoted argument the runner split on spaces', () => {
    expect(rejoinArgs(['"hello', 'world"'])).toEqual(['hello world'])
  })

  it('leaves plain fragments unchanged', () => {
    expect(rejoinArgs(['-e', '/__w/_temp/x.sh'])).toEqual(['-e', '/__w/_temp/x.sh'])
    expect(rejoinArgs(['--noprofile', '--norc', '-e', '-o', 'pipefail', '/__w/_temp/x.sh'])).toEqual([
      '--noprofile',
      '--norc',
      '-e',
      '-o',
      'pipefail',
      '/__w/_temp/x.sh'
    ])
  })

  it('rebuilds the pwsh argument string (docs/protocol.md)', () => {
    expect(rejoinArgs(['-command', '".', "'/__w/_temp/x.ps1'\""])).toEqual(['-command', ". '/__w/_temp/x.ps1'"])
  })

  it('rebuilds runs.args wrapped in quotes with escaped inner quotes (docs/protocol.md)', () => {
    // args: ['say "hi"', '', 'x'] → `"say \"hi\"" "" "x"` → split on single spaces
    expect(rejoinArgs(['"say', '\\"hi\\""', '""', '"x"'])).toEqual(['say "hi"', '', 'x'])
  })

  it('restores runs of spaces inside quotes from the empty fragments', () => {
    expect(rejoinArgs(['"a', '', 'b"'])).toEqual(['a  b'])
  })

  it('drops empty fragments', () => {
    expect(rejoinArgs(['-e', '', '/x.sh', ''])).toEqual(['-e', '/x.sh'])
    expect(rejoinArgs(['', '"a b"', ''])).toEqual(['a b'])
    expect(rejoinArgs([])).toEqual([])
  })

  it('an argument ending in a backslash (the runner escapes only quotes): only that one keeps its backslash', () => {
    // args: ['-c', 'echo a', 'C:\\'] → `"-c" "echo a" "C:\"`
    expect(rejoinArgs(['"-c"', '"echo', 'a"', '"C:\\"'])).toEqual(['-c', 'echo a', 'C:\\'])
    expect(rejoinArgs(['"a\\"', '"b', 'c"'])).toEqual(['a\\', 'b c'])
    // Control: an escaped quote inside an argument is still one (the strict reading comes first),
    // also before the argument that ends in a backslash.
    expect(rejoinArgs(['"x\\"', 'y"'])).toEqual(['x" y'])
    expect(rejoinArgs(['"x\\"', 'y"', '"C:\\"'])).toEqual(['x" y', 'C:\\'])
    // Quotes that no reading closes, 20,001 of them: the fragments as sent, after a bounded number of tries.
    const many = Array.from({ length: 20_001 }, () => '"a')
    const t = Date.now()
    const got = rejoinArgs(many)
    expect(got.length === many.length && got.every((g, i) => g === many[i])).toBe(true)
    expect(Date.now() - t).toBeLessThan(2_000)
  })

  it('falls back to the fragments as sent when the quotes do not balance', () => {
    expect(rejoinArgs(['"hello', 'world'])).toEqual(['"hello', 'world'])
    expect(rejoinArgs(["it's", 'fine'])).toEqual(["it's", 'fine'])
  })

  it('applies backslash escapes once fragments contain one', () => {
    expect(rejoinArgs(['a\\ b', 'c'])).toEqual(['a b', 'c'])
  })
})
