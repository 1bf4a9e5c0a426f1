import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLog, type Log } from '../../src/log'
import { MESSAGE_MAX } from '../../src/errors'

let dir: string
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'rch-log-'))))
afterEach(() => rmSync(dir, { recursive: true, force: true }))

function make(level = 'info', file = join(dir, 'logs', 'hook.log')): { log: Log; out: string[]; file: string } {
  const out: string[] = []
  return { log: createLog({ file, level, debugToStepLog: true, out: (l) => out.push(l) }), out, file }
}

describe('workflow commands written by the log', () => {
  test('warnings and debug lines are escaped: a newline or % in a message cannot start or garble a command', () => {
    const { log, out } = make()
    log.warn('100% sure\n::error::forged')
    log.debug('a\rb')
    expect(out).toEqual(['::warning::100%25 sure%0A::error::forged', '::debug::a%0Db'])
  })

  test('group folds the work, and closes the fold when the work fails', async () => {
    const { log, out } = make()
    await expect(
      log.group('Images', async () => {
        log.progress('pulling')
        throw new Error('boom')
      })
    ).rejects.toThrow('boom')
    expect(out).toEqual(['::group::Images', '[remote-hooks] pulling', '::endgroup::'])
  })

  test('folds do not nest: an inner group runs inside the outer fold', async () => {
    const { log, out } = make()
    const v = await log.group('outer', () => log.group('inner', async () => 7))
    expect(v).toBe(7)
    expect(out).toEqual(['::group::outer', '::endgroup::'])
  })

  test("a container's log gets its own fold (closing the one it failed in), is inert, and secrets in it are masked", async () => {
    const { log, out } = make()
    log.addSecret('s3cret-value')
    await expect(
      log.group('Starting the services', async () => {
        log.foreign('redis (redis:7) logs', 'ready\n::error::pwned\npassword=s3cret-value\n')
        throw new Error('stopped')
      })
    ).rejects.toThrow('stopped')
    expect(out[0]).toBe('::group::Starting the services')
    expect(out[1]).toBe('::endgroup::')
    expect(out[2]).toBe('::group::redis (redis:7) logs')
    expect(out[3]).toMatch(/^::stop-commands::[0-9a-f]{32}$/)
    const token = out[3].slice('::stop-commands::'.length)
    expect(out.slice(4)).toEqual(['ready', '::error::pwned', 'password=***', `::${token}::`, '::endgroup::'])
  })

  test("a container's log is not kept in the file log: it may quote env values nothing masks there (the step log has it, control)", async () => {
    const { log, out, file } = make()
    log.foreign('db (postgres:16) logs', 'starting\nPOSTGRES_PASSWORD=env-value-not-registered\n')
    await log.close()
    expect(out.join('\n')).toContain('POSTGRES_PASSWORD=env-value-not-registered')
    const text = readFileSync(file, 'utf8')
    expect(text).toContain('db (postgres:16) logs: 2 lines in the step log')
    expect(text).not.toContain('env-value-not-registered')
  })
})

describe('the log file', () => {
  test('a failure reaches the file at the default level (info), where debug lines do not', async () => {
    const { log, file } = make('info')
    log.debug('only at debug')
    log.failure('prepare_job failed: the service is unhealthy')
    await log.close()
    const text = readFileSync(file, 'utf8')
    expect(text).toMatch(/ error prepare_job failed: the service is unhealthy\n/)
    expect(text).not.toContain('only at debug')
  })

  test('a failure is written even at level error, and masked', async () => {
    const { log, file } = make('error')
    log.addSecret('hunter2hunter2')
    log.progress('not at error level')
    log.failure('login with hunter2hunter2 failed')
    await log.close()
    const text = readFileSync(file, 'utf8')
    expect(text).toContain('login with *** failed')
    expect(text).not.toContain('not at error level')
  })

  // Logging never fails a step; a log that stops (a full disk) is said once where the runner shows it.
  test('a log file that cannot be written (a full disk) is said once in the step log, and the step goes on (control: a writable one says nothing)', async () => {
    const fs = jest.requireActual<typeof import('node:fs')>('node:fs')
    const { Writable } = jest.requireActual<typeof import('node:stream')>('node:stream')
    const full = jest.spyOn(fs, 'createWriteStream').mockImplementation(
      () =>
        new Writable({
          write: (_c, _e, cb) => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }))
        }) as never
    )
    const { log, out, file } = make('info')
    try {
      log.progress('one')
      log.progress('two')
      // The command's end does not wait on the dead file.
      expect(await Promise.race([log.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('still closing'), 3000))])).toBe(
        'closed'
      )
    } finally {
      full.mockRestore()
    }
    const warnings = out.filter((l) => l.startsWith('::warning::'))
    expect(warnings).toEqual([`::warning::the hook's log ${file} cannot be written (ENOSPC); this command's lines are missing from it`])
    expect(out.filter((l) => l.startsWith('[remote-hooks] '))).toEqual(['[remote-hooks] one', '[remote-hooks] two'])
    const ok = make('info')
    ok.log.progress('fine')
    await ok.log.close()
    expect(ok.out.filter((l) => l.startsWith('::warning::'))).toEqual([])
  })

  test("is appended to: a second log on the same file keeps the first one's lines", async () => {
    const first = make()
    first.log.progress('first command')
    await first.log.close()
    const second = make('info', first.file)
    second.log.progress('second command')
    await second.log.close()
    const lines = readFileSync(first.file, 'utf8').trim().split('\n')
    expect(lines).toEqual([expect.stringMatching(/ info first command$/), expect.stringMatching(/ info second command$/)])
  })
})

test('a progress line never starts a line of its own (text a machine chose may hold CR or LF)', () => {
  const { log, out } = make()
  log.progress('scrub failed: x\r::error title=x::forged\n::add-mask::y')
  expect(out).toEqual(['[remote-hooks] scrub failed: x ::error title=x::forged ::add-mask::y'])
})

test("a machine's escape codes and bidirectional overrides reach the step log as ?, after masking; invisible ones a runner secret may hold stay", () => {
  const { log, out } = make()
  log.addSecret('s3cr\u001bt-value-1234')
  const said = 'docker: \u001b[2K\u001b[1G\u001b[31mError\u001b]52;c;eA==\u0007 \u202eexe.txt\u200b s3cr\u001bt-value-1234 \u009b31m'
  log.progress(said)
  log.warn(said)
  log.failure(said)
  // eslint-disable-next-line no-control-regex -- the characters that must be gone
  const acting = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/
  expect(out.filter((l) => acting.test(l))).toEqual([])
  expect(out[0]).toBe('[remote-hooks] docker: ?[2K?[1G?[31mError?]52;c;eA==? ?exe.txt\u200b *** ?31m')
  // A secret only the runner knows (it masks it only whole) may hold a zero-width joiner or a BOM: kept.
  log.progress('token \ufeffab\u200dcd')
  expect(out.at(-1)).toBe('[remote-hooks] token \ufeffab\u200dcd')
  // the secret, which holds an ESC, was masked whole before the ESC became ?
  expect(out.join('\n')).not.toContain('s3cr?t')
  // positive control: the message itself holds what a terminal acts on
  expect(acting.test(said)).toBe(true)
})

test('a secret that is part of a longer one, registered first, does not leave the longer one half shown', () => {
  const { log, out } = make()
  log.addSecret('hunter2')
  // control: one secret is masked
  log.progress('login: hunter2')
  log.addSecret('hunter2-registry')
  log.progress('login: hunter2-registry')
  log.warn('login: hunter2-registry')
  expect(out).toEqual(['[remote-hooks] login: ***', '[remote-hooks] login: ***', '::warning::login: ***'])
  expect(log.mask('hunter2-registry and hunter2')).toBe('*** and ***')
})

test('a registered secret is masked in progress, warning and debug lines, in the step log and in the file log', async () => {
  const { log, out, file } = make('debug')
  const lines = (secret: string): void => {
    log.progress(`progress ${secret}`)
    log.warn(`warning ${secret}`)
    log.debug(`debug ${secret}`)
  }
  // positive control: before it is registered, each kind of line carries it to both logs
  lines('hunter2-before')
  log.addSecret('hunter2-after')
  lines('hunter2-after')
  await log.close()
  const text = readFileSync(file, 'utf8')
  expect(out).toEqual([
    '[remote-hooks] progress hunter2-before',
    '::warning::warning hunter2-before',
    '::debug::debug hunter2-before',
    '[remote-hooks] progress ***',
    '::warning::warning ***',
    '::debug::debug ***'
  ])
  for (const kind of ['info progress', 'warn warning', 'debug debug']) {
    expect(text).toContain(` ${kind} hunter2-before\n`)
    expect(text).toContain(` ${kind} ***\n`)
  }
  expect(text).not.toContain('hunter2-after')
})

describe('a secret inside base64 (docker sends `user:password` so, and a registry may quote it back)', () => {
  const password = 'pw-7f3a91c0d2e4b6a8'
  /** What is left of the password in `text` once masked: any base64 run in it that decodes to hold 6 of its bytes in a row. */
  const leaks = (text: string): string[] =>
    (text.match(/[A-Za-z0-9+/]{8,}={0,2}/g) ?? []).filter((run) => {
      for (const shift of ['', 'A', 'AA']) {
        const decoded = Buffer.from(shift + run, 'base64').toString('latin1')
        for (let i = 0; i + 6 <= password.length; i++) if (decoded.includes(password.slice(i, i + 6))) return true
      }
      return false
    })

  test('the auth of any user name, at every alignment, is masked in both logs', async () => {
    const { log, out, file } = make('debug')
    const auths = ['', 'u', 'ci', 'bot', 'user-1', 'deploy-x7'].map((u) => Buffer.from(`${u}:${password}`).toString('base64'))
    // positive control: unregistered, each auth shows the password to whoever decodes it
    for (const a of auths) expect(leaks(`unauthorized: basic ${a}`)).toEqual([a])
    log.addSecret(password)
    for (const a of auths) log.progress(`unauthorized: basic ${a} refused`)
    await log.close()
    expect(out).toHaveLength(auths.length)
    for (const line of out) expect(line).toContain('***')
    expect(out.flatMap(leaks)).toEqual([])
    expect(leaks(readFileSync(file, 'utf8'))).toEqual([])
  })

  test('ordinary base64 is left alone: another password, and a short secret, mask no run', () => {
    const { log } = make()
    log.addSecret('pw-0000000000000000')
    log.addSecret('abc')
    const other = Buffer.from(`ci:${password}`).toString('base64')
    expect(log.mask(`basic ${other}`)).toBe(`basic ${other}`)
    // base64 text that begins with the encoding of `abc` (YWJj): a 4-character run would hide it
    const text = Buffer.from('abcdefgh-other-text').toString('base64')
    expect(text.startsWith(Buffer.from('abc').toString('base64'))).toBe(true)
    expect(log.mask(`digest ${text}`)).toBe(`digest ${text}`)
  })
})

describe('a secret in the other forms it travels in', () => {
  test('escaped: in a JSON string or Go %q quote, and URL- or form-encoded (an OAuth token request)', () => {
    const { log } = make()
    const pw = 'p"w\\d%20 x/+&é!*'
    const quoted = JSON.stringify(pw).slice(1, -1)
    const uri = encodeURIComponent(pw)
    const form = uri.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+')
    // control: each form differs from the value and from each other, and none holds the value itself
    expect(new Set([pw, quoted, uri, form]).size).toBe(4)
    for (const f of [quoted, uri, form]) expect(f).not.toContain(pw)
    log.addSecret(pw)
    expect(log.mask(`error parsing HTTP 401 response body: invalid character: "bad ${quoted} here"`)).toBe(
      'error parsing HTTP 401 response body: invalid character: "bad *** here"'
    )
    expect(log.mask(`body grant_type=password&username=u&password=${form}&scope=x`)).toBe(
      'body grant_type=password&username=u&password=***&scope=x'
    )
    expect(log.mask(`url ?password=${uri}&x=1`)).toBe('url ?password=***&x=1')
  })

  test('a multi-line secret (a JSON key as password, as `_json_key` registries take) is masked line by line too', async () => {
    const key =
      '{\n  "type": "service_account",\n  "private_key_id": "0f4c2a9e7d1b",\n' +
      '  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"\n}\n'
    const { log, out, file } = make('debug')
    log.addSecret(key)
    // What reaches the log: docker's output a line at a time, and a failure's stderr tail joined with ` | ` (errors.ts).
    for (const line of key.split('\n')) log.debug(`registry said: ${line}`)
    log.failure(`docker pull x failed (exit code 1): ${key.trim().split('\n').slice(-3).join(' | ')}`)
    await log.close()
    const all = `${out.join('\n')}\n${readFileSync(file, 'utf8')}`
    expect(all).toContain('registry said:   ***')
    for (const part of ['MIIEvQIBADANBgkqhkiG9w0BAQEFAASC', '0f4c2a9e7d1b', 'service_account']) expect(all).not.toContain(part)
  })
})

test('two registered secrets that overlap in a line leave no fragment of either, in the step log and the file log', async () => {
  const { log, out, file } = make()
  log.addSecret('tok-abc-XYZ')
  // control: the first alone is masked and the rest of the line shown
  log.progress('got tok-abc-XYZ-def9')
  log.addSecret('XYZ-def9')
  log.progress('got tok-abc-XYZ-def9')
  log.warn('tok-abc-XYZ-def9 and XYZ-def9tok-abc-XYZ')
  await log.close()
  expect(out).toEqual(['[remote-hooks] got ***-def9', '[remote-hooks] got ***', '::warning::*** and ***'])
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
  expect(lines.map((l) => l.replace(/^\S+ \d+ /, ''))).toEqual(['info got ***-def9', 'info got ***', 'warn *** and ***'])
})

describe("a machine's long text in a log message", () => {
  test('the file log and the step log get it cut at MESSAGE_MAX, masked first', async () => {
    const { log, out, file } = make()
    log.addSecret('hunter2-secret-value')
    const long = 'e'.repeat(MESSAGE_MAX - 3) + 'hunter2-secret-value' + 'f'.repeat(4_000_000)
    log.failure(long)
    log.warn(long)
    await log.close()
    const text = readFileSync(file, 'utf8')
    expect(text.length).toBeLessThan(3 * (MESSAGE_MAX + 500))
    expect(text).toContain('characters not shown')
    expect(text).not.toContain('hunte')
    expect(out[0].length).toBeLessThan(MESSAGE_MAX + 200)
    // control: a short message is written whole
    const { log: l2, out: o2 } = make()
    l2.warn('short and whole')
    expect(o2).toEqual(['::warning::short and whole'])
  })
})

// The log file is read by people (cat, tail -f): what a machine chose must not pass for an entry
// of the hook's, nor reach their terminal as escape codes.
describe("a machine's text with line breaks and control characters in the file log", () => {
  const ENTRY = /^\d{4}-\d\d-\d\dT[\d:.]+Z \d+ (info|warn|error|debug) /
  const forged = '2030-01-01T00:00:00.000Z 4242 info cleaned up host:22: 3 containers'

  test('stays one entry, continued by indented lines, with no escape code, CR or NUL', async () => {
    const { log, file } = make('debug')
    const message = `list containers failed: 500\n${forged}\r${forged}\u2028${forged}\u001b[2K\u0000\u009b31m end`
    // Positive control: written as it came, the message makes entries of its own.
    expect(message.split(/\r|\n|\u2028/).filter((l) => ENTRY.test(l))).toHaveLength(3)
    log.warn(message)
    log.debug(message)
    log.failure(message)
    log.progress(message)
    await log.close()
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
    expect(lines.filter((l) => ENTRY.test(l)).map((l) => l.replace(ENTRY, '$1 '))).toEqual(
      ['warn', 'debug', 'error', 'info'].map((level) => `${level} list containers failed: 500`)
    )
    expect(lines).toHaveLength(16)
    for (const l of lines) if (!ENTRY.test(l)) expect(l.startsWith(`    ${forged}`)).toBe(true)
    // eslint-disable-next-line no-control-regex -- the control characters are what must be gone
    expect(lines.join('\n')).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/)
  })
})
