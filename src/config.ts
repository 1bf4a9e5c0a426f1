// Operator configuration: one YAML/JSON file named by REMOTE_HOOKS_CONFIG, validated once at start.
// Every problem is reported together with its field path; nothing secret is ever printed.
import { z } from 'zod'
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { ConfigError, errnoOf } from './errors'
import { describeIssues, shownValue } from './protocol'
import { hasControl, isHomeWorkRoot, isHostName, isPlainRelPath, isUserName, isWorkRoot, sshLiteral } from './input-rules'

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock'

/** provider.hosts[].slots at most: the slot folders a static host can have are slot-0 to slot-63. */
export const MAX_HOST_SLOTS = 64

const absPath = z
  .string()
  .min(1)
  .refine((p) => isAbsolute(p) && !hasControl(p), { message: 'must be an absolute path' })

/** A known_hosts file, which OpenSSH (rsync's transport) gets as an option's value: it must read the path as written. */
const sshPath = absPath.refine((p) => sshLiteral(p), {
  message: 'must be a path OpenSSH reads as written: no space, %, $, quote, backslash or leading ~ (it would read another file)'
})

/** A key file, which OpenSSH gets after -i: no %, $ or leading ~, which it would expand. */
const sshKeyPath = absPath.refine((p) => sshLiteral(p, false), {
  message: 'must be a path OpenSSH reads as written: no %, $ or leading ~ (it would read another file)'
})

const HostSchema = z
  .object({
    host: z.string().refine(isHostName, 'must be a DNS name ([A-Za-z0-9.-]) or an IP address'),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().refine(isUserName, 'must be a plain user name ([a-z_][a-z0-9_.-]*)'),
    identityFile: sshKeyPath,
    knownHostsFile: sshPath,
    /** Lets several jobs share one host (default 1: a job takes a free host). */
    slots: z.number().int().min(1).max(MAX_HOST_SLOTS).default(1)
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

/** Where an AWS provider's API is. */
const awsApi = {
  region: z.string().min(1),
  /** Any EC2-compatible endpoint (tests use moto on loopback). */
  endpoint: z.string().url().optional()
}

/** How an AWS provider's machines are logged into. */
const awsMachine = {
  user: z.string().refine(isUserName, 'must be a plain user name ([a-z_][a-z0-9_.-]*)').default('ec2-user'),
  sshPort: z.number().int().min(1).max(65535).default(22),
  connect: z
    .object({
      address: z
        .string()
        .regex(/^(private-ip|public-ip|public-dns|tag:[A-Za-z0-9_.:/=+@-]+)$/, 'must be private-ip, public-ip, public-dns or tag:<TagName>')
        .default('private-ip')
    })
    .strict()
    .default({})
}

const Ec2ProviderSchema = z
  .object({
    kind: z.literal('ec2'),
    ...awsApi,
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
    ...awsMachine,
    /** The VM shuts itself down (and so terminates) after this, whatever happens to the runner. */
    maxLifetimeMinutes: z
      .number()
      .int()
      .min(5)
      .max(7 * 24 * 60)
      .default(360),
    rootVolume: z
      .object({ sizeGiB: z.number().int().min(8).max(16384).optional(), type: z.string().default('gp3') })
      .strict()
      .default({}),
    // EC2's own rules, in characters (not UTF-16 units): broken, they fail RunInstances only after the
    // launch was reserved in the fleet ledger. 50 tags at most per resource, of which the hook's take
    // 13 at launch (its remote-container-hooks:* keys and Name) and reap one more later: its
    // reap-candidate mark, without which an instance whose job disabled its shutdown timer is never
    // ended. Every key but Name counts: a remote-container-hooks:* key the hook does not set is sent too.
    tags: z
      .record(
        z
          .string()
          .refine((k) => k !== '' && [...k].length <= 128 && !/^aws:/i.test(k), 'tag keys are 1 to 128 characters, not starting with aws:')
          // TAG_KEEP (providers/ec2-plan.ts): the operator's mark, by hand, on one instance reap must
          // leave alone. On every launch it would exempt them all, and the runner-iam policy denies it.
          .refine(
            (k) => k !== 'remote-container-hooks:keep',
            "remote-container-hooks:keep is set by hand on an instance reap must leave alone, never at launch (terraform/modules/runner-iam's policy denies writing it, so every launch would fail)"
          ),
        z.string().refine((v) => [...v].length <= 256, 'tag values are at most 256 characters')
      )
      .refine(
        (t) => Object.keys(t).filter((k) => k !== 'Name').length <= 36,
        'at most 36 tags besides Name (EC2 allows 50 per instance; the hook sets 13 at launch and reap marks with one more)'
      )
      .default({}),
    /** One overall deadline for launch → running → SSH ready. */
    acquireTimeoutSeconds: z.number().int().min(10).max(3600).default(600)
  })
  .strict()

const Ec2PoolProviderSchema = z
  .object({
    kind: z.literal('ec2-pool'),
    ...awsApi,
    /** Members: the instances this Auto Scaling group tags with aws:autoscaling:groupName. */
    autoScalingGroup: z.string().regex(/^[A-Za-z0-9._/:@+=-]{1,255}$/, 'must be an Auto Scaling group name'),
    ...awsMachine,
    /**
     * The members' SSH user, in group docker (a release ends its processes, so never root), or
     * `tag:<Name>`: each member's own, from that tag (pools of mixed images).
     */
    user: z
      .string()
      .refine(
        (u) => isUserName(u) || /^tag:[A-Za-z0-9_.:/=+@-]+$/.test(u),
        'must be a plain user name ([a-z_][a-z0-9_.-]*) or tag:<TagName>'
      )
      .refine((u) => u !== 'root', 'must not be root (releasing a member ends all processes of this user)')
      .default('ec2-user'),
    /** The pool key: its public half is in the pool's launch template. */
    identityFile: sshKeyPath,
    lease: z
      .object({
        /** A lease not renewed for this long lapses (the job's agent renews it every third of it). */
        ttlSeconds: z.number().int().min(15).max(3600).default(120)
      })
      .strict()
      .default({}),
    reuse: z
      .object({
        /** A member that served this many jobs is recycled (1: every member serves one job only). */
        // One job per member by default: a job is root on its member, and a later job there is in its reach.
        maxJobsPerVm: z.number().int().min(1).max(100_000).default(1),
        maxVmAgeMinutes: z
          .number()
          .int()
          .min(10)
          .max(90 * 24 * 60)
          .default(720),
        /** Disk use (of the work root's and Docker's file systems, in percent) at or over this recycles a member. */
        maxDiskPercent: z.number().int().min(10).max(100).default(90)
      })
      .strict()
      .default({}),
    scaleOut: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .default({}),
    /** How long a job waits for a free member (in the queue, or for one starting) before it fails. */
    waitTimeoutSeconds: z.number().int().min(0).max(86400).default(600)
  })
  .strict()

/** An IANA time zone name this node knows (the budget day starts at midnight there). */
const timeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}, 'must be an IANA time zone name (e.g. UTC, Europe/Berlin)')

export const FleetSchema = z
  .object({
    /** Where reservations are kept: a local file (exact for one runner host) or a DynamoDB table (exact across hosts). */
    ledger: z
      .discriminatedUnion('kind', [
        z.object({ kind: z.literal('local'), path: absPath.optional() }).strict(),
        z
          .object({
            kind: z.literal('dynamodb'),
            table: z.string().regex(/^[A-Za-z0-9_.-]{3,255}$/, 'must be a DynamoDB table name ([A-Za-z0-9_.-], 3 to 255 characters)'),
            ...awsApi
          })
          .strict()
      ])
      .default({ kind: 'local' }),
    caps: z
      .object({
        instances: z.number().int().min(1).optional(),
        vcpus: z.number().int().min(1).optional(),
        perRepository: z
          .object({ instances: z.number().int().min(1).optional() })
          .strict()
          .default({})
      })
      .strict()
      .default({}),
    budget: z
      .object({
        perDayUsd: z.number().positive().max(1e9),
        timezone: timeZone.default('UTC'),
        /** USD per instance-hour, by instance type; a type without a price is refused while a budget is set. */
        prices: z
          .record(z.string().regex(/^[a-z0-9][a-z0-9.-]*$/, 'must be an instance type name'), z.number().positive().max(1e6))
          .default({})
      })
      .strict()
      .optional(),
    /** What `reap` counts as a dead job, and how long a mark stands before anything is removed. */
    reap: z
      .object({
        /** A job whose last sign of life (heartbeat, else reservation) is older than this is dead. */
        deadAfterMinutes: z
          .number()
          .int()
          .min(1)
          .max(7 * 24 * 60)
          .default(15),
        /** Phase 2 removes only candidates that phase 1 marked at least this long ago. */
        graceMinutes: z
          .number()
          .int()
          .min(0)
          .max(24 * 60)
          .default(2),
        /**
         * The longest a job may hold a pool member: a member older than reuse.maxVmAgeMinutes plus
         * this is replaced whatever its lease record (which the member can write) says.
         */
        maxJobMinutes: z
          .number()
          .int()
          .min(1)
          .max(7 * 24 * 60)
          .default(5 * 24 * 60)
      })
      .strict()
      .default({})
  })
  .strict()

export const ConfigSchema = z
  .object({
    provider: z.discriminatedUnion('kind', [StaticProviderSchema, Ec2ProviderSchema, Ec2PoolProviderSchema], {
      errorMap: (issue, ctx) =>
        issue.code === 'invalid_union_discriminator'
          ? { message: `kind must be one of: static, ec2, ec2-pool (got ${shownValue((ctx.data as { kind?: unknown })?.kind)})` }
          : { message: ctx.defaultError }
    }),
    remote: z
      .object({
        workRoot: z
          .string()
          .refine(
            (p) => isWorkRoot(p) || isHomeWorkRoot(p),
            'must be a normalised absolute path other than / (or ~/path for pools), without .. and only of A-Z a-z 0-9 . _ / -'
          ),
        dockerSocket: absPath.default(DEFAULT_DOCKER_SOCKET),
        /**
         * Copies of the runner's externals no job has started with for this many days are removed
         * (src/prepare/externals-gc.ts); 0 keeps them. Above GitHub's longest job (5 days), which
         * is not seen using its copy while it runs. One rule, so a bad value gets one line (a range
         * check and a refine would each report it).
         */
        externalsKeepDays: z
          .number()
          .refine(
            (d) => d === 0 || (Number.isInteger(d) && d >= 6 && d <= 3650),
            'must be 0 (keep every copy) or a whole number of days from 6 (longer than the longest job) to 3650'
          )
          .default(14)
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
        /** Glob-free path prefixes relative to `_work` that the per-step sync skips both ways (e.g. repo/repo/node_modules/.cache). */
        // Compared with the sync's own paths as they are: `repo/x/`, `./repo/x` or `/abs` would match
        // nothing, and the step would bring the folder back after all.
        excludeFromPullBack: z
          .array(
            z
              .string()
              .refine(
                isPlainRelPath,
                'must be a path relative to _work such as repo/repo/node_modules/.cache (no leading or trailing /, no . or .. parts)'
              )
          )
          .default([]),
        /** Between steps the job's agent sends the runner's new _temp files while the next hook starts (early-push.ts). */
        earlyPush: z.boolean().default(true),
        /** After a step the VM lists only what changed since the last listing, by ctime (tree.ts remoteListScript). */
        deltaListing: z.boolean().default(true),
        /** Caps on what the VM may send back: it is untrusted, and a sparse file costs it nothing. */
        limits: z
          .object({
            stepBytes: z
              .number()
              .int()
              .min(0)
              .default(10 * 1024 ** 3),
            // As many as one listing may hold: a fresh checkout of a large repository comes back in one step.
            stepFiles: z.number().int().min(0).default(1_000_000),
            jobBytes: z
              .number()
              .int()
              .min(0)
              .default(50 * 1024 ** 3),
            jobFiles: z.number().int().min(0).default(1_000_000),
            listingEntries: z.number().int().min(1).default(1_000_000),
            listingBytes: z
              .number()
              .int()
              .min(1024)
              .default(256 * 1024 ** 2),
            /** The runner reads each file-command file whole, into memory. */
            fileCommandBytes: z
              .number()
              .int()
              .min(1024)
              .default(16 * 1024 ** 2)
          })
          .strict()
          .default({})
      })
      .strict()
      .default({}),
    timeouts: z
      .object({
        connectSeconds: z.number().min(1).max(600).default(20),
        /** How long a connection may go unanswered (keepalives unanswered) before it counts as lost. */
        keepaliveSeconds: z.number().int().min(10).max(3600).default(90),
        healthSeconds: z.number().min(1).max(86400).default(600),
        cancelGraceSeconds: z.number().min(0).max(30).default(2),
        /** cleanup_job's remote work (removal and the slot's release) ends by then, whatever the VM does. */
        cleanupSeconds: z.number().min(1).max(86400).default(600)
      })
      .strict()
      .default({}),
    agent: z
      .object({
        /** Keep one SSH connection per job in a helper process, reused by every hook command of the job. */
        enabled: z.boolean().default(true),
        idleSeconds: z.number().int().min(5).max(86400).default(1800),
        /** Steps go through one shell the agent keeps open in the job container instead of an exec each. */
        warmShell: z.boolean().default(true),
        /** The C allocator hands freed output buffers back, for some agent CPU while output streams (session.ts). */
        lowMemory: z.boolean().default(true)
      })
      .strict()
      .default({}),
    /** Absolute paths of the runner-host programs the hook runs; unset ones come from a fixed system PATH. */
    tools: z.object({ tar: absPath.optional(), rsync: absPath.optional(), ssh: absPath.optional() }).strict().default({}),
    log: z
      .object({
        file: absPath.optional(),
        level: z.enum(['error', 'warn', 'info', 'debug']).default('info')
      })
      .strict()
      .default({}),
    fleet: FleetSchema.default({})
  })
  .strict()

export type Config = z.infer<typeof ConfigSchema>
export type FleetConfig = z.infer<typeof FleetSchema>
export type HostConfig = z.infer<typeof HostSchema>
export type StaticConfig = z.infer<typeof StaticProviderSchema>
export type Ec2Config = z.infer<typeof Ec2ProviderSchema>
export type Ec2PoolConfig = z.infer<typeof Ec2PoolProviderSchema>

type ProviderConfig = Config['provider']

/** A runner-host file a provider section names: its field, its path, and whether it is a private key. */
interface KeyFile {
  field: string
  path: string
  privateKey: boolean
}

/** What a provider kind's section needs beyond its schema. */
interface SectionRules<C> {
  /** Problems of a valid section together with the rest of the config. */
  issues?(p: C, cfg: Config): string[]
  /** remote.workRoot may be ~/path: each machine resolves it under its own home. */
  homeWorkRoot?: boolean
  /** The key files the section names, read from a section not validated yet (a path that is not a string is dropped). */
  keyFiles?(p: Readonly<Record<string, unknown>>): { field: string; path: unknown; privateKey: boolean }[]
}

// One line per provider kind, as providers/factory.ts and ops/provider-ops.ts have: a kind added to
// the schema without its line fails the type check, so its key files cannot go unchecked.
const SECTIONS = {
  static: {
    // One machine listed twice would be leased as two (the same slot folders, two lists of slots).
    issues: (p) =>
      p.hosts.flatMap((h, i) => {
        // Host names are matched as SSH matches them, in any case.
        const first = p.hosts.findIndex((o) => o.host.toLowerCase() === h.host.toLowerCase() && o.port === h.port)
        return first < i
          ? [`provider.hosts.${i}: ${h.host}:${h.port} is listed already (provider.hosts.${first}): give that entry more slots`]
          : []
      }),
    keyFiles: (p) =>
      (Array.isArray(p.hosts) ? (p.hosts as (Record<string, unknown> | null)[]) : []).flatMap((h, i) => [
        { field: `provider.hosts.${i}.identityFile`, path: h?.identityFile, privateKey: true },
        { field: `provider.hosts.${i}.knownHostsFile`, path: h?.knownHostsFile, privateKey: false }
      ])
  },
  ec2: {
    issues: (p) => [
      ...(!p.launchTemplate && !p.imageId ? ['provider.imageId: imageId or launchTemplate is required'] : []),
      ...(!p.launchTemplate && p.instanceTypes.length === 0
        ? ['provider.instanceTypes: at least one instance type is required without a launchTemplate']
        : [])
    ]
  },
  'ec2-pool': {
    homeWorkRoot: true,
    issues: (_p, cfg) =>
      cfg.agent.enabled
        ? []
        : ["agent.enabled: provider.kind ec2-pool needs the job's agent (it renews the member's lease while the job runs)"],
    keyFiles: (p) => [{ field: 'provider.identityFile', path: p.identityFile, privateKey: true }]
  }
} satisfies { [K in ProviderConfig['kind']]: SectionRules<Extract<ProviderConfig, { kind: K }>> }

export interface ConfigIo {
  readFile(path: string): string
  canRead(path: string): string | null // null = readable, else the reason
  /** A file's mode bits and owner, where this io can tell (a private key other users can read is refused). */
  ownership?(path: string): { mode: number; uid: number }
}

/** loadConfig's file access on this machine: the hook's and the operator commands'. */
export const systemConfigIo: ConfigIo = {
  readFile: (p) => readFileSync(p, 'utf8'),
  canRead: (p) => {
    try {
      accessSync(p, constants.R_OK)
      return statSync(p).isFile() ? null : 'not a file'
    } catch (e) {
      return errnoOf(e)
    }
  },
  ownership: (p) => {
    const s = statSync(p)
    return { mode: s.mode, uid: s.uid }
  }
}

/**
 * Why a private key file's mode lets other users read it, or null: this user's own key with any
 * group or other bit, as OpenSSH refuses it ("UNPROTECTED PRIVATE KEY FILE"; it logs in to every
 * machine, root there through docker.sock). A key another user owns is that user's to guard (a
 * secret volume's root-owned 0644 file, root's key shared with the runner's group): refused, every
 * command of a working runner, cleanup_job included, would fail.
 */
export function keyModeProblem(mode: number, uid: number, me: number = process.getuid?.() ?? -1): string | null {
  if (uid !== me || !(mode & 0o077)) return null
  return `is readable by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 it (it logs in to the machines)`
}

/** Loads and validates the configuration named by REMOTE_HOOKS_CONFIG. Pure apart from the injected io. */
export function loadConfig(env: Record<string, string | undefined>, io: ConfigIo): Config {
  const path = env.REMOTE_HOOKS_CONFIG
  if (!path) throw new ConfigError(['REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'])
  // The hook's working folder is the job's workspace: a relative path would take the configuration
  // (hosts, keys, work root) from whatever the job checked out there.
  if (!isAbsolute(path))
    throw new ConfigError([
      `REMOTE_HOOKS_CONFIG: ${JSON.stringify(path.slice(0, 200))} is not an absolute path (a relative one would be read from the job's workspace)`
    ])
  let text: string
  try {
    text = io.readFile(path)
  } catch (e) {
    throw new ConfigError([`REMOTE_HOOKS_CONFIG: cannot read ${path} (${errnoOf(e)})`])
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
    const schemaIssues = describeIssues(parsed.error, '', { schema: ConfigSchema, data: raw ?? {} })
    const flagged = (field: string): boolean => schemaIssues.some((i) => i.startsWith(`${field}:`))
    throw new ConfigError([...schemaIssues, ...keyFileIssues(raw, io).filter((i) => !flagged(i.slice(0, i.indexOf(':'))))])
  }
  const cfg = parsed.data
  const rules = SECTIONS[cfg.provider.kind] as SectionRules<ProviderConfig>
  const issues: string[] = [...(rules.issues?.(cfg.provider, cfg) ?? [])]
  if (isHomeWorkRoot(cfg.remote.workRoot) && !rules.homeWorkRoot) {
    const kinds = Object.entries(SECTIONS as Record<string, SectionRules<ProviderConfig>>).filter(([, r]) => r.homeWorkRoot)
    issues.push(
      `remote.workRoot: ~/path (under each machine's home) is for provider.kind ${kinds.map(([k]) => k).join(' or ')} only; give an absolute path`
    )
  }
  const unreadable = keyFileIssues(cfg, io)
  issues.push(...unreadable)
  for (const k of keyFiles(cfg).filter((k) => k.privateKey && !unreadable.some((u) => u.startsWith(`${k.field}:`)))) {
    let why: string | null
    try {
      why = privateKeyProblem(io.readFile(k.path))
    } catch (e) {
      why = `cannot be read (${errnoOf(e)})`
    }
    if (!why && io.ownership) {
      try {
        const o = io.ownership(k.path)
        why = keyModeProblem(o.mode, o.uid)
      } catch (e) {
        why = `cannot be read (${errnoOf(e)})`
      }
    }
    if (why) issues.push(`${k.field}: ${k.path} ${why}`)
  }
  if (issues.length) throw new ConfigError(issues)
  return Object.freeze(cfg)
}

/** The runner-host key files a config names (works on unvalidated input too): field, path, and whether it is a private key. */
function keyFiles(raw: unknown): KeyFile[] {
  const provider = (raw as { provider?: Record<string, unknown> } | null)?.provider
  const kind = provider?.kind
  if (typeof kind !== 'string' || !Object.hasOwn(SECTIONS, kind)) return []
  const named =
    (SECTIONS[kind as ProviderConfig['kind']] as SectionRules<ProviderConfig>).keyFiles?.(provider as Record<string, unknown>) ?? []
  return named.filter((k) => typeof k.path === 'string' && isAbsolute(k.path)) as KeyFile[]
}

/** Key files that are named by an absolute path but cannot be read. */
function keyFileIssues(raw: unknown, io: ConfigIo): string[] {
  return keyFiles(raw).flatMap((k) => {
    const why = io.canRead(k.path)
    return why ? [`${k.field}: cannot read ${k.path} (${why})`] : []
  })
}

/** Why a key file's text is not a private key ssh2 can log in with, or null when it is. */
export function privateKeyProblem(text: string): string | null {
  // Loaded here, not at the top: commands that never read a key file must not pay for ssh2.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { utils } = require('ssh2') as typeof import('ssh2')
  let parsed
  try {
    parsed = utils.parseKey(text)
  } catch (e) {
    parsed = e as Error
  }
  if (parsed instanceof Error) {
    return /encrypted|passphrase/i.test(parsed.message)
      ? 'is an encrypted private key (the hook needs one without a passphrase)'
      : `is not a usable private key (${parsed.message.split('\n')[0]})`
  }
  const key = (Array.isArray(parsed) ? parsed[0] : parsed) as { isPrivateKey(): boolean } | undefined
  if (!key || !key.isPrivateKey()) return 'is not a private key'
  return null
}
