// A read-only map made of a large map shared by many versions and a small layer of changes over it.
// The sync base of a large workspace has hundreds of thousands of entries, and each version of it
// handed out must stay as it was (readers keep it across a save): copying the whole map per save
// cost a step ~50 ms per 200,000 entries. A new version copies only the layer; once the layer has
// grown to a fraction of the map, the next version is flattened into one new map.

/** A path's entry in the layer: its new value, or REMOVED. */
const REMOVED = Symbol('removed')
type Slot<V> = V | typeof REMOVED

export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  readonly size: number

  private constructor(
    private readonly under: ReadonlyMap<K, V>,
    private readonly over: ReadonlyMap<K, Slot<V>>,
    size: number
  ) {
    this.size = size
  }

  static of<K, V>(map: ReadonlyMap<K, V>): LayeredMap<K, V> {
    return map instanceof LayeredMap ? (map as LayeredMap<K, V>) : new LayeredMap<K, V>(map, new Map<K, Slot<V>>(), map.size)
  }

  /** A new version with `remove` taken out, then `set` put in; this one is left as it is. */
  with(set: Iterable<[K, V]>, remove: Iterable<K>): LayeredMap<K, V> {
    const over = new Map(this.over)
    const present = (k: K): boolean => (over.has(k) ? over.get(k) !== REMOVED : this.under.has(k))
    let size = this.size
    for (const k of remove) {
      if (present(k)) size--
      // Not in the shared map: absent is enough.
      if (this.under.has(k)) over.set(k, REMOVED)
      else over.delete(k)
    }
    for (const [k, v] of set) {
      if (!present(k)) size++
      over.set(k, v)
    }
    // Flattened when the layer has grown: copies of the layer stay cheap.
    if (over.size <= 1024 + this.under.size / 8) return new LayeredMap<K, V>(this.under, over, size)
    const flat = new Map(this.under)
    for (const [k, o] of over) {
      if (o === REMOVED) flat.delete(k)
      else flat.set(k, o)
    }
    return new LayeredMap<K, V>(flat, new Map<K, Slot<V>>(), size)
  }

  get(k: K): V | undefined {
    if (this.over.has(k)) {
      const v = this.over.get(k)!
      return v === REMOVED ? undefined : v
    }
    return this.under.get(k)
  }

  has(k: K): boolean {
    return this.over.has(k) ? this.over.get(k) !== REMOVED : this.under.has(k)
  }

  /** The map's order: the shared map's (changed values in place), then what the layer added. */
  entries(): MapIterator<[K, V]> {
    return this.over.size === 0 ? this.under.entries() : this.layered()
  }

  keys(): MapIterator<K> {
    return this.over.size === 0 ? this.under.keys() : this.layeredKeys()
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v
  }

  private *layered(): MapIterator<[K, V]> {
    const over = this.over
    for (const [k, v] of this.under) {
      const o = over.get(k)
      if (o === undefined && !over.has(k)) yield [k, v]
      else if (o !== REMOVED) yield [k, o as V]
    }
    for (const [k, o] of over) if (o !== REMOVED && !this.under.has(k)) yield [k, o]
  }

  private *layeredKeys(): MapIterator<K> {
    const over = this.over
    for (const k of this.under.keys()) if (over.get(k) !== REMOVED) yield k
    for (const [k, o] of over) if (o !== REMOVED && !this.under.has(k)) yield k
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries()
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this)
  }
}
