import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { envDelivery, validateEnvNames } from '../../src/docker/env-script'
import { InputError } from '../../src/errors'
import { shq } from '../../src/remote/quote'
import { cleanupTempDirs, parseEnv0, sh, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

/** Values an env file can hold (no \r or \n): they must reach it literally, whatever they contain. */
const SINGLE_LINE: Record<string, string> = {
  EMPTY: '',
  SPACES: '  a  b  ',
  SINGLE: "it's 'quoted'",
  DOUBLE: 'say "hi"',
  DOLLAR: '$HOME ${HOME} $(touch pwned-dollar) $((1+1))',
  BACKTICK: '`touch pwned-backtick`',
  BACKSLASH: 'C:\\path\\n\\\\',
  TRAILING_BACKSLASH: 'x\\',
  TAB: '\tx\t',
  UNICODE: 'héllo ☃ 𝄞 日本',
  DASH: '-e',
  EQUALS: 'a=b=c',
  GLOB: '* ? [a-z] ~',
  SEMI: 'a; rm -rf /; b && c || d | e > f < g &',
  HASH: '#not a comment',
  HEREDOC_LIKE: "RCH_EOF_0123456789abcdef'",
  lower_case: 'lower',
  _UNDERSCORE: 'u',
  A1: 'one',
  // Names the docker CLI itself reads: as single-line values they must stay out of its environment.
  DOCKER_HOST: 'tcp://docker:2375',
  DOCKER_CONFIG: '/tmp/evil-config',
  BUILDKIT_PROGRESS: 'plain',
  PATH: '/opt/no-docker-here/bin',
  HOME: '/home/job',
  // Names that are not shell identifiers.
  'INPUT_node-version': '20.x',
  'INPUT_with.dot': 'a $b `c` \'d\' "e" \\f',
  '1STARTS_WITH_DIGIT': '  spaced  ',
  'INPUT_empty-one': ''
}

/** Values an env file cannot hold: they are exported on stdin and passed by name (`-e NAME`). */
const MULTI_LINE: Record<string, string> = {
  MULTI: 'line1\nline2\n\nline4',
  TRAILING_NL: 'value\n\n',
  LEADING_NL: '\nvalue',
  ONLY_NL: '\n',
  ONLY_CR: '\r',
  CRLF: 'a\r\nb\r\n',
  CODE: "'; touch pwned-multi; '\n$(touch pwned-multi2)\n`touch pwned-multi3`",
  EOF_LIKE: "EOF\nRCH_EOF\n'",
  PRIVATE_KEY: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n'
}

const HOSTILE: Record<string, string> = { ...SINGLE_LINE, ...MULTI_LINE }

/** What `/bin/sh -c` starts with here (see sh() in _helpers): never one of the job's values. */
const BASE_ENV = new Set(['PATH', 'PWD', 'OLDPWD', 'SHLVL', '_'])

/**
 * Feeds stdin to the wrapper the hook uses (`set -a; eval "$(cat)"; set +a; …`), run by a real
 * /bin/sh in `cwd`, and returns the environment the next command (docker) sees.
 */
function exported(stdin: string, cwd: string, prefix = ''): Map<string, Buffer> {
  const r = sh(`${prefix}set -a; eval "$(cat)"; set +a; env -0`, { input: stdin, cwd })
  expect(r.stderr.toString()).toBe('')
  expect(r.status).toBe(0)
  return parseEnv0(r.stdout)
}

/** The env file named by the flags (exactly one --env-file), checked to be a fresh name in dir. */
function envFileOf(flags: string[], dir: string): string {
  const at = flags.flatMap((f, i) => (f === '--env-file' ? [i] : []))
  expect(at).toHaveLength(1)
  const file = flags[at[0] + 1]
  expect(file).toMatch(new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\.env-[0-9a-f]{12}$`))
  return file
}

/** docker's --env-file format: one NAME=VALUE per line, split at the first "=", value literal. */
function envFileEntries(text: string): [string, string][] {
  expect(text.endsWith('\n')).toBe(true)
  return text
    .slice(0, -1)
    .split('\n')
    .map((l) => {
      const eq = l.indexOf('=')
      expect(eq).toBeGreaterThan(0)
      return [l.slice(0, eq), l.slice(eq + 1)] as [string, string]
    })
}

describe('envDelivery: multi-line values (exported on stdin, passed as -e NAME)', () => {
  it('reproduces every multi-line value byte-exact in the environment of the command', () => {
    const dir = tempDir()
    const d = envDelivery(HOSTILE, dir)
    const env = exported(d.stdin, dir)
    for (const [k, v] of Object.entries(MULTI_LINE)) {
      expect([k, env.get(k)]).toEqual([k, Buffer.from(v, 'utf8')])
    }
  })

  it('runs none of the code a value looks like', () => {
    const dir = tempDir()
    const d = envDelivery(HOSTILE, dir)
    exported(d.stdin, dir)
    // Only the env file itself was created; no `touch pwned-*` ran.
    expect(readdirSync(dir)).toEqual([envFileOf(d.flags, dir).slice(dir.length + 1)])
  })

  it("a single-line value too long for docker's env-file reader (64 KiB lines) is exported the same way", () => {
    const dir = tempDir()
    const long = `'"$(id)` + 'z'.repeat(100_000)
    const d = envDelivery({ LONG: long, SHORT: 'x' }, dir)
    expect(d.flags).toContain('LONG')
    expect(exported(d.stdin, dir).get('LONG')).toEqual(Buffer.from(long))
    // positive control: the short value still goes through the env file, not the CLI's environment
    expect(exported(d.stdin, dir).has('SHORT')).toBe(false)
    expect(() => validateEnvNames({ LD_PRELOAD: 'z'.repeat(70_000) }, 'f')).toThrow(InputError)
    expect(() => validateEnvNames({ OK: 'z'.repeat(140_000) }, 'f')).toThrow(/longer than the 131072 bytes/)
  })

  it('needs no env file when every value is multi-line', () => {
    const dir = tempDir()
    const d = envDelivery(MULTI_LINE, dir)
    expect(d.flags).toEqual(Object.keys(MULTI_LINE).flatMap((k) => ['-e', k]))
    expect(d.after).toBe('')
    const env = exported(d.stdin, dir)
    for (const [k, v] of Object.entries(MULTI_LINE)) expect([k, env.get(k)]).toEqual([k, Buffer.from(v, 'utf8')])
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('envDelivery: single-line values (0600 env file through a quoted heredoc)', () => {
  it('writes every single-line value byte-exact to the env file, in docker env-file format', () => {
    const dir = tempDir()
    const d = envDelivery(HOSTILE, dir)
    const file = envFileOf(d.flags, dir)
    exported(d.stdin, dir)
    const bytes = readFileSync(file)
    expect(bytes).toEqual(
      Buffer.from(
        Object.entries(SINGLE_LINE)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
        'utf8'
      )
    )
    expect(envFileEntries(bytes.toString('utf8'))).toEqual(Object.entries(SINGLE_LINE))
  })

  it('keeps single-line values out of the environment of the docker CLI', () => {
    const dir = tempDir()
    const d = envDelivery(HOSTILE, dir)
    const env = exported(d.stdin, dir)
    for (const k of Object.keys(SINGLE_LINE)) {
      if (BASE_ENV.has(k)) expect([k, env.get(k)?.toString()]).not.toEqual([k, SINGLE_LINE[k]])
      else expect([k, env.has(k)]).toEqual([k, false])
    }
    expect(env.get('PATH')?.toString()).toBe(process.env.PATH ?? '/usr/bin:/bin')
    // Nothing beyond the multi-line names was added to the shell's environment.
    expect([...env.keys()].filter((k) => !BASE_ENV.has(k)).sort()).toEqual(Object.keys(MULTI_LINE).sort())
  })

  it('hands a value through unchanged even when it equals a shell keyword or looks like code', () => {
    const dir = tempDir()
    const env = { X: 'if', Y: 'fi', Z: "'; exit 3; '", W: '$(exit 4)' }
    const d = envDelivery(env, dir)
    expect(exported(d.stdin, dir).has('X')).toBe(false)
    expect(envFileEntries(readFileSync(envFileOf(d.flags, dir), 'utf8'))).toEqual(Object.entries(env))
  })

  it('creates the env file 0600, even under a permissive umask, and `after` removes it', () => {
    for (const umask of ['', 'umask 000; ']) {
      const dir = tempDir()
      const d = envDelivery({ A: '1', 'b-c': '2', M: 'x\ny' }, dir)
      const file = envFileOf(d.flags, dir)
      exported(d.stdin, dir, umask)
      expect(statSync(file).mode & 0o777).toBe(0o600)
      expect(d.after).toBe(`rm -f ${shq(file)}`)
      const rm = sh(d.after)
      expect(rm.status).toBe(0)
      expect(existsSync(file)).toBe(false)
    }
  })

  it('uses a fresh file name and heredoc delimiter each time', () => {
    const dir = tempDir()
    const a = envDelivery({ 'a-b': '1' }, dir)
    const b = envDelivery({ 'a-b': '1' }, dir)
    expect(envFileOf(a.flags, dir)).not.toBe(envFileOf(b.flags, dir))
    expect(a.stdin).not.toBe(b.stdin)
  })

  it('a value line cannot end the heredoc early', () => {
    const dir = tempDir()
    const d = envDelivery({ 'x-y': 'RCH_EOF', Z: 'RCH_EOF' }, dir)
    const delim = /<<'([^']+)'/.exec(d.stdin)![1]
    expect(delim).toMatch(/^RCH_EOF_[0-9a-f]{16}$/)
    exported(d.stdin, dir)
    expect(readFileSync(envFileOf(d.flags, dir), 'utf8')).toBe('x-y=RCH_EOF\nZ=RCH_EOF\n')
  })
})

describe('envDelivery: command line', () => {
  it('holds names and the env file path only, never values', () => {
    const dir = tempDir()
    const d = envDelivery(HOSTILE, dir)
    const file = envFileOf(d.flags, dir)
    expect(d.flags).toEqual([...Object.keys(MULTI_LINE).flatMap((k) => ['-e', k]), '--env-file', file])
    expect(d.after).toBe(`rm -f ${shq(file)}`)

    const secret = envDelivery({ TOKEN: 'ghp_S3cr3tValue', 'INPUT_tok-en': 'ghp_Other5ecret', KEY: 'ghp_\nMultiLine5ecret' }, dir)
    expect(secret.flags).toEqual(['-e', 'KEY', '--env-file', envFileOf(secret.flags, dir)])
    expect(secret.flags.join(' ')).not.toMatch(/ghp_|5ecret/)
    expect(secret.after).not.toMatch(/ghp_|5ecret/)
  })

  it('handles an empty environment', () => {
    const dir = tempDir()
    const d = envDelivery({}, dir)
    expect(d.flags).toEqual([])
    expect(d.after).toBe('')
    const env = exported(d.stdin, dir)
    expect([...env.keys()].filter((k) => !BASE_ENV.has(k))).toEqual([])
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('validateEnvNames', () => {
  const bad = (env: Record<string, string>): string => {
    try {
      validateEnvNames(env, 'args.environmentVariables')
    } catch (e) {
      expect(e).toBeInstanceOf(InputError)
      return (e as Error).message
    }
    throw new Error('expected an InputError')
  }

  it('accepts identifier names with any value and any name with a single-line value', () => {
    expect(() =>
      validateEnvNames(
        {
          A: 'x\ny',
          'INPUT_node-version': '20',
          _B: '',
          C: '$`\'"\\',
          PATH: '/x',
          HOME: '/h',
          DOCKER_HOST: 'tcp://d:2375',
          BUILDKIT_X: '1'
        },
        'f'
      )
    ).not.toThrow()
  })

  it('rejects "=" in a name, an empty name, and NUL in a name', () => {
    expect(bad({ 'A=B': 'x' })).toBe('args.environmentVariables: invalid variable name "A=B"')
    expect(bad({ '': 'x' })).toBe('args.environmentVariables: invalid variable name ""')
    expect(bad({ 'A\0B': 'x' })).toMatch(/^args\.environmentVariables: invalid variable name /)
  })

  const MULTI_LINE_MSG =
    'a multi-line value needs a variable name made of letters, digits and _ that does not steer the loader, shell or docker CLI (not LD_*, IFS, ENV, PATH, HOME, DOCKER_*, *_PROXY and the like)'

  it('rejects a multi-line value for a name that is not a shell identifier', () => {
    expect(bad({ 'INPUT_my-key': 'line1\nline2' })).toBe(`args.environmentVariables.INPUT_my-key: ${MULTI_LINE_MSG}`)
    expect(bad({ 'INPUT_my-key': 'line1\rline2' })).toBe(`args.environmentVariables.INPUT_my-key: ${MULTI_LINE_MSG}`)
    expect(bad({ '1A': '\n' })).toBe(`args.environmentVariables.1A: ${MULTI_LINE_MSG}`)
  })

  // A multi-line value is exported into the shell that runs the docker CLI, so it must not be
  // under a name the CLI itself reads.
  it.each(['PATH', 'HOME', 'DOCKER_HOST', 'DOCKER_CONFIG', 'DOCKER_', 'BUILDKIT_PROGRESS', 'BUILDKIT_'])(
    'rejects a multi-line value for %s, without printing the value',
    (name) => {
      expect(bad({ [name]: 'secret-line1\nline2' })).toBe(`args.environmentVariables.${name}: ${MULTI_LINE_MSG}`)
      expect(bad({ OK: 'a\nb', [name]: 'secret-line1\r' })).toBe(`args.environmentVariables.${name}: ${MULTI_LINE_MSG}`)
    }
  )

  // The same for names that steer the dynamic loader, libc, the shell, or the CLI's Go runtime.
  it.each([
    'LD_PRELOAD',
    'LD_LIBRARY_PATH',
    'LD_AUDIT',
    'GCONV_PATH',
    'GLIBC_TUNABLES',
    'MALLOC_CHECK_',
    'NLSPATH',
    'LOCPATH',
    'HOSTALIASES',
    'RES_OPTIONS',
    'BASH_ENV',
    'ENV',
    'IFS',
    'SHELLOPTS',
    'BASHOPTS',
    'PS4',
    'TMPDIR',
    'CDPATH',
    'BASH_FUNC_x%%',
    'LC_ALL',
    'LANG',
    'HTTPS_PROXY',
    'https_proxy',
    'NO_PROXY',
    'OTEL_EXPORTER_OTLP_ENDPOINT',
    'GODEBUG',
    'SSL_CERT_FILE',
    'XDG_CONFIG_HOME',
    'DOCKER_CONTEXT'
  ])('rejects a multi-line value for %s (it would steer the loader, shell or CLI)', (name) => {
    expect(bad({ [name]: '/tmp/x\n' })).toBe(`args.environmentVariables.${name}: ${MULTI_LINE_MSG}`)
  })

  it('accepts those names with single-line values (they only go to the container, through the env file)', () => {
    expect(() =>
      validateEnvNames({ LD_PRELOAD: '/x.so', BASH_ENV: '/e', IFS: ':', https_proxy: 'http://p:3128', GODEBUG: 'x=1' }, 'f')
    ).not.toThrow()
    const d = envDelivery({ LD_PRELOAD: '/x.so', IFS: ':' }, '/scratch')
    expect(d.flags).toEqual(['--env-file', expect.stringMatching(/^\/scratch\/\.env-/)])
    expect(d.stdin).not.toMatch(/export/)
  })

  it('envDelivery refuses them too, whoever calls it', () => {
    expect(() => envDelivery({ LD_PRELOAD: '/tmp/evil.so\n' }, '/scratch')).toThrow(InputError)
  })

  it('accepts a multi-line value for names that merely resemble those the docker CLI reads', () => {
    expect(() =>
      validateEnvNames(
        {
          GOOGLE_CREDENTIALS: '{\n}',
          MY_LD_PRELOAD: 'a\nb',
          MYPATH: 'a\nb',
          PATH_EXTRA: 'a\nb',
          path: 'a\nb',
          HOMEDIR: 'a\nb',
          DOCKER: 'a\nb',
          MY_DOCKER_HOST: 'a\nb',
          docker_host: 'a\nb',
          BUILDKIT: 'a\nb'
        },
        'f'
      )
    ).not.toThrow()
  })

  it('rejects a NUL byte in a value without printing the value', () => {
    const msg = bad({ TOKEN: 'secret\0value' })
    expect(msg).toBe('args.environmentVariables.TOKEN: value contains a NUL byte')
  })
})

describe('validateEnvNames: names docker env files would misread', () => {
  test.each(['#COMMENT', 'WITH SPACE', 'TAB\tNAME', 'NEW\nLINE', ''])('rejects %j', (name) => {
    expect(() => validateEnvNames({ [name]: 'v' }, 'args.environmentVariables')).toThrow(/invalid variable name/)
  })
})

/**
 * docker/cli's env-file reader (pkg/kvfile Parse): lines split at \n (a trailing \r dropped), a BOM
 * dropped from the first, leading whitespace trimmed as Go's unicode.IsSpace does (the Unicode
 * White_Space property), `#` lines skipped, the key up to the first "="; a line whose key is empty
 * is refused with the whole line quoted.
 */
function dockerEnvFile(text: string): [string, string][] {
  const out: [string, string][] = []
  text.split('\n').forEach((raw, i) => {
    let l = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (i === 0) l = l.replace(/^\uFEFF/, '')
    const line = l.replace(/^\p{White_Space}+/u, '')
    if (!line || line.startsWith('#')) return
    const eq = line.indexOf('=')
    const key = eq < 0 ? line : line.slice(0, eq)
    if (!key) throw new Error(`no variable name on line '${line}'`)
    if (/[ \t]/.test(key)) throw new Error(`variable '${key}' contains whitespaces`)
    out.push([key, eq < 0 ? '' : line.slice(eq + 1)])
  })
  return out
}

describe("validateEnvNames: names docker's env-file reader trims as Go does", () => {
  const secret = 'pg-s3cret-9f1c'

  it('docker quotes a line with nothing before "=" once trimmed, value and all (control: the reader port)', () => {
    expect(() => dockerEnvFile(`\u0085=${secret}\n`)).toThrow(`no variable name on line '=${secret}'`)
  })

  // U+0085 (NEL) is whitespace to Go's unicode.IsSpace but not to JS's \s: such a name passed the
  // check, went into the env file, and `docker create` failed with the service's value in its
  // stderr, which the hook put into its error line and hook.log.
  const escaped = (s: string): string => s.replace(/[^\x21-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  test.each(['\u0085', '\u0085\u0085', '\u0085#X', '\u0085NAME', 'NA\u0085ME', '\uFEFF', '\u00A0', '\u3000'].map((n) => [escaped(n), n]))(
    'refuses %s without printing the value',
    (_shown, name) => {
      let msg = ''
      try {
        validateEnvNames({ [name]: secret }, 'args.services.0.environmentVariables')
      } catch (e) {
        expect(e).toBeInstanceOf(InputError)
        msg = (e as Error).message
      }
      expect(msg).toMatch(/invalid variable name/)
      expect(msg).not.toContain(secret)
    }
  )

  it('every name it lets into the env file comes back from docker as that name, with its value', () => {
    const dir = tempDir()
    const env = { ...SINGLE_LINE, 'INPUT_x-y': secret }
    const d = envDelivery(env, dir)
    exported(d.stdin, dir)
    expect(dockerEnvFile(readFileSync(envFileOf(d.flags, dir), 'utf8'))).toEqual(Object.entries(env))
  })
})
