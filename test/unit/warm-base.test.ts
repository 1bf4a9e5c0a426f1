import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { warmBase } from '../../src/sync/warm-base'
import { loadBase, saveBase } from '../../src/sync/manifest'
import { baseFileIn } from '../../src/paths'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

afterEach(() => jest.restoreAllMocks())
afterAll(cleanupTempDirs)

const entry = { t: 'f' as const, l: '1', r: '2' }
/** Opens of the job's base file (a read of the snapshot opens it). */
const watchOpens = (file: string): (() => number) => {
  const opens = jest.spyOn(require('node:fs') as typeof import('node:fs'), 'openSync')
  return () => opens.mock.calls.filter(([p]) => p === file).length
}

test('the base written after the agent starts is read when it appears; the first step then reads nothing', async () => {
  const dir = tempDir()
  const file = baseFileIn(dir)
  const opened = watchOpens(file)
  warmBase(dir)
  // Its event comes first: a watch that stopped at it would miss the base.
  writeFileSync(join(dir, 'agent-1.log'), 'other files in the folder are passed over\n')
  // Written as another process does (prepare_job's hook): a new file renamed into place.
  writeFileSync(`${file}.new`, JSON.stringify({ a: entry }))
  renameSync(`${file}.new`, file)
  expect(await waitUntil(() => opened() > 0, 5_000)).toBe(true)
  const before = opened()
  expect(Object.fromEntries(loadBase(file))).toEqual({ a: entry })
  expect(opened()).toBe(before)
})

test('a base already there is read at once; control: without warmBase the first load opens it', async () => {
  const [dir, other] = [tempDir(), tempDir()]
  for (const d of [dir, other]) await saveBase(baseFileIn(d), { set: new Map([['a', entry]]), remove: new Set() })
  // A copy of the module with nothing cached, as a new agent has.
  let fresh!: { warm: typeof warmBase; load: typeof loadBase }
  jest.isolateModules(() => {
    fresh = {
      warm: (require('../../src/sync/warm-base') as typeof import('../../src/sync/warm-base')).warmBase,
      load: (require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')).loadBase
    }
  })
  const opened = watchOpens(baseFileIn(dir))
  fresh.warm(dir)
  expect(await waitUntil(() => opened() > 0, 5_000)).toBe(true)
  expect(fresh.load(baseFileIn(dir)).size).toBe(1)
  expect(opened()).toBe(1)
  const openedOther = watchOpens(baseFileIn(other))
  expect(fresh.load(baseFileIn(other)).size).toBe(1)
  expect(openedOther()).toBe(1)
})

test('a folder that cannot be watched is left to the first step', () => {
  expect(() => warmBase(join(tempDir(), 'gone'))).not.toThrow()
})
