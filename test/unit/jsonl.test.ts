// The local ledger's logs read a chunk at a time (src/fleet/jsonl.ts): every line whole, across
// chunk edges, torn and over-long lines skipped; the last line of an id found from the end.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { forEachLine, lastLine, LINE_MAX } from '../../src/fleet/jsonl'

// Reads counted (the last test): node:fs's own exports cannot be spied on.
jest.mock('node:fs', () => {
  const real = jest.requireActual<typeof import('node:fs')>('node:fs')
  return { ...real, readSync: jest.fn(real.readSync) }
})

let dir: string
beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-unit-jsonl-'))))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const file = (name: string, text: string | Buffer): string => {
  const p = path.join(dir, name)
  fs.writeFileSync(p, text)
  return p
}
const all = (p: string): unknown[] => {
  const out: unknown[] = []
  forEachLine(p, (v) => out.push(v))
  return out
}
const byId =
  (id: string) =>
  (v: unknown): v is { id: string; n: number } =>
    (v as { id?: string } | null)?.id === id

test('every line across chunk edges, in order; torn, empty and non-JSON lines skipped; no file is no lines', () => {
  // Lines of many lengths, so that line ends fall on, before and after each 1 MiB chunk edge.
  const lines: object[] = []
  let text = ''
  for (let i = 0; text.length < 3.5 * (1 << 20); i++) {
    const v = { id: `r${i}`, n: i, pad: 'é'.repeat((i * 7919) % 5000) }
    lines.push(v)
    text += JSON.stringify(v) + '\n'
    if (i % 97 === 0) text += '{"id":"torn\n\n'
  }
  const p = file('many.jsonl', text + '{"id":"last, torn by a crash"')
  expect(all(p)).toEqual(lines)
  expect(all(path.join(dir, 'none.jsonl'))).toEqual([])
  expect(lastLine(path.join(dir, 'none.jsonl'), 'x', byId('x'))).toBeNull()
  // The last line for an id, from the end; each one found, the first line of the file too.
  for (const i of [0, 1, 500, lines.length - 1]) expect(lastLine(p, `"id":"r${i}"`, byId(`r${i}`))).toEqual(lines[i])
  expect(lastLine(p, '"id":"r-none"', byId('r-none'))).toBeNull()
})

test('the last line of an id wins; a line without the needle is never parsed', () => {
  const p = file('again.jsonl', '{"id":"a","n":1}\n{"id":"b","n":2}\n{"id":"a","n":3}\n{"id":"b","n":4}\n')
  expect(lastLine(p, '"id":"a"', byId('a'))).toEqual({ id: 'a', n: 3 })
  const seen: unknown[] = []
  const pick = (v: unknown): v is object => (seen.push(v), false)
  lastLine(p, '"id":"b"', pick)
  expect(seen).toEqual([
    { id: 'b', n: 4 },
    { id: 'b', n: 2 }
  ])
})

test('a line longer than any of the ledger’s is skipped whole, forward and from the end, and the lines around it still read (control: one byte shorter is read)', () => {
  const long = (n: number): string => `{"id":"big","pad":"${'x'.repeat(n - 21)}"}`
  const around = (n: number): Buffer => Buffer.from(`{"id":"a","n":1}\n${long(n)}\n{"id":"b","n":2}\n`)
  const over = file('over.jsonl', around(LINE_MAX + 1))
  expect(Buffer.byteLength(long(LINE_MAX + 1))).toBe(LINE_MAX + 1)
  expect(all(over)).toEqual([
    { id: 'a', n: 1 },
    { id: 'b', n: 2 }
  ])
  expect(lastLine(over, '"id":"big"', byId('big'))).toBeNull()
  expect(lastLine(over, '"id":"a"', byId('a'))).toEqual({ id: 'a', n: 1 })
  const fits = file('fits.jsonl', around(LINE_MAX))
  expect(all(fits).map((v) => (v as { id: string }).id)).toEqual(['a', 'big', 'b'])
  expect(lastLine(fits, '"id":"big"', byId('big'))).not.toBeNull()
})

test('a settled reservation is found by reading the end of the file only', () => {
  const old = Array.from({ length: 60_000 }, (_, i) => JSON.stringify({ id: `old-${i}`, pad: 'p'.repeat(100) })).join('\n')
  const p = file('tail.jsonl', `${old}\n{"id":"recent","n":1}\n`)
  expect(fs.statSync(p).size).toBeGreaterThan(6 << 20)
  const read = fs.readSync as jest.Mock
  read.mockClear()
  expect(lastLine(p, '"id":"recent"', byId('recent'))).toEqual({ id: 'recent', n: 1 })
  expect(read).toHaveBeenCalledTimes(1)
  // Control: reading it all takes every chunk.
  read.mockClear()
  forEachLine(p, () => undefined)
  expect(read.mock.calls.length).toBeGreaterThan(6)
})
