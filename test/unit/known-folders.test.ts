// The folders a SafeTree remembers within one pull (src/sync/known-folders.ts), and what forgetting
// them costs: the work of a removal must not grow with what is remembered elsewhere.
import { KnownFolders } from '../../src/sync/known-folders'
import { removedByDeletions } from '../../src/sync/sync'
import type { BaseEntry } from '../../src/sync/manifest'

function known(...entries: [string, number][]): KnownFolders {
  const k = new KnownFolders()
  for (const [rel, ino] of entries) k.add(rel, ino)
  return k
}
const has = (k: KnownFolders, ...rels: string[]): boolean[] => rels.map((r) => k.has(r))

describe('KnownFolders', () => {
  test('forgetting a folder forgets what is under it, and nothing beside it (not a name that only starts the same)', () => {
    const k = known(['a', 1], ['a/b', 2], ['a/b/c', 3], ['a/bc', 4], ['ab', 5])
    k.forget('a/b')
    expect(has(k, 'a', 'a/b', 'a/b/c', 'a/bc', 'ab')).toEqual([true, false, false, true, true])
    k.forget('a')
    expect(has(k, 'a', 'a/bc', 'ab')).toEqual([false, false, true])
    expect(k.size).toBe(1)
  })

  test("a folder's inode forgets every name it was remembered by (a name-folding file system), with what is under each", () => {
    const k = known(['x', 1], ['x/D', 7], ['x/D/e', 8], ['x/d', 7], ['y', 9])
    k.forget('x/other-spelling', 7)
    expect(has(k, 'x', 'x/D', 'x/D/e', 'x/d', 'y')).toEqual([true, false, false, false, true])
    // control: without the inode only the name itself goes
    const c = known(['x', 1], ['x/D', 7], ['x/d', 7])
    c.forget('x/D')
    expect(has(c, 'x/D', 'x/d')).toEqual([false, true])
  })

  test('a folder whose parent is not remembered is not remembered (nothing would forget it with the parent)', () => {
    const k = known(['a/b', 2])
    expect(k.has('a/b')).toBe(false)
    k.add('a', 1)
    k.add('a/b', 2)
    expect(k.has('a/b')).toBe(true) // control: found top down, it is
  })

  test('remembered again under another inode, it is another folder: what was known under it is forgotten', () => {
    const k = known(['a', 1], ['a/b', 2], ['a/b/c', 3])
    k.add('a', 1) // the same folder again: kept
    expect(has(k, 'a/b', 'a/b/c')).toEqual([true, true])
    k.add('a/b', 20)
    expect(has(k, 'a/b', 'a/b/c')).toEqual([true, false])
    k.forget('x', 2) // the old inode names nothing now
    expect(k.has('a/b')).toBe(true)
    k.forget('x', 20)
    expect(k.has('a/b')).toBe(false)
  })

  test('as deep as a path may go (4096 bytes: 2,048 folders): forgotten whole', () => {
    const k = new KnownFolders()
    let p = ''
    for (let i = 0; i < 2_048; i++) k.add((p = p ? `${p}/d` : 'd'), i + 1)
    expect(k.size).toBe(2_048)
    k.forget('d')
    expect(k.size).toBe(0)
  })
})

/** The fastest of three runs of `f`, in ms. */
function fastest(f: () => void): number {
  let best = Infinity
  for (let i = 0; i < 3; i++) {
    const t = performance.now()
    f()
    best = Math.min(best, performance.now() - t)
  }
  return best
}

// Ten times the work in each pair below: linear work takes about ten times as long, the earlier
// work (each deletion against every base entry, each removal against every remembered folder) about
// a hundred times. Compared in the same run, never against a fixed time.
describe('a step that deleted a file in each of many folders costs work linear in the deletions', () => {
  test("the base's paths that the deletions remove", () => {
    const world = (n: number): { base: Map<string, BaseEntry>; del: string[] } => {
      const base = new Map<string, BaseEntry>()
      const del: string[] = []
      for (let i = 0; i < n; i++) {
        base.set(`ws/d${i}`, { t: 'd', l: '', r: '' })
        base.set(`ws/d${i}/f`, { t: 'f', l: '', r: '' })
        base.set(`ws/d${i}/keep`, { t: 'f', l: '', r: '' })
        del.push(`ws/d${i}/f`)
      }
      base.set('ws/gone', { t: 'd', l: '', r: '' })
      base.set('ws/gone/x/y', { t: 'f', l: '', r: '' })
      del.push('ws/gone')
      return { base, del }
    }
    const [small, large] = [world(1_000), world(10_000)]
    const removed = removedByDeletions(small.base, small.del)
    // what goes: each deleted path and what is under it; not its siblings, not a name that only starts the same
    expect(removed.size).toBe(1_000 + 2)
    expect([removed.has('ws/d7/f'), removed.has('ws/gone/x/y'), removed.has('ws/d7/keep'), removed.has('ws/d7')]).toEqual([
      true,
      true,
      false,
      false
    ])
    const [s, l] = [fastest(() => removedByDeletions(small.base, small.del)), fastest(() => removedByDeletions(large.base, large.del))]
    expect(l / Math.max(s, 0.5)).toBeLessThan(40)
  })

  test('forgetting: a file removed in each of many remembered folders, then each folder', () => {
    const world = (n: number): { k: KnownFolders; rels: string[] } => {
      const k = new KnownFolders()
      const rels: string[] = []
      for (let i = 0; i < n; i++) {
        k.add(`ws`, 1)
        k.add(`ws/d${i}`, i + 2)
        rels.push(`ws/d${i}/f`)
      }
      return { k, rels }
    }
    const forgetAll = (n: number): number => {
      const worlds = [world(n), world(n), world(n)]
      let i = 0
      return fastest(() => {
        const { k, rels } = worlds[i++]
        for (const r of rels) k.forget(r) // a file: nothing was remembered under it
        for (const r of rels) k.forget(r.slice(0, -2), Number(r.slice(4, -2)) + 2) // its folder, by name and inode
        expect(k.size).toBe(1)
      })
    }
    const [s, l] = [forgetAll(2_000), forgetAll(20_000)]
    expect(l / Math.max(s, 0.5)).toBeLessThan(40)
  })
})
