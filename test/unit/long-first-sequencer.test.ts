// The order Jest runs the test files in: the longest known first, whatever Jest remembers of earlier
// runs (CI's fresh clone remembers nothing, and Jest then orders by file size).
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

const Sequencer = require('../helpers/long-first-sequencer') as {
  new (): { sort(tests: FakeTest[]): FakeTest[] }
  LONG_FIRST: string[]
}

interface FakeTest {
  path: string
  context: { config: { cache: boolean }; hasteFS: { getSize(p: string): number } }
}

const testRoot = resolve(__dirname, '..')

/** Tests as Jest hands them over with no durations remembered: each file's size decides. */
function tests(sizes: Record<string, number>): FakeTest[] {
  const context = { config: { cache: false }, hasteFS: { getSize: (p: string) => sizes[p] } }
  return Object.keys(sizes).map((path) => ({ path, context }))
}

test('every file on the list exists (a renamed one would silently drop back into the crowd)', () => {
  expect(Sequencer.LONG_FIRST.filter((f) => !existsSync(join(testRoot, f)))).toEqual([])
})

test('listed files go first, in the list’s order, however small; the rest keep Jest’s order by size', () => {
  const at = (f: string): string => join(testRoot, f)
  const order = new Sequencer()
    .sort(
      tests({
        [at('unit/big.test.ts')]: 50_000,
        [at('soak/soak.test.ts')]: 2_000,
        [at('unit/small.test.ts')]: 1_000,
        [at('integration/pool-load.test.ts')]: 9_000,
        [at('integration/pool.test.ts')]: 20_000,
        [at('unit/middle.test.ts')]: 10_000
      })
    )
    .map((t) => t.path.slice(testRoot.length + 1))
  expect(order).toEqual([
    'integration/pool.test.ts',
    'soak/soak.test.ts',
    'integration/pool-load.test.ts',
    'unit/big.test.ts',
    'unit/middle.test.ts',
    'unit/small.test.ts'
  ])
})

test('control: a file of the same name elsewhere is not taken for a listed one', () => {
  const order = new Sequencer()
    .sort(tests({ [join(testRoot, 'unit/pool.test.ts')]: 1, [join(testRoot, 'unit/other.test.ts')]: 2 }))
    .map((t) => t.path.slice(testRoot.length + 1))
  expect(order).toEqual(['unit/other.test.ts', 'unit/pool.test.ts'])
})
