// What the operator commands do for each provider kind: one line per kind, as providers/factory.ts
// has for the hook. A kind missing here fails the type check, so a new provider cannot fall into
// another kind's checks or reap pass.
import type { Config } from '../config'
import type { MachineOptions } from './doctor-machine'
import type { CheckResult } from './output'
import type { Problem } from './problem'
import type { ReapContext } from './reap-context'
import { hostsKnownHostsProblems, rawHostsKnownHostsProblems } from './known-hosts-check'
import { launchedScope } from '../providers/ec2-plan'

type ProviderConfig = Config['provider']
type ConfigOf<K extends ProviderConfig['kind']> = Extract<ProviderConfig, { kind: K }>

/** What doctor knows of the runner it checks for. */
export interface DoctorEnv {
  runnerName: string
  /** The runner's RUNNER_TEMP when doctor runs as the runner, else undefined. */
  runnerTemp: string | undefined
  machine: MachineOptions
}

export interface KindOps<C> {
  /** Every job gets a new machine (no job's leftovers, such as a replaced rsync, meet a later job). */
  machinePerJob?: boolean
  /** Jobs fail without their agent (it renews the machine's lease): a TMPDIR too long for its socket fails them all. */
  agentRequired?: boolean
  /** doctor's checks of the kind's machines and cloud account (read-only). */
  doctor(p: C, config: Config, env: DoctorEnv): Promise<CheckResult[]>
  /** One reap pass over what the kind's dead jobs left, and the ledger's open reservations. */
  reap(p: C, config: Config, ctx: ReapContext): Promise<void>
  /**
   * What that pass looks at, for the name of its marks' file: what names the machines, never a
   * setting (a changed default, or a changed ttl, would start every mark and watch again).
   */
  reapScope(p: C, config: Config): string
  /** Problems of a valid section that need the files it names (no network). */
  fileProblems?(p: C): Problem[]
  /** The same, of a section the schema refused for something else (`found`: what it refused). */
  rawFileProblems?(provider: Readonly<Record<string, unknown>>, found: Problem[]): Problem[]
}

const OPS = {
  static: {
    doctor: async (p, config, env) => (await import('./doctor-machine')).hostsChecks(p, config, env.machine),
    reap: async (p, config, ctx) => (await import('./reap-static')).reapStaticPass(p, config, ctx),
    reapScope: (p, config) =>
      `static ${config.remote.workRoot} ${p.hosts
        .map((h) => `${h.host}:${h.port}`)
        .sort()
        .join(' ')}`,
    fileProblems: hostsKnownHostsProblems,
    rawFileProblems: rawHostsKnownHostsProblems
  },
  ec2: {
    machinePerJob: true,
    doctor: async (p, _config, env) =>
      (await import('./doctor-aws')).ec2Doctor(p, env.runnerName, env.runnerTemp, env.machine.maxSkewSeconds),
    reap: async (p, _config, ctx) => (await import('./reap-ec2')).reapEc2Pass(p, ctx),
    reapScope: (p) => `ec2 ${p.region} ${p.endpoint ?? ''} ${JSON.stringify(launchedScope(p.tags))}`
  },
  'ec2-pool': {
    agentRequired: true,
    doctor: async (p, config, env) => (await import('./doctor-aws')).poolDoctor(p, config, env.machine),
    reap: async (p, config, ctx) => (await import('./reap-pool')).reapPoolPass(p, config, ctx),
    reapScope: (p) => `ec2-pool ${p.region} ${p.endpoint ?? ''} ${p.autoScalingGroup}`
  }
} satisfies { [K in ProviderConfig['kind']]: KindOps<ConfigOf<K>> }

/** The operator commands' code for the configured kind. */
export function opsFor(p: ProviderConfig): KindOps<ProviderConfig> {
  return OPS[p.kind]
}

/** The same for a provider section not validated yet, or null when its kind is none of the known. */
export function rawOpsFor(kind: unknown): KindOps<ProviderConfig> | null {
  return typeof kind === 'string' && Object.hasOwn(OPS, kind) ? OPS[kind as keyof typeof OPS] : null
}
