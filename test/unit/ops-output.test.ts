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
