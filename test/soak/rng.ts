// A seeded random source (mulberry32): the same seed plans the same jobs and the same chaos, so a
// failing soak can be replayed with SOAK_SEED.

export interface Rng {
  readonly seed: number
  /** [0, 1); a plain function, so it can be handed on alone */
  next(this: void): number
  /** an integer in [lo, hi] */
  int(lo: number, hi: number): number
  pick<T>(xs: readonly T[]): T
  shuffle<T>(xs: T[]): T[]
}

export function rng(seed: number): Rng {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1))
  return {
    seed,
    next,
    int,
    pick: (xs) => xs[int(0, xs.length - 1)],
    shuffle: (xs) => {
      for (let i = xs.length - 1; i > 0; i--) {
        const j = int(0, i)
        ;[xs[i], xs[j]] = [xs[j], xs[i]]
      }
      return xs
    }
  }
}

/** SOAK_SEED when set (a replay), else a fresh one. */
export function seedFrom(env: Record<string, string | undefined>): number {
  const s = env.SOAK_SEED
  if (s !== undefined && s !== '') {
    const n = Number(s)
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`SOAK_SEED: must be an integer 0..4294967295 (got ${s})`)
    return n
  }
  return Math.floor(Math.random() * 0xffffffff)
}
