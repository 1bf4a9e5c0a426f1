import { LayeredMap } from '../../src/sync/layered-map'

/** A small seeded generator: the same runs every time. */
function rng(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return x / 2 ** 31
  }
}

const sorted = <V>(m: ReadonlyMap<string, V>): [string, V][] => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

describe('LayeredMap', () => {
  it('answers as a Map given the same removals then sets would, for every version, old ones included', () => {
    const next = rng(7)
    for (const keys of [20, 400, 3000]) {
      let layered = LayeredMap.of(new Map<string, number>())
      let reference = new Map<string, number>()
      const versions: [LayeredMap<string, number>, [string, number][]][] = []
      for (let round = 0; round < (keys > 1000 ? 60 : 300); round++) {
        const key = (): string => `k${Math.floor(next() * keys)}`
        // Mostly small updates, now and then one large enough to flatten the layer.
        const n = next() < 0.15 ? Math.floor(next() * keys) : Math.floor(next() * 6)
        const remove = Array.from({ length: Math.floor(next() * (n > 100 ? n / 2 : 4)) }, key)
        const set = Array.from({ length: n }, (): [string, number] => [key(), round])
        layered = layered.with(set, remove)
        reference = new Map(reference)
        for (const k of remove) reference.delete(k)
        for (const [k, v] of set) reference.set(k, v)
        expect(layered.size).toBe(reference.size)
        expect(sorted(layered)).toEqual(sorted(reference))
        for (let i = 0; i < 20; i++) {
          const k = key()
          expect([layered.get(k), layered.has(k)]).toEqual([reference.get(k), reference.has(k)])
        }
        versions.push([layered, sorted(reference)])
      }
      // Every version handed out is as it was.
      for (const [v, want] of versions) expect(sorted(v)).toEqual(want)
    }
  })

  it('keys, values, entries, forEach and the iterator agree, each key once, in the order kept across versions', () => {
    const m = LayeredMap.of(
      new Map([
        ['a', 1],
        ['b', 2],
        ['c', 3]
      ])
    ).with(
      [
        ['d', 4],
        ['b', 5]
      ],
      ['a']
    )
    expect([...m.keys()]).toEqual(['b', 'c', 'd'])
    expect([...m.values()]).toEqual([5, 3, 4])
    expect([...m]).toEqual([...m.entries()])
    const seen: [string, number][] = []
    m.forEach((v, k) => seen.push([k, v]))
    expect(seen).toEqual([...m.entries()])
    expect([...m.with([], ['d']).keys()]).toEqual(['b', 'c'])
    // A key the shared map holds, removed and set again, keeps its place; a new one comes last.
    expect([...m.with([['a', 9]], []).keys()]).toEqual(['a', 'b', 'c', 'd'])
    expect([...m.with([['e', 9]], []).keys()]).toEqual(['b', 'c', 'd', 'e'])
  })

  it('a version over a large map copies only its layer, until the layer is an eighth of the map', () => {
    const big = new Map(Array.from({ length: 16_000 }, (_, i): [string, number] => [`k${i}`, i]))
    const v1 = LayeredMap.of(big).with([['x', 1]], ['k1'])
    // The shared map itself is untouched, and is still what the new version reads through.
    expect([big.has('k1'), big.has('x')]).toEqual([true, false])
    expect([v1.has('k1'), v1.get('x'), v1.size]).toEqual([false, 1, 16_000])
    const many = Array.from({ length: 3_100 }, (_, i): [string, number] => [`n${i}`, i])
    const v2 = v1.with(many, [])
    expect(v2.size).toBe(19_100)
    expect([v2.has('k1'), v2.get('x'), [...v2.keys()].length]).toEqual([false, 1, 19_100])
    expect(big.size).toBe(16_000)
    expect([...v2.keys()].slice(-1)).toEqual(['n3099'])
  })
})
