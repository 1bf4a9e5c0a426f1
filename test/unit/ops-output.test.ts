import { checksTable, json, summary, table, type CheckResult } from '../../src/ops/output'
import { EX_USAGE, parseArgs } from '../../src/ops/command'

const checks: CheckResult[] = [
  { check: 'local ssh', target: 'runner host', status: 'pass', detail: '/usr/bin/ssh' },
  { check: 'rsync', target: 'u@h:22', status: 'fail', detail: 'rsync is not on the PATH', fix: 'install rsync' },
  { check: 'forwarding', target: 'u@h:22', status: 'skip', detail: 'cannot tell' }
]

describe('operator output', () => {
  it('aligns columns and leaves the last one unpadded', () => {
    expect(
      table(
        ['A', 'BB'],
        [
          ['long cell', 'x'],
          ['y', 'z']
        ]
      )
    ).toBe('A          BB\nlong cell  x\ny          z\n')
  })

  it('pads by terminal columns: wide letters take two, combining marks none; marks stacked three high are one ?', () => {
    const out = table(
      ['WORKFLOW', 'JOBS'],
      [
        ['ｒｅｌｅａｓｅ', '1'],
        ['release', '2'],
        ['café', '3'],
        ['z\u0336\u0336\u0336\u0336', '4']
      ]
    )
    expect(out.split('\n')).toEqual([
      'WORKFLOW        JOBS',
      'ｒｅｌｅａｓｅ  1',
      'release         2',
      'café            3',
      'z?              4',
      ''
    ])
    // control: by characters the fullwidth name would have counted 7 and its JOBS cell sat 7 columns left
    expect(Array.from('ｒｅｌｅａｓｅ')).toHaveLength(7)
    // a wide name past the bound is cut by columns too
    const cut = table(['A', 'B'], [['漢'.repeat(100), 'x']]).split('\n')[1]
    expect(cut).toBe(`${'漢'.repeat(39)}…  x`)
  })

  it('aligns 200,000 rows (a spread of them as arguments overflowed the stack)', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [`runner-${i}`, '1'])
    const out = table(['RUNNER', 'JOBS'], rows).split('\n')
    expect(out).toHaveLength(200_002)
    expect(out[200_000]).toBe('runner-199999  1')
  })

  it('writes what a terminal or jq would act on or hide as \\u escapes: the same document, read back the same', () => {
    const v = { name: 'a\u202eb\u200bc\u009b31m\u2028\u{e0041}\u007f', ok: 'CI 🚀 ünï' }
    const out = json(v)
    expect(out).not.toMatch(/[\u007f-\u009f\u200b\u202e\u2028]|\u{e0041}/u)
    expect(out).toContain('a\\u202eb\\u200bc\\u009b31m\\u2028\\udb40\\udc41\\u007f')
    expect(JSON.parse(out)).toEqual(v)
    // control: JSON.stringify alone leaves them raw
    expect(JSON.stringify(v)).toMatch(/\u202e/)
  })

  it("shows each check as a row, a failure's fix under it, and a summary", () => {
    expect(checksTable(checks)).toBe(
      [
        'STATUS  CHECK       TARGET       DETAIL',
        'PASS    local ssh   runner host  /usr/bin/ssh',
        'FAIL    rsync       u@h:22       rsync is not on the PATH',
        '                                 fix: install rsync',
        'SKIP    forwarding  u@h:22       cannot tell',
        '1 passed, 1 failed, 1 skipped',
        ''
      ].join('\n')
    )
    expect(summary([])).toBe('0 passed, 0 failed, 0 skipped')
  })

  it('shows text from a machine without its control characters (no terminal escapes)', () => {
    const hostile: CheckResult = {
      check: 'rsync',
      target: 'u@h:22',
      status: 'pass',
      detail: '/usr/bin/rsync\u001b[2J\u001b]0;owned\u0007\r\n'
    }
    const out = checksTable([hostile])
    expect(out).toContain('/usr/bin/rsync?[2J?]0;owned???')
    // eslint-disable-next-line no-control-regex -- looking for them
    expect(out.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/)
    expect(JSON.parse(json(hostile))).toEqual(hostile)
  })

  it('shows line and paragraph separators, format characters and lone surrogates as ? (control: letters of any script, emoji and accents as they are)', () => {
    const out = table(['NAME', 'N'], [['ci\u2028::error::forged\u2029x\u200dy\u00adz\ufeff\ud800', '1']])
    expect(out.split('\n')[1]).toBe('ci?::error::forged?x?y?z??  1')
    // Invisible fillers and marks that are not format characters: a Hangul filler, a grapheme joiner.
    expect(table(['NAME', 'N'], [['a\u3164b\u115fc\u034fd', '1']]).split('\n')[1]).toBe('a?b?c?d  1')
    const fine = 'Ünïcødé 構建 🚀 ci-build_1.yml'
    expect(table(['NAME', 'N'], [[fine, '1']]).split('\n')[1]).toBe(`${fine}  1`)
  })

  it('cuts a padded cell to 80 columns, so one long name does not widen every line; the last column is never cut', () => {
    const long = 'w'.repeat(100_000)
    const rows = Array.from({ length: 1000 }, (_, i) => [i === 0 ? long : `wf-${i}`, '1', `detail ${'d'.repeat(i === 1 ? 200 : 1)}`])
    const out = table(['WORKFLOW', 'JOBS', 'DETAIL'], rows)
    expect(out.length).toBeLessThan(100_000)
    const lines = out.split('\n')
    expect(lines[1]).toBe(`${'w'.repeat(79)}…  1     detail d`)
    expect(lines[2]).toBe(`wf-1${' '.repeat(76)}  1     detail ${'d'.repeat(200)}`)
    // Padded and cut by terminal columns: a column of emoji (two UTF-16 units, two columns each) is as wide as it shows.
    const emoji = table(
      ['E', 'N'],
      [
        ['🚀'.repeat(100), '1'],
        ['x', '2']
      ]
    ).split('\n')
    expect(emoji[1]).toBe(`${'🚀'.repeat(39)}…  1`)
    expect(emoji[2]).toBe(`x${' '.repeat(78)}  2`)
    // control: 80 characters stay whole
    expect(table(['A', 'B'], [['x'.repeat(80), 'y']]).split('\n')[1]).toBe(`${'x'.repeat(80)}  y`)
  })

  it('writes JSON as one document that parses back', () => {
    expect(JSON.parse(json({ ok: false, checks }))).toEqual({ ok: false, checks })
  })
})

describe('operator command lines', () => {
  const cmd = { name: 'doctor' as const, maxPositional: 1, options: { since: 'value' as const, 'dry-run': 'flag' as const } }

  it('reads --json, flags, valued options (both forms) and positionals', () => {
    expect(parseArgs(cmd, ['f.yaml', '--json', '--dry-run', '--since', '2026-12-01'])).toEqual({
      positional: ['f.yaml'],
      file: 'f.yaml',
      json: true,
      options: { 'dry-run': true, since: '2026-12-01' }
    })
    // every command takes the configuration file as --config FILE too, and only once
    expect(parseArgs(cmd, ['--config=c.yaml', '--json'])).toEqual({ positional: [], file: 'c.yaml', json: true, options: {} })
    expect(parseArgs(cmd, ['c.yaml', '--config', 'd.yaml'])).toEqual({
      error: 'doctor: give the configuration file once (FILE or --config FILE)'
    })
    expect(parseArgs(cmd, ['--since=yesterday'])).toEqual({ positional: [], json: false, options: { since: 'yesterday' } })
    expect(parseArgs(cmd, ['--', '--json'])).toEqual({ positional: ['--json'], file: '--json', json: false, options: {} })
  })

  it('answers --help and -h before anything else', () => {
    expect(parseArgs(cmd, ['--bogus', '--help'])).toEqual({ help: true })
    expect(parseArgs(cmd, ['-h'])).toEqual({ help: true })
  })

  it('names what is wrong with a bad command line', () => {
    expect(parseArgs(cmd, ['--bogus'])).toEqual({ error: 'doctor: unknown option --bogus' })
    expect(parseArgs(cmd, ['--dry-run=1'])).toEqual({ error: 'doctor: --dry-run takes no value' })
    expect(parseArgs(cmd, ['--since'])).toEqual({ error: 'doctor: --since needs a value' })
    expect(parseArgs(cmd, ['a', 'b'])).toEqual({ error: 'doctor: unexpected argument "b"' })
    expect(EX_USAGE).toBe(64)
  })
})
