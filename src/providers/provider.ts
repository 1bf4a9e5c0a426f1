// The seam providers plug into: get a machine for a job, give it back, and find what lost jobs of
// this runner hold. Types only: providers/factory.ts holds one line per provider kind.
import type { z } from 'zod'
import type { Log } from '../log'
import type { RunnerEnv } from '../runner-env'
import type { ConnectInfo, Remote } from '../remote/remote'
import type { AgentKeep } from '../remote/agent'
import type { FleetGate } from '../fleet/gate'
import type { LossCause } from '../fleet/ledger'
import type { RunnerHost } from '../runner-host'
import type { WorkerProcess } from '../worker-process'

export type { AgentKeep }

/** What every lease has; each provider adds its own fields under its own `kind`. */
export interface LeaseBase<K extends string = string> {
  kind: K
  connect: ConnectInfo
  /** The fleet ledger reservation the machine was launched (or started) under, when the job made one. */
  reservation?: string
}

/** The runner as providers see it: read by the hook, never by a provider (so a test can be any runner). */
export type RunnerFacts = Pick<RunnerEnv, 'runnerName' | 'github'> & {
  /** This runner host: its hostname (EC2's tag) and its key (the leases it writes on machines). */
  host: RunnerHost
  /** The runner's worker process, which a lease outlives only by its ttl; null when unknown. */
  worker: WorkerProcess | null
}

/**
 * The handler's scrub of a machine another job will use next (containers, networks, volumes, images a
 * job made, job folders, the SSH user's processes and temp files; not the image cache), for a provider
 * that reuses machines to run while it still holds the lease. Throws when the machine is not clean,
 * or when `signal` (the job's cancel, before a job uses the machine) fires: the machine is then not clean.
 */
export type Scrub = (remote: Remote, machine: string, signal?: AbortSignal) => Promise<void>

/** What a provider may use of the hook: no handler context, no config beyond its own section. */
export interface ProviderEnv {
  log: Pick<Log, 'progress' | 'warn' | 'debug'>
  signal: AbortSignal
  /** Runner facts providers record on what they create (EC2 tags, lease records). */
  runner: RunnerFacts
  /** Opens a connection to a machine; the caller closes it or hands it to `discard`. */
  connect: (c: ConnectInfo) => Promise<Remote>
  /** Closes a connection the provider opened but does not keep. */
  discard: (c: ConnectInfo, r: Remote) => Promise<void>
  /** The fleet ledger: reserve before every launch, attach, settle at release (opened on first use). */
  fleet: FleetGate
  scrub: Scrub
}

/** What became of a machine a step lost: the step log's line, and the cause the fleet ledger records. */
export interface LostMachine {
  says: string
  cause: LossCause
}

/** What a provider may use to find out why a machine was lost: the step has already failed. */
export type LossEnv = Pick<ProviderEnv, 'log' | 'signal'>

export interface JobRef {
  jobId: string
  owner: string
  /** The job's local 0700 folder: per-job keys and known_hosts live there. */
  localDir: string
}

export interface Acquired<L extends LeaseBase = LeaseBase> {
  lease: L
  remote: Remote
  /** The provider's own phases in ms (e.g. acquire, boot, ssh), for the job's timings line and record. */
  timings?: Record<string, number>
  /** The named pool the machine came from (a pool provider's group), for the job's record. */
  pool?: string
}

/** What cleanup without state did, machine by machine. */
export interface OrphanReport {
  /** Leases given back or machines destroyed, e.g. `vm1:22 slot 2`, `i-0abc…`. */
  released: string[]
  /** Machines that were found but could not be reached or released, with the reason. */
  unreachable: { machine: string; reason: string }[]
}

/** The handler's tidy-up of one machine (containers, job folders), run before its leases go. */
export type Tidy = (remote: Remote, machine: string) => Promise<void>

export interface VmProvider<L extends LeaseBase = LeaseBase> {
  readonly kind: L['kind']
  /** Gets a machine for the job and an open connection to it; owner marks are set at creation. */
  acquire(job: JobRef, env: ProviderEnv): Promise<Acquired<L>>
  /** Gives the machine back. Idempotent: an unknown or already released lease is fine. */
  release(lease: L, remote: Remote | null, jobId: string, env: ProviderEnv): Promise<void>
  /** The lease for the step log, e.g. `vm1:22 slot 1`. */
  describe(lease: L): string
  /** What the job's agent must do to keep this lease (renew it), if anything. */
  keeper?(lease: L): AgentKeep | null
  /**
   * After a step lost its connection to the machine: what became of the machine, in the provider's
   * words (e.g. terminated by a Spot interruption), or null when the provider cannot tell.
   */
  whyLost?(lease: L, env: LossEnv): Promise<LostMachine | null>
  /** Whether releasing the machine also destroys everything on it (no need to tidy it first). */
  readonly releaseDestroys: boolean
  /**
   * Cleanup without state: on every machine this runner may hold, `tidy` runs first (unless
   * releasing destroys the machine), then what the runner holds there is released.
   */
  cleanupOrphans(owner: string, env: ProviderEnv, tidy: Tidy): Promise<OrphanReport>
}

/** How a kind's lease is kept in the runner's state: beside the connect fields, under `kind`. */
export interface LeaseRules<C, L extends LeaseBase> {
  /** The lease's own fields as stored (the connect fields and `kind` are added by state.ts). */
  fields: z.ZodRawShape
  /** Problems of a stored lease against today's config: [field under `host`, why]. */
  issues(lease: L, cfg: C, localDir: string): [string, string][]
  /**
   * For a stored lease refused by `issues` (unchecked, as the runner sent it): the region that
   * reaches its machine when today's config cannot (provider.region as it was when an EC2 instance
   * was launched), for a cleanup without state there; null when there is none.
   */
  elsewhere?(host: Readonly<Record<string, unknown>>, cfg: C): { region: string } | null
  /**
   * The machine's own id where machines may share one Docker Engine (a pool's members) or are told
   * apart by one (EC2 instances): the value of the machine label on every object the job makes, and
   * the job record's machine. Without it, a machine is named by its address.
   */
  machine?(lease: Omit<L, 'connect'>): string
  /** The work root on the machine when the lease carries its own (a pool member's, resolved there); else remote.workRoot. */
  workRoot?(lease: Omit<L, 'connect'>): string
}

/** One provider kind: what the factory lists. */
export interface ProviderKind<C, L extends LeaseBase> {
  create(cfg: C, workRoot: string): VmProvider<L>
  /** Its config section in a few words, for `check-config` (e.g. `2 hosts`, `region eu-west-1`). */
  summary(cfg: C): string
  lease: LeaseRules<C, L>
}
