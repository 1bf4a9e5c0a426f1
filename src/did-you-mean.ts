// The keys a configuration object allows, for "did you mean" on a near miss (near-miss.ts).
import { z } from 'zod'

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
