// docs/configuration.md documents every key of the configuration schema (src/config.ts), each
// with the schema's default and, where the schema bounds a number on both sides, its range; and
// no key that the schema does not have. A key added to the schema without a row fails here.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'
import { ConfigSchema } from '../../src/config'

const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'configuration.md'), 'utf8')

interface Key {
  /** As the docs write it: `provider.hosts[].port`, `sync.limits.stepBytes`. */
  path: string
  /** The provider kind a `provider.*` key belongs to, or null. */
  kind: string | null
  default?: unknown
  range?: [number, number]
}

/** Every key of the schema, objects included (an object may be documented as one row). */
function keysOf(schema: z.ZodTypeAny, path: string, kind: string | null, out: Key[]): Key[] {
  let t: z.ZodTypeAny = schema
  let def: unknown
  for (;;) {
    if (t instanceof z.ZodDefault) {
      def = (t._def as { defaultValue: () => unknown }).defaultValue()
      t = t._def.innerType as z.ZodTypeAny
    } else if (t instanceof z.ZodOptional) t = t._def.innerType as z.ZodTypeAny
    else if (t instanceof z.ZodEffects) t = t._def.schema as z.ZodTypeAny
    else break
  }
  if (t instanceof z.ZodDiscriminatedUnion) {
    for (const o of t.options as z.AnyZodObject[]) {
      const k = (o.shape.kind as z.ZodLiteral<string>).value
      keysOf(o, path, path === 'provider' ? k : kind, out)
    }
    return out
  }
  const key: Key = { path, kind, default: def }
  if (t instanceof z.ZodNumber) {
    const checks = t._def.checks
    const min = checks.find((c) => c.kind === 'min' && c.inclusive)
    const max = checks.find((c) => c.kind === 'max' && c.inclusive)
    if (min && max && 'value' in min && 'value' in max) key.range = [min.value, max.value]
  }
  if (path && !path.endsWith('[]')) out.push(key)
  if (t instanceof z.ZodArray) keysOf(t.element as z.ZodTypeAny, `${path}[]`, kind, out)
  if (t instanceof z.ZodObject)
    for (const [name, child] of Object.entries(t.shape as Record<string, z.ZodTypeAny>))
      keysOf(child, path ? `${path}.${name}` : name, kind, out)
  return out
}

const KEYS = keysOf(ConfigSchema, '', null, [])

/** The part of the page where a provider kind's keys are, and the rest for every other key. */
function section(kind: string | null): string {
  const between = (from: string, to: string): string => doc.slice(doc.indexOf(from), doc.indexOf(to, doc.indexOf(from)))
  if (kind === 'static') return between('### `provider` (required)', '### `remote`')
  if (kind === 'ec2') return between('### EC2 keys', '### The image')
  if (kind === 'ec2-pool') return between('## EC2 pool provider', '### Pools and the fleet ledger')
  return doc
}

/** The table row of a key: `| \`provider.hosts[].port\` | …`; the pool's table leaves out `provider.`. */
function rowOf(k: Key): string[] | undefined {
  const names = k.kind === 'ec2-pool' ? [k.path, k.path.replace(/^provider\./, '')] : [k.path]
  const line = section(k.kind)
    .split('\n')
    .find((l) => names.some((n) => l.startsWith(`| \`${n}\` |`)))
  return line?.split(' | ').map((c) => c.trim())
}

/**
 * A key without a row of its own is documented with its parent (`provider.launchTemplate`'s
 * `name`, `id` and `version`) or through its children (`sync.limits`, `provider.connect`).
 */
const coveredWithout = (k: Key): boolean => {
  const parent = k.path.slice(0, k.path.lastIndexOf('.')).replace(/\[\]$/, '')
  const children = KEYS.filter((o) => o.kind === k.kind && (o.path.startsWith(`${k.path}.`) || o.path.startsWith(`${k.path}[].`)))
  return (!!parent && !!rowOf({ ...k, path: parent })) || (children.length > 0 && children.some((c) => !!rowOf(c)))
}

test('the schema walk found the keys (control)', () => {
  const paths = KEYS.map((k) => k.path)
  expect(paths).toEqual(expect.arrayContaining(['provider.hosts[].port', 'provider.reuse.maxJobsPerVm', 'fleet.reap.graceMinutes']))
  expect(KEYS.length).toBeGreaterThan(80)
})

test.each(KEYS.map((k) => [`${k.kind ?? ''} ${k.path}`, k] as const))(
  'every key has a row in docs/configuration.md, with its default and range: %s',
  (_name, k) => {
    const row = rowOf(k)
    if (!row) {
      expect({ key: k.path, documented: coveredWithout(k) }).toEqual({ key: k.path, documented: true })
      return
    }
    const [, type, def] = row
    if (k.range) expect(type).toContain(`${k.range[0]}–${k.range[1]}`)
    const d = k.default
    if (typeof d === 'number' || typeof d === 'boolean' || typeof d === 'string') expect(def).toContain(`\`${String(d)}\``)
    else if (Array.isArray(d) && d.length === 0) expect(def).toContain('`[]`')
  }
)

test('every key row in docs/configuration.md is a key of the schema', () => {
  const known = new Set(KEYS.flatMap((k) => (k.kind === 'ec2-pool' ? [k.path, k.path.replace(/^provider\./, '')] : [k.path])))
  const documented = [...doc.matchAll(/^\| `([a-z][A-Za-z.[\]]*)` \|/gm)].map((m) => m[1])
  expect(documented.length).toBeGreaterThan(80)
  expect(documented.filter((p) => !known.has(p))).toEqual([])
})
