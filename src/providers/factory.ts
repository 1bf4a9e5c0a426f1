// One line per provider kind. A new provider is one new file (its VmProvider and how its lease is
// stored and checked) plus its line here; its config section goes into config.ts with its line in
// SECTIONS there, and its doctor checks and reap pass into ops/ behind a line in ops/provider-ops.ts
// (the type check asks for each).
import type { Config } from '../config'
import type { LeaseBase, ProviderKind, VmProvider } from './provider'
import { staticHosts } from './static-host'
import { ec2 } from './ec2'
import { ec2Pool } from './ec2-pool'

type ProviderConfig = Config['provider']
type ConfigOf<K extends ProviderConfig['kind']> = Extract<ProviderConfig, { kind: K }>

const KINDS = {
  static: staticHosts,
  ec2: ec2,
  'ec2-pool': ec2Pool
} satisfies { [K in ProviderConfig['kind']]: ProviderKind<ConfigOf<K>, LeaseBase<K>> }

type Kinds = typeof KINDS
/** A lease of any provider kind, told apart by `kind`. */
export type Lease = { [K in keyof Kinds]: Kinds[K] extends ProviderKind<never, infer L> ? L : never }[keyof Kinds]

/** The configured kind's rules for storing and checking its lease. */
export function leaseRulesFor(p: ProviderConfig): ProviderKind<ProviderConfig, Lease>['lease'] {
  return (KINDS[p.kind] as unknown as ProviderKind<ProviderConfig, Lease>).lease
}

/** Every kind's lease fields, for the state schema. */
export function leaseFields(): { kind: string; fields: ProviderKind<ProviderConfig, Lease>['lease']['fields'] }[] {
  return Object.entries(KINDS).map(([kind, k]) => ({ kind, fields: k.lease.fields }))
}

/**
 * The config whose cleanup without state reaches the machine of a refused state's `host` that
 * today's config cannot (provider.region changed while the job ran), or null.
 */
export function configElsewhere(config: Config, host: unknown): Config | null {
  if (!host || typeof host !== 'object' || (host as { kind?: unknown }).kind !== config.provider.kind) return null
  const there = leaseRulesFor(config.provider).elsewhere?.(host as Record<string, unknown>, config.provider)
  return there ? Object.freeze({ ...config, provider: Object.freeze({ ...config.provider, region: there.region }) }) : null
}

/** The rules of a lease's kind (a lease, or one as the state keeps it), or null for a kind not listed. */
function rulesOf(lease: object): ProviderKind<ProviderConfig, Lease>['lease'] | null {
  const kind = (lease as { kind?: unknown }).kind
  return typeof kind === 'string' && Object.hasOwn(KINDS, kind)
    ? (KINDS[kind as keyof Kinds] as unknown as ProviderKind<ProviderConfig, Lease>).lease
    : null
}

/** The machine label's value for a lease, as its provider names the machine (see LeaseRules.machine); null when it does not. */
export function machineOf(lease: object): string | null {
  return rulesOf(lease)?.machine?.(lease as Lease) ?? null
}

/** remote.workRoot as it is on the job's machine: a lease may carry it resolved there (see LeaseRules.workRoot). */
export function workRootOf(config: Config, lease: object): string {
  return rulesOf(lease)?.workRoot?.(lease as Lease) ?? config.remote.workRoot
}

/** The configured provider section in a few words (its kind's own). */
export function providerSummary(p: ProviderConfig): string {
  return (KINDS[p.kind] as unknown as ProviderKind<ProviderConfig, Lease>).summary(p)
}

export function providerFor(config: Config): VmProvider<Lease> {
  const p = config.provider
  return (KINDS[p.kind] as unknown as ProviderKind<ProviderConfig, Lease>).create(p, config.remote.workRoot)
}
