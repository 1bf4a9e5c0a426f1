// The folders a SafeTree remembers within one pull (src/sync/known-folders.ts), and what forgetting
// them costs: the work of a removal must not grow with what is remembered elsewhere.
import { KnownFolders } from '../../src/sync/known-folders'
import { removedByDeletions } from '../../src/sync/sync'
import { SafeTree } from '../../src/sync/safe-fs'
import { existsSync } from 'node:fs'
import { cleanupTempDirs, tempDir } from './_helpers'
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

/**
 * What `fn` reads from collections: each element a Map's or Set's iterator hands out (for..of,
 * spread, keys(), forEach) and each element read from one of `arrays`. Work counted rather than
 * timed, so a loaded machine cannot change the answer.
 */
function reads<T>(fn: (arrays: string[][]) => T, ...arrays: string[][]): { value: T; reads: number } {
  let n = 0
  type Proto = Record<PropertyKey, (this: unknown, ...a: unknown[]) => unknown>
  const saved: [Proto, PropertyKey, Proto[PropertyKey]][] = []
  for (const proto of [Map.prototype, Set.prototype] as unknown as Proto[]) {
    for (const name of ['keys', 'values', 'entries', Symbol.iterator] as PropertyKey[]) {
      const orig = proto[name]
      saved.push([proto, name, orig])
      proto[name] = function (this: unknown) {
        const it = orig.call(this) as Iterator<unknown>
        const counting = {
          next: () => {
            const r = it.next()
            if (!r.done) n++
            return r
          },
          [Symbol.iterator]: () => counting
        }
        return counting
      }
    }
    const forEach = proto.forEach
    saved.push([proto, 'forEach', forEach])
    proto.forEach = function (this: unknown, cb: unknown, self: unknown) {
      return forEach.call(this, (...a: unknown[]) => (n++, (cb as (...x: unknown[]) => unknown).apply(self, a)))
    }
  }
  const watched = arrays.map(
    (a) => new Proxy(a, { get: (t, k, r) => (typeof k === 'string' && /^\d+$/.test(k) && n++, Reflect.get(t, k, r)) })
  )
  try {
    return { value: fn(watched), reads: n }
  } finally {
    for (const [proto, name, orig] of saved) proto[name] = orig
  }
}

// A step that deleted a file in each of many folders: the earlier code compared each deletion with
// every base entry, and scanned every remembered folder at each removal (work growing with the
// square of the tree). Counted here, the work must stay within a small multiple of the tree.
describe('a step that deleted a file in each of many folders costs work linear in the deletions', () => {
  test("the base's paths that the deletions remove", () => {
    const base = new Map<string, BaseEntry>()
    const del: string[] = []
    const n = 20_000
    for (let i = 0; i < n; i++) {
      base.set(`ws/d${i}`, { t: 'd', l: '', r: '' })
      base.set(`ws/d${i}/f`, { t: 'f', l: '', r: '' })
      base.set(`ws/d${i}/keep`, { t: 'f', l: '', r: '' })
      del.push(`ws/d${i}/f`)
    }
    base.set('ws/gone', { t: 'd', l: '', r: '' })
    base.set('ws/gone/x/y', { t: 'f', l: '', r: '' })
    del.push('ws/gone')
    const { value: removed, reads: work } = reads(([d]) => removedByDeletions(base, d), del)
    // what goes: each deleted path and what is under it; not its siblings, not a name that only starts the same
    expect(removed.size).toBe(n + 2)
    expect([removed.has('ws/d7/f'), removed.has('ws/gone/x/y'), removed.has('ws/d7/keep'), removed.has('ws/d7')]).toEqual([
      true,
      true,
      false,
      false
    ])
    expect(work).toBeGreaterThanOrEqual(base.size) // control: the counting sees the pass over the base
    expect(work).toBeLessThanOrEqual(2 * (base.size + del.length))
  })

  test('forgetting: a file removed in each of many remembered folders, then each folder', () => {
    const k = new KnownFolders()
    const n = 20_000
    k.add('ws', 1)
    for (let i = 0; i < n; i++) k.add(`ws/d${i}`, i + 2)
    // control: a pass over what is remembered, as the earlier removal made, is counted
    const remembered = (k as unknown as { ino: Map<string, number> }).ino
    expect(reads(() => [...remembered.keys()]).reads).toBe(n + 1)
    const { reads: work } = reads(() => {
      for (let i = 0; i < n; i++) k.forget(`ws/d${i}/f`) // a file: nothing was remembered under it
      for (let i = 0; i < n; i++) k.forget(`ws/d${i}`, i + 2) // its folder, by name and inode
    })
    expect(k.size).toBe(1)
    expect(work).toBeLessThanOrEqual(2 * n)
  })
})

/**
 * The characters of every string key `fn` looks up in a Map or Set (has, get): what hashing the
 * keys costs. Counted rather than timed, as above.
 */
function keyChars<T>(fn: () => T): { value: T; chars: number } {
  let chars = 0
  type Proto = Record<string, (this: unknown, k: unknown, ...a: unknown[]) => unknown>
  const saved: [Proto, string, Proto[string]][] = []
  for (const proto of [Map.prototype, Set.prototype] as unknown as Proto[])
    for (const name of proto === (Set.prototype as unknown) ? ['has'] : ['has', 'get']) {
      const orig = proto[name]
      saved.push([proto, name, orig])
      proto[name] = function (this: unknown, k: unknown, ...a: unknown[]) {
        if (typeof k === 'string') chars += k.length
        return orig.call(this, k, ...a)
      }
    }
  try {
    return { value: fn(), chars }
  } finally {
    for (const [proto, name, orig] of saved) proto[name] = orig
  }
}

// A tree the VM chooses, 1,000 folders deep (paths of 2 KB), with many files at the bottom: each
// path's ancestors were each looked up, the square of the depth per path (minutes of a blocked
// agent at the 4 KB a path may have). The keys looked up must stay within a small multiple of the
// base's own path bytes.
describe('a deep tree costs work linear in its path bytes', () => {
  const deep = (): { base: Map<string, BaseEntry>; bytes: number; bottom: string } => {
    const base = new Map<string, BaseEntry>()
    let p = 'ws'
    base.set(p, { t: 'd', l: '', r: '' })
    for (let i = 0; i < 1_000; i++) base.set((p = `${p}/d`), { t: 'd', l: '', r: '' })
    for (let i = 0; i < 300; i++) base.set(`${p}/f${i}`, { t: 'f', l: '', r: '' })
    let bytes = 0
    for (const k of base.keys()) bytes += k.length
    return { base, bytes, bottom: p }
  }

  test("the base's paths that one deletion elsewhere removes", () => {
    const { base, bytes, bottom } = deep()
    base.set('ws/other', { t: 'f', l: '', r: '' })
    const { value: removed, chars } = keyChars(() => removedByDeletions(base, ['ws/other']))
    expect([...removed]).toEqual(['ws/other'])
    expect(chars).toBeGreaterThanOrEqual(bytes) // control: each path is looked up once at least
    expect(chars).toBeLessThanOrEqual(4 * bytes)
    // A deletion above the bottom takes everything under it.
    // (what stays: ws, the 48 folders above the one deleted, and ws/other)
    expect(removedByDeletions(base, [bottom.slice(0, 100)]).size).toBe(base.size - 50)
  })
})

describe('a deep folder written into', () => {
  afterAll(cleanupTempDirs)
  test('a later pull writing one file into each of many existing folders under a deep one: each costs its path', () => {
    const root = tempDir()
    let deep = 'ws'
    for (let i = 0; i < 1_000; i++) deep += '/d'
    const write = (tree: SafeTree, rel: string): void => {
      const w = tree.openFile(rel, 0o644, 1_700_000_000)
      w.write(Buffer.from('x'))
      w.finish()
    }
    // An earlier pull made 300 leaf folders at the bottom (its SafeTree is gone with it).
    const first = new SafeTree(root)
    for (let i = 0; i < 300; i++) write(first, `${deep}/leaf${i}/a`)
    // This pull remembers nothing yet: the first file finds every folder above it, the others find
    // the folder above theirs remembered.
    const later = new SafeTree(root)
    const { chars } = keyChars(() => {
      for (let i = 0; i < 300; i++) write(later, `${deep}/leaf${i}/b`)
    })
    const bytes = 300 * (deep.length + 10)
    expect(existsSync(`${root}/${deep}/leaf299/b`)).toBe(true)
    expect(chars).toBeGreaterThanOrEqual(bytes) // control: each file looks up its folders
    // The 1,000 folders above, found once (by the first file): a few times their own path bytes
    // (deep.length² / 4 in all), not that for each file.
    expect(chars).toBeLessThanOrEqual(4 * bytes + 2 * deep.length ** 2)
  })

  test("files written into a deep folder: each looks up its folder's parent, not every folder above", () => {
    const root = tempDir()
    let folder = 'ws'
    for (let i = 0; i < 1_000; i++) folder += '/d'
    const tree = new SafeTree(root)
    const write = (i: number): void => {
      const w = tree.openFile(`${folder}/f${i}`, 0o644, 1_700_000_000)
      w.write(Buffer.from('x'))
      w.finish()
    }
    write(0) // makes the folders, once
    const { chars } = keyChars(() => {
      for (let i = 1; i <= 300; i++) write(i)
    })
    expect(existsSync(`${root}/${folder}/f300`)).toBe(true)
    expect(chars).toBeGreaterThanOrEqual(300 * folder.length) // control: each file looks its folder up
    expect(chars).toBeLessThanOrEqual(4 * 300 * (folder.length + 5))
  })
})
