// Operator configuration: one YAML/JSON file named by REMOTE_HOOKS_CONFIG, validated once at start.
// Every problem is reported together with its field path; nothing secret is ever printed.
import { z } from 'zod'
import { isAbsolute } from 'node:path'
import { ConfigError } from './errors'
import { describeIssues } from './protocol'

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock'

const absPath = z.string().min(1).refine((p) => isAbsolute(p), { message: 'must be an absolute path' })

const HostSchema = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1).regex(/^[a-z_][a-z0-9_.-]*\$?$/i, 'must be a plain user name'),
    identityFile: absPath,
    knownHostsFile: absPath,
    /** Lets several jobs share one host (default 1: a job takes a free host). */
    slots: z.number().int().min(1).max(64).default(1)
  })
  .strict()

const StaticProviderSchema = z
  .object({
    kind: z.literal('static'),
    hosts: z.array(HostSchema).min(1, 'at least one host is required'),
    /** How long prepare_job waits for a free host before failing. */
    acquireTimeoutSeconds: z.number().int().min(0).max(86400).default(600)
  })
  .strict()

const Ec2ProviderSchema = z
  .object({
    kind: z.literal('ec2'),
    region: z.string().min(1),
    /** Any EC2-compatible endpoint (tests use moto on loopback). */
    endpoint: z.string().url().optional(),
    launchTemplate: z
      .object({ name: z.string().min(1).optional(), id: z.string().min(1).optional(), version: z.string().default('$Latest') })
      .strict()
      .refine((t) => !!t.name !== !!t.id, 'give exactly one of name or id')
      .optional(),
    imageId: z.string().min(1).optional(),
    /** Tried in order when a type has no capacity. */
    instanceTypes: z.array(z.string().min(1)).default([]),
    /** Tried across AZs when a subnet has no capacity. */
    subnetIds: z.array(z.string().min(1)).default([]),
    securityGroupIds: z.array(z.string().min(1)).default([]),
    market: z.enum(['on-demand', 'spot', 'spot-with-on-demand-fallback']).default('on-demand'),
    user: z.string().min(1).default('ec2-user'),
    sshPort: z.number().int().min(1).max(65535).default(22),
    connect: z
      .object({ address: z.string().regex(/^(private-ip|public-ip|public-dns|tag:[A-Za-z0-9_.:/=+@-]+)$/, 'must be private-ip, public-ip, public-dns or tag:<TagName>').default('private-ip') })
      .strict()
      .default({}),
    /** The VM shuts itself down (and so terminates) after this, whatever happens to the runner. */
    maxLifetimeMinutes: z.number().int().min(5).max(7 * 24 * 60).default(360),
    rootVolume: z.object({ sizeGiB: z.number().int().min(8).max(16384).optional(), type: z.string().default('gp3') }).strict().default({}),
    tags: z.record(z.string().max(256)).default({}),
    /** One overall deadline for launch → running → SSH ready. */
    acquireTimeoutSeconds: z.number().int().min(10).max(3600).default(600)
  })
  .strict()

export const ConfigSchema = z
  .object({
    provider: z.discriminatedUnion('kind', [StaticProviderSchema, Ec2ProviderSchema], {
      errorMap: (issue, ctx) =>
        issue.code === 'invalid_union_discriminator'
          ? { message: `kind must be one of: static, ec2 (got ${JSON.stringify((ctx.data as { kind?: unknown })?.kind)})` }
          : { message: ctx.defaultError }
    }),
    remote: z
      .object({
        workRoot: absPath.refine((p) => p !== '/' && !/[\s'"\\$`]/.test(p), 'must not be / or contain spaces, quotes or $'),
        dockerSocket: absPath.default(DEFAULT_DOCKER_SOCKET)
      })
      .strict(),
    images: z
      .object({
        pullPolicy: z.enum(['missing', 'always', 'never']).default('missing'),
        /** A pull (and its login) that takes longer fails; a hung registry must not hold the job forever. */
        pullTimeoutSeconds: z.number().int().min(1).max(86400).default(1800)
      })
      .strict()
      .default({}),
    sync: z
      .object({
        /** Also sync the runner's tool cache (_work/_tool) in prepare_job. */
        toolCache: z.boolean().default(true),
        /** Glob-free path prefixes under the workspace never synced back (e.g. node_modules/.cache). */
        excludeFromPullBack: z.array(z.string().min(1)).default([])
      })
      .strict()
      .default({}),
    timeouts: z
      .object({
        connectSeconds: z.number().min(1).max(600).default(20),
        healthSeconds: z.number().min(1).max(86400).default(600),
        cancelGraceSeconds: z.number().min(0).max(30).default(2)
      })
      .strict()
      .default({}),
    agent: z
      .object({
        /** Keep one SSH connection per job in a helper process, reused by every hook command of the job. */
        enabled: z.boolean().default(true),
        idleSeconds: z.number().int().min(5).max(86400).default(1800)
      })
      .strict()
      .default({}),
    log: z
      .object({
        file: absPath.optional(),
        level: z.enum(['error', 'warn', 'info', 'debug']).default('info')
      })
      .strict()
      .default({})
  })
  .strict()

export type Config = z.infer<typeof ConfigSchema>
export type HostConfig = z.infer<typeof HostSchema>
export type StaticConfig = z.infer<typeof StaticProviderSchema>
export type Ec2Config = z.infer<typeof Ec2ProviderSchema>

export interface ConfigIo {
  readFile(path: string): string
  canRead(path: string): string | null // null = readable, else the reason
}

/** Loads and validates the configuration named by REMOTE_HOOKS_CONFIG. Pure apart from the injected io. */
export function loadConfig(env: Record<string, string | undefined>, io: ConfigIo): Config {
  const path = env.REMOTE_HOOKS_CONFIG
  if (!path) throw new ConfigError(['REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'])
  let text: string
  try {
    text = io.readFile(path)
  } catch (e) {
    throw new ConfigError([`REMOTE_HOOKS_CONFIG: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`])
  }
  let raw: unknown
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    raw = path.endsWith('.json') ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text)
  } catch (e) {
    throw new ConfigError([`${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(e as Error).message.split('\n')[0]})`])
  }
  const parsed = ConfigSchema.safeParse(raw ?? {})
  if (!parsed.success) {
    // Unreadable key files are reported along with the schema's problems, not in a second round.
    const schemaIssues = describeIssues(parsed.error)
    const flagged = (field: string): boolean => schemaIssues.some((i) => i.startsWith(`${field}:`))
    throw new ConfigError([...schemaIssues, ...keyFileIssues(raw, io).filter((i) => !flagged(i.slice(0, i.indexOf(':'))))])
  }
  const cfg = parsed.data
  const issues: string[] = []
  const p = cfg.provider
  if (p.kind === 'ec2') {
    if (!p.launchTemplate && !p.imageId) issues.push('provider.imageId: imageId or launchTemplate is required')
    if (!p.launchTemplate && p.instanceTypes.length === 0) issues.push('provider.instanceTypes: at least one instance type is required without a launchTemplate')
  }
  issues.push(...keyFileIssues(cfg, io))
  if (issues.length) throw new ConfigError(issues)
  return Object.freeze(cfg)
}

/** Static hosts' key files that are named by an absolute path but cannot be read (works on unvalidated input too). */
function keyFileIssues(raw: unknown, io: ConfigIo): string[] {
  const provider = (raw as { provider?: { kind?: unknown; hosts?: unknown } } | null)?.provider
  if (provider?.kind !== 'static' || !Array.isArray(provider.hosts)) return []
  const issues: string[] = []
  provider.hosts.forEach((h: Record<string, unknown> | null, i) => {
    for (const key of ['identityFile', 'knownHostsFile'] as const) {
      const path = h?.[key]
      if (typeof path !== 'string' || !isAbsolute(path)) continue
      const why = io.canRead(path)
      if (why) issues.push(`provider.hosts.${i}.${key}: cannot read ${path} (${why})`)
    }
  })
  return issues
}
