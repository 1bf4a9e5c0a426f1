// Every wait goes through src/retry.ts: no other file sleeps between attempts or polls on its own.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const SRC = join(__dirname, '..', '..', 'src')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
}

/** Ways a file could wait by hand: the primitive's sleep outside it, a blocking sleep, a timer promise. */
const HAND_WAITS: [string, RegExp][] = [
  ['sleep from retry.ts', /import\s*\{[^}]*\bsleep\b[^}]*\}\s*from\s*'[./]*\/?retry'/],
  ['Atomics.wait', /Atomics\.wait\(/],
  ['a timer promise', /new Promise[^\n]*setTimeout\(\s*\w+\s*,/]
]

/** Files still waiting by hand; each entry must go once its file moves onto the primitive. */
const NOT_YET_MOVED: string[] = []

/** Files whose waits are code sent elsewhere, not run by the hook. */
const SENT_CODE: Record<string, string> = { 'docker/step-stop.ts': 'the stop script it sends runs inside the job container' }

function handWaits(): Map<string, string[]> {
  const found = new Map<string, string[]>()
  for (const f of files(SRC)) {
    const rel = relative(SRC, f)
    if (rel === 'retry.ts' || rel in SENT_CODE) continue
    const text = readFileSync(f, 'utf8')
    const hits = HAND_WAITS.filter(([, re]) => re.test(text)).map(([what]) => what)
    if (hits.length) found.set(rel, hits)
  }
  return found
}

describe('waits', () => {
  it('the patterns find a hand-written wait (positive control)', () => {
    const sample = "import { retry, sleep } from '../retry'\nawait new Promise((r) => setTimeout(r, 50))\nAtomics.wait(a, 0, 0, 5)"
    expect(HAND_WAITS.filter(([, re]) => re.test(sample)).map(([w]) => w)).toEqual([
      'sleep from retry.ts',
      'Atomics.wait',
      'a timer promise'
    ])
  })

  it('no file outside retry.ts waits by hand', () => {
    const found = handWaits()
    const unexpected = [...found].filter(([f]) => !NOT_YET_MOVED.includes(f))
    expect(unexpected).toEqual([])
    // A file that moved must leave the list, so the list only shrinks.
    expect(NOT_YET_MOVED.filter((f) => !found.has(f))).toEqual([])
  })
})
