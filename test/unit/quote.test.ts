import { chmodSync, writeFileSync } from 'node:fs'
import { shjoin, shq } from '../../src/remote/quote'
import { cleanupTempDirs, nulJoined, sh, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

const HOSTILE: string[] = [
  '',
  ' ',
  '  two  spaces  ',
  'a b',
  "it's",
  "'",
  "''",
  "'\\''",
  '"',
  '"double" and \'single\'',
  '$HOME',
  '${HOME}',
  '$(id -u)',
  '`id -u`',
  '$((1+1))',
  '\\',
  '\\\\',
  'back\\slash\\n',
  'trailing backslash\\',
  'a\nb',
  '\n',
  '\n\nleading and trailing newlines\n\n',
  '\r\n',
  '\t',
  'tab\there',
  'héllo wörld',
  '☃ 𝄞 日本語',
  '-n',
  '-e',
  '--',
  '-',
  '--help',
  '*',
  '?',
  '[a-z]',
  '~',
  '~root',
  '#not a comment',
  'a;b',
  'a|b',
  'a&b',
  '>out',
  '<in',
  '!',
  '!!',
  '{a,b}',
  'a=b',
  '=',
  '%s\\0%d',
  '\x01\x02\x7f',
  'x'.repeat(20000)
]

/** What a real shell makes of `printf '%s\0' <quoted>`, via `sh -c '…' sh <quoted>`. */
function throughShell(quoted: string): Buffer {
  const r = sh(`/bin/sh -c 'printf "%s\\0" "$@"' sh ${quoted}`)
  expect(r.stderr.toString()).toBe('')
  expect(r.status).toBe(0)
  return r.stdout
}

describe('shq', () => {
  it.each(HOSTILE.map((s) => [JSON.stringify(s).slice(0, 60), s]))('round-trips %s byte-exact as one word', (_label, s) => {
    expect(throughShell(shq(s))).toEqual(nulJoined([s]))
  })

  it('leaves plain words unquoted and quotes everything else', () => {
    expect(shq('abc')).toBe('abc')
    expect(shq('/a/b-c_d.e:f,g@h%i+j')).toBe('/a/b-c_d.e:f,g@h%i+j')
    expect(shq('')).toBe("''")
    expect(shq('a b')).toBe("'a b'")
    expect(shq("it's")).toBe("'it'\\''s'")
    expect(shq('$x')).toBe("'$x'")
  })

  it('rejects a NUL byte (a shell word cannot carry one)', () => {
    expect(() => shq('a\0b')).toThrow(/NUL/)
    expect(() => shq('\0')).toThrow(/NUL/)
    expect(() => shjoin(['ok', 'bad\0'])).toThrow(/NUL/)
  })
})

describe('shjoin', () => {
  it('round-trips the whole hostile list as separate words, empty strings included', () => {
    expect(throughShell(shjoin(HOSTILE))).toEqual(nulJoined(HOSTILE))
  })

  it('keeps the argument count (empty strings and spaces are words)', () => {
    const argv = ['', '', 'a b', ' ']
    const out = throughShell(shjoin(argv))
    expect(out).toEqual(nulJoined(argv))
  })

  it('joins nothing into an empty string', () => {
    expect(shjoin([])).toBe('')
  })

  it('builds a runnable command line whose arguments arrive intact', () => {
    const argv = ['printf', '%s\\0', '$HOME', "it's", 'a\nb']
    const r = sh(shjoin(argv))
    expect(r.status).toBe(0)
    expect(r.stdout).toEqual(nulJoined(argv.slice(2)))
  })

  // shjoin's output is executed as a command, so its first word is in command position. There an
  // unquoted `NAME=value` word is a variable assignment and a bare `if` is a reserved word: the word
  // no longer reaches the shell as the command name.
  it.each([['X=1'], ['if']])('runs a command whose name is %s as that command', (name) => {
    const dir = tempDir()
    writeFileSync(`${dir}/${name}`, '#!/bin/sh\nprintf "ran:%s" "$1"\n')
    chmodSync(`${dir}/${name}`, 0o755)
    const r = sh(shjoin([name, 'arg']), { env: { PATH: `${dir}:${process.env.PATH}` } })
    expect(r.stdout.toString()).toBe('ran:arg')
  })
})
