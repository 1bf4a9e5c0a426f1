// How near a mistyped word is to the ones meant: for "did you mean `workRoot`?" on a configuration
// key and "did you mean doctor?" on a command. Free of zod, so the hook's start-up can use it
// without loading the schema library.

/** Edit distance (insert, delete, substitute, swap two neighbours), ignoring case. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase()
  const t = b.toLowerCase()
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) =>
    Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0))
  )
  for (let i = 1; i <= s.length; i++) {
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[s.length][t.length]
}

/** The one valid key closest to `key` within a small distance (more for longer keys), or null. */
export function nearestKey(key: string, valid: readonly string[]): string | null {
  const limit = key.length <= 4 ? 1 : key.length <= 8 ? 2 : 3
  let best: string | null = null
  let bestDistance = Infinity
  let tie = false
  for (const v of valid) {
    if (v === key) continue
    const dist = editDistance(key, v)
    if (dist < bestDistance) [best, bestDistance, tie] = [v, dist, false]
    else if (dist === bestDistance) tie = true
  }
  return best !== null && bestDistance <= limit && !tie ? best : null
}
