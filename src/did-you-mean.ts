// "did you mean `workRoot`?" for a configuration key that is a near miss of one its object allows.
import { z } from 'zod'

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

/**
 * The keys the object schema at `path` allows, following `data` through a discriminated union (so
 * a static provider's keys are not offered for an ec2 one); [] where no object schema is found.
 */
export function keysAt(schema: z.ZodTypeAny, path: readonly (string | number)[], data: unknown): string[] {
  const unwrap = (t: z.ZodTypeAny | undefined, d: unknown): z.ZodTypeAny | undefined => {
    for (let n = 0; t && n < 32; n++) {
      // zod's classes are generic over `any`; each step names the type it yields.
      if (t instanceof z.ZodEffects) t = (t as z.ZodEffects<z.ZodTypeAny>).innerType()
      else if (t instanceof z.ZodDefault) t = (t as z.ZodDefault<z.ZodTypeAny>).removeDefault()
      else if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = (t as z.ZodOptional<z.ZodTypeAny>).unwrap()
      else if (t instanceof z.ZodDiscriminatedUnion) {
        const u = t as z.ZodDiscriminatedUnion<string, z.ZodDiscriminatedUnionOption<string>[]>
        const tag = d && typeof d === 'object' ? (d as Record<string, unknown>)[u.discriminator] : undefined
        t = u.optionsMap.get(tag as z.Primitive)
      } else return t
    }
    return undefined
  }
  let s = unwrap(schema, data)
  let d = data
  for (const k of path) {
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodTypeAny>)[String(k)]
    else if (s instanceof z.ZodArray) s = (s as z.ZodArray<z.ZodTypeAny>).element
    else if (s instanceof z.ZodRecord) s = (s as z.ZodRecord<z.ZodString, z.ZodTypeAny>).valueSchema
    else return []
    d = d && typeof d === 'object' ? (d as Record<string, unknown>)[String(k)] : undefined
    s = unwrap(s, d)
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape as object) : []
}
