// What a machine prints is kept in whole lines only: a line cut in two could show a piece of a
// secret that the log masks only where it appears whole.
import { lineTail, longLineNote, wholeLine } from '../../src/line-tail'
import { check } from '../../src/remote/remote'
import { pullImage } from '../../src/docker/cli'
import { createLog } from '../../src/log'
import { RemoteCommandError } from '../../src/errors'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { cleanupTempDirs, tempDir } from './_helpers'
import { LocalRemote } from './local-remote'

afterAll(cleanupTempDirs)

const SECRET = 'S3cr3t-Pa55w0rd-q9Z7'

/** Every piece of SECRET of 4 characters or more: none may be shown. */
const pieces = (s: string): string[] => {
  const out: string[] = []
  for (let i = 0; i < s.length; i++) for (let j = i + 4; j <= s.length; j++) out.push(s.slice(i, j))
  return out
}
const showsPiece = (text: string): boolean => pieces(SECRET).some((p) => text.includes(p))

function maskingLog(): ReturnType<typeof createLog> {
  const log = createLog({ file: join(tempDir(), 'hook.log'), level: 'info', debugToStepLog: false, out: () => undefined })
  log.addSecret(SECRET)
  return log
}

describe('lineTail', () => {
  const tailOf = (chunks: string[], max: number): string => {
    const t = lineTail(max)
    for (const c of chunks) t.push(c)
    return t.text()
  }

  test('keeps everything within the bound', () => {
    expect(tailOf(['ab\n', 'cd'], 10)).toBe('ab\ncd')
  })

  test('a bound inside a line drops the rest of that line', () => {
    expect(tailOf(['first line\nsecond\nthird\n'], 12)).toBe('third\n')
  })

  test('a bound at a line start keeps that line whole', () => {
    expect(tailOf(['first\nsecond\n'], 7)).toBe('second\n')
  })

  test('a line longer than the bound is left out up to its newline, the note in its place, then lines are kept again', () => {
    expect(tailOf(['ok\n', 'x'.repeat(30), 'y'.repeat(30), 'z\nnext\n'], 20)).toBe(`${longLineNote(20)}\nnext\n`)
  })

  test('a last line longer than the bound, ended: the note stands in for it (the error line is never dropped without a word)', () => {
    expect(tailOf([`first\n${'e'.repeat(50)}\n`], 20)).toBe(`${longLineNote(20)}\n`)
    // Control: an older line cut by the bound is dropped without a note.
    expect(tailOf(['first line\nsecond\nthird\n'], 14)).toBe('second\nthird\n')
  })

  test('text that ends inside a line too long to keep ends with the note', () => {
    expect(tailOf(['ok\n', 'x'.repeat(50)], 20)).toBe(longLineNote(20))
    expect(tailOf(['ok\n', 'x'.repeat(10)], 20)).toBe(`ok\n${'x'.repeat(10)}`)
  })

  test('whatever the chunks, the tail is a whole-line suffix of the text, within the bound', () => {
    let seed = 7
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n
    for (let round = 0; round < 300; round++) {
      const lines = Array.from({ length: 1 + rnd(12) }, () => 'a'.repeat(rnd(40)))
      const text = lines.join('\n') + (rnd(2) ? '\n' : '')
      const chunks: string[] = []
      for (let i = 0; i < text.length;) {
        const n = 1 + rnd(25)
        chunks.push(text.slice(i, i + n))
        i += n
      }
      const max = 5 + rnd(60)
      const got = tailOf(chunks, max)
      // A note may lead (a long line cut away) or end it (the text ends inside one); between them, text.
      const note = longLineNote(max)
      let body = got.startsWith(`${note}\n`) ? got.slice(note.length + 1) : got
      const endsInLong = body.endsWith(note)
      if (endsInLong) body = body.slice(0, -note.length)
      expect(body.length).toBeLessThanOrEqual(max)
      expect(body.includes(note)).toBe(false)
      if (!endsInLong) {
        expect(text.endsWith(body)).toBe(true)
        // It starts where a line starts.
        const at = text.length - body.length
        expect(at === 0 || text[at - 1] === '\n').toBe(true)
      }
    }
  })
})

test('wholeLine: a line over the bound is the note, never a piece of it', () => {
  expect(wholeLine('short', 5)).toBe('short')
  expect(wholeLine('longer', 5)).toBe(longLineNote(5))
})

describe('a secret at a cut is not shown in part', () => {
  /** A remote whose `fail` prints `stderr` (from a file) to stderr and exits 1. */
  function failing(stderr: string): LocalRemote {
    const dir = tempDir()
    writeFileSync(join(dir, 'err.txt'), stderr)
    return new LocalRemote(dir, {}, { fail: `cat ${join(dir, 'err.txt')} >&2; exit 1` })
  }

  async function failureText(stderr: string): Promise<string> {
    const err = await check(failing(stderr), 'fail', { label: 'the command' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RemoteCommandError)
    return maskingLog().mask((err as Error).message)
  }

  test('a failed command whose stderr tail begins inside the secret', async () => {
    // The tail keeps 16 KiB: with this much after it, the bound falls 8 characters into the secret.
    const last = `\nerror: the registry said no\n`
    const after = `\n${'y'.repeat(16 * 1024 - (SECRET.length - 8) - last.length - 1)}${last}`
    const text = await failureText(`${'x'.repeat(100)}${SECRET}${after}`)
    expect(text).toContain('error: the registry said no')
    expect(showsPiece(text)).toBe(false)
  })

  test('control: a secret whole inside the tail is masked, and the line around it shown', async () => {
    const text = await failureText(`${'x'.repeat(40_000)}\nunauthorized: ${SECRET} refused\n`)
    expect(text).toContain('unauthorized: *** refused')
    expect(showsPiece(text)).toBe(false)
  })

  /** The lines a pull shows in the log, masked, for a docker whose pull prints `line`. */
  async function pullLines(line: string): Promise<string[]> {
    const dir = tempDir()
    writeFileSync(join(dir, 'out.txt'), `${line}\n`)
    const r = new LocalRemote(dir, {}, { docker: `case "$1" in pull) cat ${join(dir, 'out.txt')};; esac` })
    const log = maskingLog()
    const got: string[] = []
    await pullImage(r, 'img:1', null, '/nowhere', (l) => got.push(log.mask(l)))
    return got
  }

  test('a pull line over 4096 characters with the secret across the cut', async () => {
    const got = await pullLines(`${'p'.repeat(4096 - 6)}${SECRET}`)
    expect(got).toEqual([longLineNote(4096)])
  })

  test('control: a pull line with the secret whole is shown masked', async () => {
    const got = await pullLines(`Error: ${SECRET} is not a token`)
    expect(got).toEqual(['Error: *** is not a token'])
  })
})

describe('bytes split inside a character', () => {
  const SECRET = 'pässwort-0123456789'
  test('a secret whose ä is split between two chunks is kept whole, so it is masked', () => {
    const bytes = Buffer.from(`Error: ${SECRET} refused\n`)
    const at = bytes.indexOf(Buffer.from('ä')) + 1 // inside the two bytes of ä
    const t = lineTail(4000)
    t.push(bytes.subarray(0, at))
    t.push(bytes.subarray(at))
    expect(t.text()).toBe(`Error: ${SECRET} refused\n`)
    const log = createLog({ file: join(tempDir(), 'hook.log'), level: 'info', debugToStepLog: false, out: () => undefined })
    log.addSecret(SECRET)
    expect(log.mask(t.text())).toBe('Error: *** refused\n')
    // control: decoding each chunk on its own (as before) breaks the character, and the mask misses it
    const apart = bytes.subarray(0, at).toString('utf8') + bytes.subarray(at).toString('utf8')
    expect(log.mask(apart)).toContain('\ufffd')
    expect(log.mask(apart)).toContain('sswort-0123456789')
  })
})
