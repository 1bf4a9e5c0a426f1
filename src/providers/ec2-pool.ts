// Warm VMs leased from an EC2 Auto Scaling group. Membership comes from one DescribeInstances; the
// lease itself is an atomic record on the member (pool-lease.ts), renewed by the job's agent while
// the runner's worker lives; trust comes from the host key each member publishes once, in a tag only
// it may write (pinned per lease). Release scrubs the member (the handler's scrub, docker/machine-scrub.ts) or, when it is worn out
// or unhealthy, has the group replace it. Every member a hook adds (scale-out) or starts is
// reserved in the fleet ledger first (pool-fleet.ts) and settled when it is replaced (with the
// desired capacity lowered); reap moves the reservation of one the group replaced on its own.
import { randomBytes } from 'node:crypto'
import { renameSync } from 'node:fs'
import { z } from 'zod'
import type * as Asg from '@aws-sdk/client-auto-scaling'
import type { Ec2PoolConfig } from '../config'
import { Cancelled, HookError, RemoteCommandError, TransportError } from '../errors'
import { FleetRefused, type LaunchSpec } from '../fleet/gate'
import { EC2_INSTANCE_ID, isHostName, isUserName, isWorkRoot } from '../input-rules'
import { runnerHostId } from '../labels'
import { writePrivateFile } from '../private-fs'
import { retry, unlessCancelled, waitUntil } from '../retry'
import { bootMs, monoMs } from '../mono-clock'
import { ask, oneWord } from '../remote/answer'
import type { ConnectInfo, Remote } from '../remote/remote'
import type { WorkerProcess } from '../worker-process'
import { keepAlive, type LeaseState } from '../remote/agent'
import { awsErrorName, autoScalingClient, ec2Client, isRetryableAwsError, lostAnswers, watchAwsClock } from './ec2-api'
import { instanceVcpus } from './ec2-vcpus'
import { knownHostsName, TAG_RESERVATION } from './ec2-plan'
import { claimable, groupTypes, launchSpecOf, templateType, type PendingClaim } from './pool-fleet'
import {
  acquireScript,
  leaveScript,
  parseAcquire,
  releaseScript,
  renewScript,
  takeOverScript,
  type AcquireAnswer,
  type ReleaseAs,
  type Waiter
} from './pool-lease'
import {
  describePool,
  membersOf,
  scaleOutTo,
  shuffled,
  lifecyclesIn,
  type GroupRow,
  TAG_GROUP,
  TAG_JOBS,
  leasedForOneJob,
  SERVED_ONE_JOB,
  TAG_RECYCLE,
  viewOf,
  wornOut,
  type Capacity,
  type Member,
  type PoolView
} from './pool-plan'
import type {
  Acquired,
  AgentKeep,
  JobRef,
  LeaseBase,
  LossEnv,
  LostMachine,
  OrphanReport,
  ProviderEnv,
  ProviderKind,
  Tidy,
  VmProvider
} from './provider'
import { instanceFate, lostMachineOf } from './instance-fate'
import { asCleanup, leaseRegion } from './ec2'

export interface PoolLease extends LeaseBase<'ec2-pool'> {
  instanceId: string
  /** Who holds the member's lease record (random, per job). */
  token: string
  /** The runner's worker process: the lease is renewed while it lives. */
  worker: WorkerProcess | null
  /** remote.workRoot as it is on this member (a ~/path resolved). */
  workRoot: string
  /** provider.region when leased: the member's replacement and tags go there. Absent in an older build's state. */
  region?: string
}

/** A waiter re-reads the pool (and tries every member) this often; in between it polls its queue. */
const RESCAN_MS = 10_000
const POLL_MS = 1_000
/** One lease operation on a member: a member that does not answer by then is skipped (a job may have jammed it). */
const ASK_MS = 30_000
/** A member's line, as last seen, is trusted this long before the member is asked again. */
const LINE_FRESH_MS = 30_000
/** The start of a member's replacement reason when its Docker did not answer. */
const DOCKER_DOWN = 'Docker does not answer'
/** New members a scale-out reservation tries to claim in one pass before it waits for the next. */
const CLAIM_TRIES = 3
/**
 * A member that did not answer (refused, timed out) is tried again after this pause, doubled at each
 * failure up to the last: one started from stopped is running in EC2 before its sshd listens.
 */
const UNREACHABLE_PAUSE_MS = [1_000, 30_000] as const

/** What grow() did: the group's capacity when read, and the ledger's refusal when it refused (undefined: not asked). */
interface Growth {
  cap: Capacity | null
  refused?: string | null
}

interface Conn {
  member: Member
  connect: ConnectInfo
  remote: Remote
}

export class Ec2PoolProvider implements VmProvider<PoolLease> {
  readonly kind = 'ec2-pool'
  readonly releaseDestroys = false
  /** The group as last described, and what one more member is reserved as (read once per hook run). */
  private group: Asg.AutoScalingGroup | null = null
  /**
   * AWS's clock against this host's, from the Date of EC2's last answer: a member's age is EC2's
   * launch time against AWS's clock, as reap judges it (a runner host minutes behind would lease
   * members past reuse.maxVmAgeMinutes, and reap replace them under their jobs).
   */
  private awsOffsetMs = 0
  private awsNow(): number {
    return Date.now() + this.awsOffsetMs
  }
  private spec: LaunchSpec | null = null
  /** Scale-out reservations of this run whose member is not claimed yet. */
  private readonly pending: PendingClaim[] = []
  constructor(
    private readonly cfg: Ec2PoolConfig,
    private readonly workRoot: string
  ) {}

  describe(l: PoolLease): string {
    return `${l.connect.host}:${l.connect.port} (${l.instanceId} of pool ${this.cfg.autoScalingGroup})`
  }

  keeper(l: PoolLease): AgentKeep {
    return {
      command: renewScript(this.workRoot, l.token, this.cfg.lease.ttlSeconds),
      everyMs: Math.floor((this.cfg.lease.ttlSeconds * 1000) / 3),
      ttlMs: this.cfg.lease.ttlSeconds * 1000,
      renewedAt: this.renewals.get(l.token),
      worker: l.worker
    }
  }

  /**
   * When this process last sent a lease's grant or renewal (bootMs), by token: the job's agent,
   * started after the acquire's last AWS calls and its own connect, counts the lease from then.
   * Not in the stored lease: an agent a later hook starts has no such time (it waits for a renewal).
   */
  private readonly renewals = new Map<string, number>()

  /** `failed`: told each failed attempt (whether a write may have been carried out, requestOutcome). */
  private send<T>(
    env: Pick<ProviderEnv, 'signal' | 'log'>,
    what: string,
    fn: () => Promise<T>,
    deadlineMs = 60_000,
    failed?: (e: unknown) => void
  ): Promise<T> {
    const attempt = failed
      ? () =>
          fn().catch((e: unknown) => {
            failed(e)
            throw e
          })
      : fn
    return retry(attempt, {
      attempts: 6,
      minDelayMs: 300,
      maxDelayMs: 4000,
      deadlineMs,
      signal: env.signal,
      retryable: isRetryableAwsError,
      onRetry: (e) => env.log.debug(`${what}: ${awsErrorName(e)}, retrying`)
    })
  }

  private async members(env: Pick<ProviderEnv, 'signal' | 'log'>, ids?: string[]): Promise<Member[]> {
    const { sdk, client } = await ec2Client(this.cfg)
    watchAwsClock(client, (ms) => void (this.awsOffsetMs = ms))
    const res = await this.send(env, 'DescribeInstances', () =>
      client.send(
        new sdk.DescribeInstancesCommand({
          ...(ids ? { InstanceIds: ids } : {}),
          Filters: [
            { Name: `tag:${TAG_GROUP}`, Values: [this.cfg.autoScalingGroup] },
            { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }
          ]
        })
      )
    )
    return membersOf(res, this.cfg)
  }

  private async capacity(env: ProviderEnv): Promise<Capacity> {
    const { sdk, client } = autoScalingClient(this.cfg)
    const res = await this.send(env, 'DescribeAutoScalingGroups', () =>
      client.send(new sdk.DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [this.cfg.autoScalingGroup] }))
    )
    const g = res.AutoScalingGroups?.[0]
    if (!g) throw new HookError(`provider.autoScalingGroup: no Auto Scaling group named ${this.cfg.autoScalingGroup} in ${this.cfg.region}`)
    this.group = g
    return { desired: g.DesiredCapacity ?? 0, max: g.MaxSize ?? 0 }
  }

  /** The member's pinned host key in a known_hosts file of the job's own folder, and how to reach it. */
  private connectInfo(m: Member, localDir: string, file = `known_hosts-${m.id}`): ConnectInfo {
    const address = m.address as { host: string; port: number }
    const knownHostsFile = `${localDir}/${file}`
    writePrivateFile(knownHostsFile, `${knownHostsName(address.host, address.port)} ${m.hostKey}\n`)
    return { ...address, user: m.user as string, identityFile: this.cfg.identityFile, knownHostsFile }
  }

  async acquire(job: JobRef, env: ProviderEnv): Promise<Acquired<PoolLease>> {
    const cfg = this.cfg
    const started = Date.now()
    const me: Waiter = { token: randomBytes(16).toString('hex'), since: started }
    const conns = new Map<string, Conn>()
    /** Members that failed this job, with why: not tried again by it, except those in `retryAt`. */
    const failed = new Map<string, string>()
    /** Members that did not answer: tried again from `at` (a member just started has no sshd yet). */
    const retryAt = new Map<string, { at: number; pauseMs: number }>()
    /** Lease calls ended by a signal, by member (see attempt). */
    const kills = new Map<string, number>()
    let members: Member[] = []
    let view: PoolView = viewOf([])
    let scannedAt = -Infinity
    let busy = 0
    let queuedAt: { id: string; ahead: number } | null = null
    let cap: Capacity | null = null
    /** The fleet ledger's last refusal of a member for this pool (cleared when it reserves one). */
    let refused: string | null = null
    /** Why the last attempt to add capacity failed (cleared when one succeeds). */
    let growFailed: unknown = null
    const state = (): string =>
      `${describePool(cfg.autoScalingGroup, view, busy, cap, cfg.scaleOut.enabled)}${refused ? `; scale-out refused: ${refused}` : ''}`
    let lastStart = -Infinity
    let won: Acquired<PoolLease> | null = null

    const conn = async (m: Member): Promise<Conn> => {
      const have = conns.get(m.id)
      if (have) return have
      const connect = this.connectInfo(m, job.localDir)
      const c = { member: m, connect, remote: await env.connect(connect) }
      conns.set(m.id, c)
      return c
    }
    const drop = async (id: string, why: string): Promise<void> => {
      failed.set(id, why)
      const c = conns.get(id)
      conns.delete(id)
      if (c) await env.discard(c.connect, c.remote).catch(() => undefined)
      if (queuedAt?.id === id) queuedAt = null
    }
    /** One lease attempt on one member; null when it was not granted (or could not be used). */
    const attempt = async (m: Member, queue: boolean): Promise<AcquireAnswer | null> => {
      let c: Conn | null = null
      let a: AcquireAnswer
      // Nothing more is asked once the job is cancelled: a pass over the pool goes on between its
      // waits, and a member granted now would be held (and scrubbed) for a job that is over.
      if (env.signal.aborted) throw Cancelled.by(env.signal)
      try {
        c = await conn(m)
        // A connect that came in after the cancel: no lease call is sent.
        if (env.signal.aborted) throw Cancelled.by(env.signal)
        this.renewals.set(me.token, bootMs())
        // It answers now: what it failed with before (not answering) is no longer its reason.
        failed.delete(m.id)
        retryAt.delete(m.id)
        a = parseAcquire(
          await ask(
            c.remote,
            acquireScript(this.workRoot, {
              ...me,
              ttlSeconds: cfg.lease.ttlSeconds,
              queue,
              owner: job.owner,
              jobId: job.jobId,
              host: env.runner.host.key
            }),
            {
              label: `lease ${m.id}`,
              timeoutMs: ASK_MS
            }
          ),
          `lease ${m.id}`
        )
      } catch (e) {
        // A connect failure on this side (the job's agent could not be started, a folder is not
        // private, provider.identityFile unusable) is no member's: every member would fail alike,
        // and waiting does not mend it.
        if (!c && (!(e instanceof TransportError) || e.kind === 'keyfile')) throw e
        if (env.signal.aborted) throw e
        const why = (e as Error).message
        // Said once per reason: an unreachable member is tried again, and fails alike until it answers.
        if (failed.get(m.id) !== why) env.log.warn(`pool member ${m.id}: ${why}; trying the others`)
        await drop(m.id, why)
        const prev = retryAt.get(m.id)
        // A lease call ended by a signal says nothing of the member: the scrub of the job releasing
        // it may end the SSH user's processes (it spares lease calls; an older hook's does not).
        // Three times at most: a job root on the member can end waiters' calls on purpose.
        let killed = false
        if (c !== null && e instanceof RemoteCommandError && e.exitCode === null) {
          const n = (kills.get(m.id) ?? 0) + 1
          kills.set(m.id, n)
          killed = n <= 3
        }
        if ((!c && e instanceof TransportError && (e.kind === 'network' || e.kind === 'timeout')) || killed) {
          const pauseMs = prev ? Math.min(prev.pauseMs * 2, UNREACHABLE_PAUSE_MS[1]) : UNREACHABLE_PAUSE_MS[0]
          retryAt.set(m.id, { at: monoMs() + pauseMs, pauseMs })
        } else retryAt.delete(m.id)
        return null
      }
      if (!a.granted) return a
      let lease: PoolLease | string | { lost: string }
      try {
        lease = await this.usable(c, a, job, me.token, env)
      } catch (e) {
        // Granted, then not made ready (a cancel, an EC2 call that failed): given back, to be
        // scrubbed by whoever takes it next, rather than held by nobody until its lease lapses.
        const granted = { instanceId: m.id, token: me.token } as PoolLease
        // Its protection may have gone through (usable() waits for the call): lifted while still ours.
        await asCleanup(env.signal, (signal) => this.lift(m.id, { ...env, signal }))
        await this.give(c.remote, granted, { as: 'dirty' }).catch((g: unknown) =>
          env.log.warn(`could not give ${m.id} back (its lease lapses after ${cfg.lease.ttlSeconds} s): ${(g as Error).message}`)
        )
        throw e
      }
      if (typeof lease === 'object' && 'lost' in lease) {
        env.log.warn(`${lease.lost}; trying the others`)
        await drop(m.id, lease.lost)
        return null
      }
      if (typeof lease === 'string') {
        await drop(m.id, `replaced: ${lease}`)
        retryAt.delete(m.id)
        // Two members whose Docker fails alike point at the pool (its image, the SSH user's access to
        // Docker), not at what a job did to one member: their replacements would fail alike too.
        const alike = [...failed].filter(([, why]) => why === `replaced: ${lease}`).map(([id]) => id)
        if (lease.startsWith(DOCKER_DOWN) && alike.length >= 2)
          throw new HookError(
            `pool ${cfg.autoScalingGroup}: members ${alike.join(' and ')} both failed the Docker check alike (${lease}) and were replaced; the pool's image or its SSH user's access to Docker is likely wrong, so this job stops here`
          )
        return null
      }
      won = { lease, remote: c.remote, pool: this.cfg.autoScalingGroup }
      return a
    }

    /** Each member's line as this job last saw it: a member with one is asked again only after LINE_FRESH_MS. */
    const lines = new Map<string, { n: number; at: number }>()
    let polledAt = 0
    const probe = async (): Promise<Acquired<PoolLease> | undefined> => {
      const now = monoMs()
      if (!queuedAt || now - scannedAt >= RESCAN_MS) {
        scannedAt = now
        members = await this.members(env)
        view = viewOf(members, this.awsNow())
        if (this.pending.length) await this.claim(env, members)
        // A member no longer ready (marked for replacement, stopping) no longer holds this job's place.
        if (queuedAt && !view.ready.some((x) => x.id === queuedAt?.id)) queuedAt = null
        // A waiter only asks members that may grant it: new ones and ones nobody waits at (a member
        // with a line serves that line first). The line it is in is polled below.
        const ask = view.ready.filter((x) => {
          const l = lines.get(x.id)
          const again = !failed.has(x.id) || (retryAt.get(x.id)?.at ?? Infinity) <= now
          return again && x.id !== queuedAt?.id && (!l || l.n === 0 || now - l.at >= LINE_FRESH_MS)
        })
        for (const m of shuffled(ask)) {
          const a = await attempt(m, false)
          if (won) return won
          if (a && !a.granted) lines.set(m.id, { n: a.state === 'retired' ? Infinity : a.waiting, at: monoMs() })
        }
        for (const id of lines.keys()) if (!view.ready.some((x) => x.id === id)) lines.delete(id)
        busy = view.ready.filter((x) => lines.has(x.id)).length
        if (!queuedAt) {
          // Queue at the member with the shortest line: the oldest waiter there is served first.
          const shortest = [...lines].filter(([, l]) => Number.isFinite(l.n)).sort((a, b) => a[1].n - b[1].n)[0]
          const m = shortest && view.ready.find((x) => x.id === shortest[0])
          if (m) {
            const a = await attempt(m, true)
            if (won) return won
            if (a && !a.granted) {
              queuedAt = { id: m.id, ahead: a.ahead }
              lines.set(m.id, { n: a.waiting + 1, at: monoMs() })
              polledAt = monoMs()
            }
          }
        }
        const waiting = [...lines.values()].filter((l) => Number.isFinite(l.n)).reduce((x, l) => x + l.n, 0) + (queuedAt ? 0 : 1)
        await this.grow(env, view, waiting, now - lastStart >= 30_000 ? () => (lastStart = now) : null).then(
          (g) => {
            growFailed = null
            cap = g.cap ?? cap
            if (g.refused !== undefined) refused = g.refused
          },
          (e: unknown) => {
            growFailed = e
            env.log.warn(`could not add capacity to pool ${cfg.autoScalingGroup}: ${(e as Error).message}`)
          }
        )
        // Fails at once only when no member exists and none can come (the group may not, or need not,
        // launch one; or the fleet ledger refuses it one).
        const none = !view.ready.length && !view.starting.length && !view.stopped.length && !view.leaving.length
        if (none && refused) throw new FleetRefused(refused)
        // Nor when none exists and adding one failed for a reason waiting does not mend (no such
        // group, access denied, the fleet ledger): throttling and server trouble are waited through.
        if (none && growFailed && !isRetryableAwsError(growFailed) && !env.signal.aborted)
          throw new HookError(
            `${describePool(cfg.autoScalingGroup, view, busy, cap, cfg.scaleOut.enabled)}: no member, and none can be added: ${(growFailed as Error).message}`,
            { cause: growFailed }
          )
        if (none && cap && (cap.max === 0 || (!cfg.scaleOut.enabled && cap.desired === 0)))
          throw new HookError(
            `${describePool(cfg.autoScalingGroup, view, busy, cap, cfg.scaleOut.enabled)}: no member can come (provider.autoScalingGroup)`
          )
        if (!queuedAt) return undefined
      }
      // Further back in the line, polled less often (every second at its head, at most every 5 s).
      const q = queuedAt as { id: string; ahead: number } | null
      if (!q || monoMs() - polledAt < Math.min(POLL_MS * (1 + q.ahead / 2), 5_000)) return undefined
      const m = members.find((x) => x.id === q.id)
      if (!m) return void (queuedAt = null)
      polledAt = monoMs()
      const a = await attempt(m, true)
      if (won) return won
      if (a && !a.granted && queuedAt) {
        queuedAt.ahead = a.ahead
        lines.set(m.id, { n: a.waiting + 1, at: monoMs() })
      }
      return undefined
    }

    const note = (): void => {
      const where = queuedAt ? `; ${queuedAt.ahead ? `${queuedAt.ahead} ahead of this job` : 'next'} at ${queuedAt.id}` : ''
      env.log.progress(`${state()}${where}, waiting ${Math.round((Date.now() - started) / 1000)} s`)
    }
    try {
      const got = await waitUntil(probe, {
        timeoutMs: cfg.waitTimeoutSeconds * 1000,
        minDelayMs: POLL_MS,
        maxDelayMs: POLL_MS,
        signal: env.signal,
        onRetry: (_e, attempt) => attempt === 1 && note(),
        progressEveryMs: 10_000,
        onProgress: note,
        // What each member failed this job with is the likelier cause than a busy pool: named.
        onTimeout: () =>
          new HookError(
            `${state()}: no member free after ${cfg.waitTimeoutSeconds} s (provider.waitTimeoutSeconds)` +
              (failed.size ? `; failed for this job: ${[...failed].map(([id, why]) => `${id}: ${why}`).join('; ')}` : '') +
              (growFailed ? `; could not add capacity: ${(growFailed as Error).message}` : '')
          )
      })
      env.log.progress(`leased ${this.describe(got.lease)} after ${((Date.now() - started) / 1000).toFixed(1)} s`)
      return got
    } finally {
      await this.claimLeft(env)
      const keep = (won as Acquired<PoolLease> | null)?.lease.instanceId
      const queued = (queuedAt as { id: string } | null)?.id
      for (const [id, c] of conns) {
        if (id === keep) continue
        if (queued === id)
          await ask(c.remote, leaveScript(this.workRoot, me.token), { label: 'leave the queue', timeoutMs: ASK_MS }).catch(() => undefined)
        await env.discard(c.connect, c.remote).catch(() => undefined)
      }
    }
  }

  /**
   * A granted member made ready for the job: scrubbed first if its last job did not give it back
   * clean; replaced instead when it is unhealthy, worn out or cannot be scrubbed (why, then).
   */
  private async usable(
    c: Conn,
    a: Extract<AcquireAnswer, { granted: true }>,
    job: JobRef,
    token: string,
    env: ProviderEnv
  ): Promise<PoolLease | string | { lost: string }> {
    const m = c.member
    const lease: PoolLease = {
      kind: 'ec2-pool',
      instanceId: m.id,
      token,
      worker: env.runner.worker,
      workRoot: a.workRoot,
      region: this.cfg.region,
      connect: { ...c.connect, knownHostsFile: `${job.localDir}/known_hosts` }
    }
    // Asked at once, beside the checks below; settled before anything is decided (a throw included),
    // so that no lift can overtake it.
    const protecting = this.protect(m.id, true, env)
    try {
      return await this.fitFor(c, a, lease, protecting, env)
    } catch (e) {
      await protecting
      throw e
    }
  }

  /** The rest of usable(): the lease, why the member is replaced instead, or that it is another job's now. */
  private async fitFor(
    c: Conn,
    a: Extract<AcquireAnswer, { granted: true }>,
    lease: PoolLease,
    protecting: Promise<unknown>,
    env: ProviderEnv
  ): Promise<PoolLease | string | { lost: string }> {
    const m = c.member
    // Renewed from the grant on: the checks, a scrub and the AWS calls may outlast the lease's ttl.
    const held: LeaseState = { lost: null, failing: null }
    const lostNow = (): { lost: string } => ({ lost: `${m.id} was lost while it was made ready: ${held.lost}` })
    let made: { why: string | null; fresh: Member }
    try {
      made = await this.renewing(
        c.remote,
        lease,
        env,
        async () => {
          // A member marked for replacement is never used, whatever its record says (a job there may have forged it).
          const fresh = this.cfg.reuse.maxJobsPerVm === 1 ? ((await this.members(env, [m.id]))[0] ?? m) : m
          // A lease that lapsed: its job's runner died before the release that counts a job, so that job
          // is counted here, before the member serves another (else it could serve one beyond maxJobsPerVm).
          const served = a.lapsed ? m.jobs + 1 : m.jobs
          let why: string | null = fresh.recycle
            ? `marked for replacement (${fresh.recycle})`
            : a.docker === null
              ? `${DOCKER_DOWN}: ${a.dockerError ?? 'no version'}`
              : a.diskPercent >= this.cfg.reuse.maxDiskPercent
                ? `disk ${a.diskPercent} % full (reuse.maxDiskPercent ${this.cfg.reuse.maxDiskPercent})`
                : wornOut(m, this.cfg, this.awsNow(), served)
          if (!why && a.lapsed) await this.recordJobs(m.id, served, env)
          if (!why && !a.clean) {
            env.log.progress(`${m.id}: ${a.lapsed ? 'its last lease lapsed' : 'not given back clean'}; scrubbing it before use`)
            // The job's cancel ends the scrub (the member is then given back not clean, not retired).
            why = await env.scrub(c.remote, m.id, env.signal).then(
              () => null,
              (e: unknown) => {
                if (env.signal.aborted) throw e
                return `its scrub failed: ${(e as Error).message}`
              }
            )
          }
          let refused = await protecting
          // Only a member in service can be protected. One the group is ending (a desired capacity lowered
          // under it, unprotected since its last job's release) is not used. One still coming into service
          // (started from Standby or a warm pool for a waiting job: its sshd answers before the group
          // counts it) is asked again until it is.
          if (!why && refused && awsErrorName(refused) === 'ValidationError' && !env.signal.aborted) {
            const state = await this.lifecycleOf(m.id, env)
            if (state === null || /^(Terminating|Detach)/.test(state)) why = `leaving its group (${state ?? 'no longer in it'})`
            else refused = await this.protectInService(m.id, env)
          }
          if (!why && refused && !env.signal.aborted)
            env.log.warn(
              `could not protect ${m.id} from scale-in while this job holds it (autoscaling:SetInstanceProtection): ${(refused as Error).message}; a lowered desired capacity of pool ${this.cfg.autoScalingGroup} may end it during the job`
            )
          return { why, fresh }
        },
        held
      )
    } catch (e) {
      // Lost first (then a cancel, a failed call): another job's, so not lifted or given back either;
      // the protection call settled first, so that it cannot land after the new holder's lift.
      if (!held.lost) throw e
      await protecting
      return lostNow()
    }
    const { why, fresh } = made
    // Another job's now: neither used nor given back (nor its protection lifted) by this one.
    if (held.lost) return lostNow()
    // Marked to go before the job runs, once the lease is known to be this job's: any later grant
    // replaces it (with one job per member), and reap believes no record of it then.
    if (!why && !env.signal.aborted && this.cfg.reuse.maxJobsPerVm === 1) {
      await this.renewing(c.remote, lease, env, () => this.tag(m.id, { [TAG_RECYCLE]: SERVED_ONE_JOB }, env), held).catch((e: unknown) => {
        if (held.lost) return
        throw e
      })
      if (held.lost) return lostNow()
    }
    if (why) {
      // Once it is given back as retired nobody leases it again: a cancel must not stop its
      // replacement half-way, or it would run, unused, until reap finds it too old.
      const reason = why
      await asCleanup(env.signal, (signal) => this.recycle(c.remote, lease, reason, { ...env, signal }, fresh.reservation))
      return reason
    }
    // Made ready after the cancel (a scrub or an EC2 call that heeds none): given back, not used.
    if (env.signal.aborted) throw Cancelled.by(env.signal)
    renameSync(c.connect.knownHostsFile, lease.connect.knownHostsFile)
    return lease
  }

  /**
   * Scale-in protection while a job holds the member. The desired capacity is set absolutely (by
   * hooks on other runner hosts too, each from its own reading): one lowered meanwhile makes the
   * group end members, the oldest first, and it must end idle ones, never one running a job.
   * Resolves to the call's error (null when it went through); never rejects: each caller words
   * what a failure means for it.
   */
  async protect(id: string, on: boolean, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<unknown> {
    const { sdk, client } = autoScalingClient(this.cfg)
    try {
      await this.send(env, 'SetInstanceProtection', () =>
        client.send(
          new sdk.SetInstanceProtectionCommand({
            AutoScalingGroupName: this.cfg.autoScalingGroup,
            InstanceIds: [id],
            ProtectedFromScaleIn: on
          })
        )
      )
      return null
    } catch (e) {
      return e
    } finally {
      client.destroy()
    }
  }

  /** How long a member still coming into service is asked again for its protection. */
  protected inServiceWaitMs = 60_000

  /** The protection asked for until the member is in service (or the wait ends); the last refusal, or null. */
  private async protectInService(id: string, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<unknown> {
    let last: unknown = null
    await waitUntil(
      async () => {
        last = await this.protect(id, true, env)
        return last && awsErrorName(last) === 'ValidationError' ? undefined : true
      },
      {
        timeoutMs: this.inServiceWaitMs,
        minDelayMs: 1_000,
        maxDelayMs: 3_000,
        signal: env.signal,
        onTimeout: () => new Error('not in service yet')
      }
    ).catch(() => undefined)
    return last
  }

  /** The member's lifecycle state in this group (null: not in it); 'unknown' when it cannot be read. */
  private async lifecycleOf(id: string, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<string | null> {
    const states = await this.lifecycles(env, [id]).catch(() => null)
    return states ? (states.get(id)?.state ?? null) : 'unknown'
  }

  /** The protection lifted while this job's lease still stands (so it is never the next job's); a failure warned about. */
  private async lift(id: string, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<void> {
    const e = await this.protect(id, false, env)
    // Not in service (leaving, or not yet there): the group's scale-in does not look at it anyway.
    if (e && awsErrorName(e) === 'ValidationError') env.log.debug(`${id}: no scale-in protection to lift: ${(e as Error).message}`)
    else if (e)
      env.log.warn(
        `could not lift the scale-in protection of ${id} (autoscaling:SetInstanceProtection): ${(e as Error).message}; the group cannot end it to scale in until a later job gives it back`
      )
  }

  /**
   * The protection of a member whose lease `l` holds lifted, the lease renewed meanwhile (the call
   * may outlast its ttl), so that it is never another job's: reap's lift of a free member. Resolves
   * to the call's error, or null; never rejects.
   */
  liftHeld(l: PoolLease, remote: Remote, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<unknown> {
    return this.renewing(remote, l, env, () => this.protect(l.instanceId, false, env))
  }

  /** The member's job count (its tag); a failure is warned about, not fatal. */
  private recordJobs(id: string, jobs: number, env: Pick<ProviderEnv, 'log' | 'signal'>): Promise<void> {
    return this.tag(id, { [TAG_JOBS]: String(jobs) }, env).catch((e: unknown) =>
      env.log.warn(`could not record the job count of ${id}: ${(e as Error).message}`)
    )
  }

  /**
   * Runs `work` while the lease is renewed (a scrub may outlast the lease's ttl). Given `held`, the
   * first renewal's answer is waited for too (it went out as `work` began), and `held` tells
   * whether the lease was lost meanwhile (refused, or lapsed).
   */
  private async renewing<T>(
    remote: Remote,
    l: PoolLease,
    env: Pick<ProviderEnv, 'log'> & { signal?: AbortSignal },
    work: () => Promise<T>,
    held?: LeaseState
  ): Promise<T> {
    const state = held ?? { lost: null, failing: null }
    const timer = keepAlive(
      { ...this.keeper(l), worker: null },
      remote,
      (m) => env.log.warn(`${l.instanceId}: ${m}`),
      () => undefined,
      state
    )
    try {
      const done = await work()
      // A cancel ends the wait (an unanswering member holds a try for half a period); the caller
      // acts on the cancel as on any other (a member to replace is still replaced).
      if (held) await (env.signal ? unlessCancelled(timer.first, env.signal).catch(() => undefined) : timer.first)
      state.check?.()
      return done
    } finally {
      timer.stop()
      this.renewals.set(l.token, timer.renewedAt())
    }
  }

  /**
   * Marks the member retired (never leased again), tags why, and has the group replace it. A member
   * a hook reserved is ended with the group's desired capacity lowered by one (where its minimum
   * allows), so what replaces it is reserved by whoever asks for it; its reservation is settled.
   */
  private async recycle(
    remote: Remote,
    l: PoolLease,
    why: string,
    env: ProviderEnv,
    reservation: string | null,
    /** The member was leased for one job (leasedForOneJob): no other job may hold it. */
    oneJob = false
  ): Promise<void> {
    env.log.progress(`${l.instanceId} is replaced: ${why}`)
    const gave = await this.give(remote, l, { as: 'retired', reason: why }).catch((e: unknown) => (e as Error).message)
    await this.tag(l.instanceId, { [TAG_RECYCLE]: why.slice(0, 250) }, env).catch((e: unknown) =>
      env.log.warn(`could not tag ${l.instanceId} for replacement: ${(e as Error).message}`)
    )
    // Ended only while this job still holds it: another job may hold it now (ours lapsed). The tag keeps
    // anyone new away; whoever holds it replaces it at its release. One leased for one job no other
    // job may use (a grant finds its recycle tag, and replaces it): a record naming another holder
    // is this job's own doing (root there), which would keep the member running, protected and
    // counted in the pool until reap finds it older than any job (days).
    if (gave !== 'released') {
      if (!oneJob) return env.log.warn(`${l.instanceId} is marked for replacement, and left to its holder (${gave})`)
      env.log.warn(`${l.instanceId} is no longer this job's (${gave}), but it was leased for one job and no other may use it: it is ended`)
    }
    // Protection guards against the group's own scale-in, not this terminate; lifted first all the
    // same (a failure only noted), so that no reading of AWS's rules keeps the member running.
    const kept = await this.protect(l.instanceId, false, env)
    if (kept) env.log.debug(`${l.instanceId}: scale-in protection not lifted before its terminate: ${(kept as Error).message}`)
    const { sdk, client } = autoScalingClient(this.cfg)
    const terminate = (decrement: boolean): Promise<unknown> =>
      this.send(env, 'TerminateInstanceInAutoScalingGroup', () =>
        client.send(
          new sdk.TerminateInstanceInAutoScalingGroupCommand({ InstanceId: l.instanceId, ShouldDecrementDesiredCapacity: decrement })
        )
      )
    // A lowered capacity the group's minimum refuses: replaced as one of the members it keeps.
    await (
      reservation
        ? terminate(true).catch((e: unknown) => (awsErrorName(e) === 'ValidationError' ? terminate(false) : Promise.reject(e)))
        : terminate(false)
    ).catch((e: unknown) => {
      // Not (or no longer) in the group: gone already, which is what we wanted.
      if (awsErrorName(e) !== 'ValidationError') throw e
    })
    if (reservation) await this.settle(env, reservation, l.instanceId)
  }

  /** Settles the member's reservation at its end (`endedAt`, default now); one this runner host's ledger does not know is left to reap. */
  private async settle(env: ProviderEnv, reservation: string, instanceId: string, launched = true, endedAt?: number): Promise<void> {
    await env.fleet.settle(reservation, !launched ? { launched: false } : endedAt === undefined ? {} : { endedAt }).then(
      () => env.log.debug(`fleet reservation ${reservation} of ${instanceId} settled`),
      (e: unknown) =>
        env.log.warn(`could not settle fleet reservation ${reservation} of ${instanceId} (reap settles it): ${(e as Error).message}`)
    )
  }

  private async tag(id: string, tags: Record<string, string>, env: Pick<ProviderEnv, 'signal' | 'log'>): Promise<void> {
    const { sdk, client } = await ec2Client(this.cfg)
    await this.send(env, 'CreateTags', () =>
      client.send(new sdk.CreateTagsCommand({ Resources: [id], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }))
    )
  }

  private async give(remote: Remote, l: PoolLease, how: ReleaseAs): Promise<'released' | 'not-holder'> {
    return oneWord(
      await ask(remote, releaseScript(this.workRoot, l.token, how), { label: `release ${l.instanceId}`, timeoutMs: ASK_MS }),
      ['released', 'not-holder'] as const,
      'release'
    )
  }

  /**
   * Starts a stopped member or raises the group's desired capacity when jobs wait and nothing comes;
   * each member it adds or starts is reserved in the fleet ledger first, and only as many as were
   * reserved are added (a refused one is not started).
   */
  private async grow(env: ProviderEnv, v: PoolView, waiting: number, mayStart: (() => void) | null): Promise<Growth> {
    // Enough members are on their way for everyone waiting.
    if (waiting === 0 || v.starting.length >= waiting) return { cap: null }
    // A stopped member kept in Standby is started here; one in a warm pool (Warmed:Stopped) is the
    // group's to start, which it does when the desired capacity rises (below).
    const standby =
      v.stopped.length && mayStart
        ? await this.inStandby(
            env,
            v.stopped.map((m) => m.id)
          )
        : []
    if (standby.length && mayStart) {
      mayStart()
      const id = standby[0]
      // Its earlier run's reservation ended when it stopped: settled at that time (EC2's, else now)
      // before a new one counts. Settled now, it billed the whole time the member stood stopped.
      const was = v.stopped.find((m) => m.id === id)
      if (was?.reservation) await this.settle(env, was.reservation, id, true, was.stoppedAt)
      const r = await this.reserve(env)
      if ('refused' in r) return { cap: null, refused: r.refused }
      const reservation = r.id
      const { sdk, client } = await ec2Client(this.cfg)
      const lost = lostAnswers()
      try {
        // Tagged before it runs: a hook killed between a start and a later tag left the member
        // running under its old reservation, settled above, so neither reap nor a claim tied it to
        // this one, which reap then settled as unlaunched while the member ran uncounted.
        await this.tag(id, { [TAG_RESERVATION]: reservation }, env)
        env.log.progress(`starting stopped member ${id} of pool ${this.cfg.autoScalingGroup}`)
        await this.send(
          env,
          'StartInstances',
          () => client.send(new sdk.StartInstancesCommand({ InstanceIds: [id] })),
          undefined,
          lost.note
        )
      } catch (e) {
        // A start whose answer was lost may have started the member, tagged with this reservation:
        // settled as unlaunched it would run uncounted. Reap settles it by what the member does.
        if (lost.unsure())
          env.log.warn(
            `StartInstances of ${id} may have started it (its answer was lost): fleet reservation ${reservation} is left to reap`
          )
        else await this.settle(env, reservation, id, false)
        throw e
      }
      await env.fleet
        .attach(reservation, id)
        .catch((e: unknown) =>
          env.log.warn(`could not attach ${id} to fleet reservation ${reservation} (reap settles it): ${(e as Error).message}`)
        )
      const asg = autoScalingClient(this.cfg)
      // Started, it must leave Standby even after a cancel: a running member in Standby is neither
      // counted nor replaced by the group.
      await asCleanup(env.signal, (signal) =>
        this.send({ ...env, signal }, 'ExitStandby', () =>
          asg.client.send(new asg.sdk.ExitStandbyCommand({ AutoScalingGroupName: this.cfg.autoScalingGroup, InstanceIds: [id] }))
        )
      )
      return { cap: null, refused: null }
    }
    const cap = await this.capacity(env)
    if (!this.cfg.scaleOut.enabled) return { cap }
    const want = scaleOutTo(cap, v, waiting)
    if (want === null) return { cap }
    const reserved: string[] = []
    let refused: string | null = null
    const since = Date.now()
    for (let n = cap.desired; n < want; n++) {
      const r = await this.reserve(env).catch(async (e: unknown) => {
        for (const id of reserved) await this.settle(env, id, '(none)', false)
        throw e
      })
      if ('refused' in r) {
        refused = r.refused
        break
      }
      reserved.push(r.id)
    }
    if (!reserved.length) return { cap, refused }
    // SetDesiredCapacity is absolute: read the group again after reserving (another hook may have
    // raised or lowered it meanwhile), and give back what no longer fits under its MaxSize.
    const now = await this.capacity(env).catch(async (e: unknown) => {
      for (const id of reserved) await this.settle(env, id, '(none)', false)
      throw e
    })
    for (const id of reserved.splice(Math.max(0, now.max - now.desired))) await this.settle(env, id, '(none)', false)
    if (!reserved.length) return { cap: now, refused }
    const to = now.desired + reserved.length
    env.log.progress(
      `pool ${this.cfg.autoScalingGroup}: asking for ${to} members (was ${now.desired}, max ${now.max})` +
        (refused ? `; scale-out refused beyond that: ${refused}` : '')
    )
    const { sdk, client } = autoScalingClient(this.cfg)
    // A stopped member the group starts (its warm pool) counts as new: EC2's LaunchTime is its last start.
    const before = new Set([...v.ready, ...v.starting, ...v.leaving].map((m) => m.id))
    const lost = lostAnswers()
    try {
      await this.send(
        env,
        'SetDesiredCapacity',
        () =>
          client.send(
            new sdk.SetDesiredCapacityCommand({
              AutoScalingGroupName: this.cfg.autoScalingGroup,
              DesiredCapacity: to,
              HonorCooldown: false
            })
          ),
        undefined,
        lost.note
      )
    } catch (e) {
      // Its answer lost (a server error, no answer), the group may be launching the members: settled
      // as unlaunched, they would run outside the caps and the budget. The group's desired capacity
      // says whether it was carried out: then the reservations wait to be claimed, as after a
      // success (the wait goes on; reap attaches or settles what no member comes for); not, they are
      // settled, so that a run of such answers does not pile up a batch each round. Unknown (a
      // cancel, the read failing too), they are left to reap.
      if (lost.unsure()) {
        const after = env.signal.aborted ? null : await this.capacity(env).catch(() => null)
        if (after === null || after.desired >= to) {
          env.log.warn(
            `SetDesiredCapacity of pool ${this.cfg.autoScalingGroup} may have been carried out (its answer was lost: ${(e as Error).message}): its ${reserved.length} fleet reservations ${after ? 'wait for new members' : 'are left to reap'}`
          )
          if (after === null) throw e
          for (const id of reserved) this.pending.push({ id, reservedAt: since, before })
          return { cap: after, refused }
        }
      }
      for (const id of reserved) await this.settle(env, id, '(none)', false)
      throw e
    }
    for (const id of reserved) this.pending.push({ id, reservedAt: since, before })
    return { cap: { ...now, desired: to }, refused }
  }

  /** One member reserved in the fleet ledger, or the ledger's refusal line. */
  private async reserve(env: ProviderEnv): Promise<{ id: string } | { refused: string }> {
    try {
      return { id: await env.fleet.reserve(await this.launchSpec(env)) }
    } catch (e) {
      if (e instanceof FleetRefused) return { refused: e.message }
      throw e
    }
  }

  /** What one more member is reserved as: the group's instance type (pool-fleet.ts), read once. */
  private async launchSpec(env: ProviderEnv): Promise<LaunchSpec> {
    if (this.spec) return this.spec
    if (!this.group) await this.capacity(env)
    const kinds = groupTypes(this.group as Asg.AutoScalingGroup)
    const name = this.cfg.autoScalingGroup
    if ('none' in kinds)
      throw new HookError(`provider.autoScalingGroup: the fleet ledger cannot price a member of pool ${name}: ${kinds.none}`)
    const { sdk, client } = await ec2Client(this.cfg)
    let types: string[]
    if ('types' in kinds) types = kinds.types
    else {
      const t = kinds.template
      const res = await this.send(env, 'DescribeLaunchTemplateVersions', () =>
        client.send(
          new sdk.DescribeLaunchTemplateVersionsCommand({
            ...(t.LaunchTemplateId ? { LaunchTemplateId: t.LaunchTemplateId } : { LaunchTemplateName: t.LaunchTemplateName }),
            Versions: [t.Version ?? '$Default']
          })
        )
      )
      const type = templateType(res)
      if (!type)
        throw new HookError(
          `provider.autoScalingGroup: the fleet ledger cannot price a member of pool ${name}: its launch template names no instance type`
        )
      types = [type]
    }
    const vcpus = new Map<string, number>()
    for (const t of types) vcpus.set(t, await instanceVcpus(this.cfg, t, env.signal))
    this.spec = launchSpecOf(this.cfg, vcpus)
    return this.spec
  }

  /**
   * Gives each scale-out reservation of this run a new member: one without a reservation, launched
   * since (less a slack), tagged with the reservation and read back; a tag another hook overwrote
   * meanwhile sends it to the next one. Best effort: what stays unclaimed, reap settles.
   */
  private async claim(env: ProviderEnv, members: Member[]): Promise<void> {
    const taken = new Set<string>()
    try {
      for (const p of [...this.pending]) {
        for (const m of claimable(members, p, taken).slice(0, CLAIM_TRIES)) {
          taken.add(m.id)
          await this.tag(m.id, { [TAG_RESERVATION]: p.id }, env)
          const [back] = await this.members(env, [m.id])
          if (back?.reservation !== p.id) continue
          this.pending.splice(this.pending.indexOf(p), 1)
          await env.fleet.attach(p.id, m.id)
          env.log.debug(`fleet reservation ${p.id} claimed ${m.id}`)
          break
        }
      }
    } catch (e) {
      if (env.signal.aborted) throw e
      env.log.warn(`could not claim a new member of pool ${this.cfg.autoScalingGroup} for its fleet reservation: ${(e as Error).message}`)
    }
  }

  /** A last claim for the reservations still waiting when the job's wait ends; what is left is named for reap. */
  private async claimLeft(env: ProviderEnv): Promise<void> {
    if (!this.pending.length || env.signal.aborted) return
    await this.members(env).then(
      (ms) => this.claim(env, ms),
      () => undefined
    )
    for (const p of this.pending.splice(0))
      env.log.progress(`fleet reservation ${p.id} of pool ${this.cfg.autoScalingGroup} has no member yet; reap attaches or settles it`)
  }

  /** Which of these stopped members the group keeps in Standby, in call order. */
  private async inStandby(env: ProviderEnv, ids: string[]): Promise<string[]> {
    const states = await this.lifecycles(env, ids)
    return ids.filter((id) => states.get(id)?.state === 'Standby')
  }

  /** Each of these instances that is in the group, as it sees it (pool-plan.ts lifecyclesIn); reap reads it too. */
  async lifecycles(env: Pick<ProviderEnv, 'signal' | 'log'>, ids: string[]): Promise<Map<string, GroupRow>> {
    const { sdk, client } = autoScalingClient(this.cfg)
    try {
      return await lifecyclesIn(this.cfg.autoScalingGroup, ids, (batch) =>
        this.send(env, 'DescribeAutoScalingInstances', () =>
          client.send(new sdk.DescribeAutoScalingInstancesCommand({ InstanceIds: batch }))
        )
      )
    } finally {
      client.destroy()
    }
  }

  async whyLost(lease: PoolLease, env: LossEnv): Promise<LostMachine> {
    return lostMachineOf(lease.instanceId, await instanceFate(this.cfg, lease.instanceId, env), { now: Date.now() })
  }

  /**
   * Gives the member back: scrubbed and freed, or replaced when it is worn out, unhealthy after the
   * job, or its scrub failed. A lease another job holds now (ours lapsed) is not touched.
   */
  async release(lease: PoolLease, remote: Remote | null, _jobId: string, jobEnv: ProviderEnv): Promise<void> {
    // Giving the member back is cleanup: it goes on after a cancel (a failed prepare_job's undo runs
    // with the job's cancelled signal).
    await asCleanup(jobEnv.signal, (signal) => this.giveBack(lease, remote, { ...jobEnv, signal }))
  }

  private async giveBack(lease: PoolLease, remote: Remote | null, env: ProviderEnv): Promise<void> {
    const own = !remote
    const mark = (why: string): Promise<void> =>
      this.tag(lease.instanceId, { [TAG_RECYCLE]: why }, env).catch((e: unknown) =>
        env.log.warn(`could not tag ${lease.instanceId} for replacement: ${(e as Error).message}`)
      )
    let r: Remote
    let still: 'renewed' | 'lost'
    try {
      r = remote ?? (await env.connect(lease.connect))
      const sentAt = bootMs()
      still = oneWord(
        await ask(r, this.keeper(lease).command, { label: `renew ${lease.instanceId}`, timeoutMs: ASK_MS }),
        ['renewed', 'lost'] as const,
        'renew'
      )
      // The keeper of the release below counts from this renewal (the grant's time, kept since the
      // acquire in this process, may be a whole step old: a container action's own member).
      if (still === 'renewed') this.renewals.set(lease.token, sentAt)
    } catch (e) {
      // A member that cannot be given back is not leased again (it may be jammed on purpose). Its
      // protection goes too: this job is over, and no job is granted a member marked so, so reap
      // may replace it (a member still protected it leaves alone, as a job's it cannot see).
      await mark('unreachable at release')
      await this.lift(lease.instanceId, env)
      throw e
    }
    try {
      if (still === 'lost') {
        // Lapsed and taken over, or a record the job rewrote: nobody new gets it; a holder replaces it at release.
        env.log.warn(`the lease of ${lease.instanceId} was no longer this job's at release: marked for replacement`)
        // Leased for one job (its tag says so, whatever this host's config): nobody else may hold
        // it, so it is ended now (recycle() says why); else another job may hold it, and it is left.
        const [m] = await this.members(env, [lease.instanceId]).catch(() => [] as Member[])
        if (!leasedForOneJob(m?.recycle ?? null)) return await mark('lease lost at release')
        return await this.recycle(r, lease, `lease lost at release (${SERVED_ONE_JOB})`, env, m?.reservation ?? null, true)
      }
      // Renewed throughout (AWS calls may each be retried for a minute): the protection is lifted
      // while the lease is still this job's, since once it lapses another job may take the member
      // and protect it.
      const { why, reservation, oneJob } = await this.renewing(r, lease, env, async () => {
        let why = await env.scrub(r, lease.instanceId).then(
          () => null,
          (e: unknown) => `its scrub failed: ${(e as Error).message}`
        )
        const [m] = await this.members(env, [lease.instanceId]).catch(() => [] as Member[])
        if (m) {
          const jobs = m.jobs + 1
          why ??= m.recycle ? `marked for replacement (${m.recycle})` : wornOut(m, this.cfg, this.awsNow(), jobs)
          await this.recordJobs(lease.instanceId, jobs, env)
        }
        if (!why) await this.lift(lease.instanceId, env)
        return { why, reservation: m?.reservation ?? null, oneJob: leasedForOneJob(m?.recycle ?? null) }
      })
      if (why) return await this.recycle(r, lease, why, env, reservation, oneJob)
      if ((await this.give(r, lease, { as: 'clean' })) === 'not-holder')
        env.log.warn(`the lease of ${lease.instanceId} was taken over during its release`)
    } finally {
      if (own) await env.discard(lease.connect, r)
    }
  }

  /** Members whose lease this runner's lost jobs hold: taken over, tidied, scrubbed and given back. */
  async cleanupOrphans(owner: string, env: ProviderEnv, tidy: Tidy): Promise<OrphanReport> {
    const report: OrphanReport = { released: [], unreachable: [] }
    const { mkdtempSync, rmSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const dir = mkdtempSync(`${tmpdir()}/rch-pool-`)
    try {
      // Looked for even after a cancel, as EC2's leftovers are (asCleanup): giving a lost job's member
      // back is cleanup, and a cancelled cleanup_job without state is the last one that comes.
      const members = await asCleanup(env.signal, (signal) => this.members({ ...env, signal }))
      for (const m of viewOf(members).ready) {
        const connect = this.connectInfo(m, dir)
        let remote: Remote | null = null
        try {
          remote = await env.connect(connect)
          const token = randomBytes(16).toString('hex')
          const r = oneWord(
            await ask(
              remote,
              takeOverScript(
                this.workRoot,
                owner,
                [env.runner.host.key, runnerHostId(env.runner.host.hostname)],
                token,
                this.cfg.lease.ttlSeconds
              ),
              {
                label: `look at ${m.id}`,
                timeoutMs: ASK_MS
              }
            ),
            ['taken', 'not-owner'] as const,
            'take over'
          )
          if (r === 'not-owner') continue
          await tidy(remote, m.id)
          await this.release({ kind: 'ec2-pool', instanceId: m.id, token, worker: null, workRoot: this.workRoot, connect }, remote, '', env)
          report.released.push(m.id)
        } catch (e) {
          report.unreachable.push({ machine: m.id, reason: (e as Error).message })
        } finally {
          if (remote) await env.discard(connect, remote)
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    return report
  }
}

const HEX32 = /^[0-9a-f]{32}$/

export const ec2Pool: ProviderKind<Ec2PoolConfig, PoolLease> = {
  create: (cfg, workRoot) => new Ec2PoolProvider(cfg, workRoot),
  summary: (cfg) => `group ${cfg.autoScalingGroup}, region ${cfg.region}`,
  lease: {
    fields: {
      instanceId: z.string().regex(EC2_INSTANCE_ID, 'must be an EC2 instance id (i- and 8-17 hex digits)'),
      token: z.string().regex(HEX32, 'must be 32 hex digits'),
      worker: z
        .object({ pid: z.number().int().min(2), start: z.string().regex(/^[0-9]{0,20}$/) })
        .strict()
        .nullable(),
      workRoot: z.string().refine(isWorkRoot, 'must be a plain absolute path'),
      region: leaseRegion.field
    },
    machine: (l) => l.instanceId,
    workRoot: (l) => l.workRoot,
    issues(l, cfg, localDir) {
      // A member found unfit at release is tagged and replaced in its group, in provider.region.
      const out: [string, string][] = leaseRegion.issue(l, cfg)
      if (!isHostName(l.connect.host)) out.push(['host', 'must be an IP address or a DNS name'])
      if (cfg.user.startsWith('tag:') ? !isUserName(l.connect.user) || l.connect.user === 'root' : l.connect.user !== cfg.user)
        out.push(['user', 'differs from provider.user'])
      if (l.connect.identityFile !== cfg.identityFile) out.push(['identityFile', 'differs from provider.identityFile'])
      if (l.connect.knownHostsFile !== `${localDir}/known_hosts`) out.push(['knownHostsFile', "is not the job's own known_hosts file"])
      return out
    }
  }
}
