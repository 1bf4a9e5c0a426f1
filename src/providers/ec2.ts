// Ephemeral EC2 VM per job: launched with ownership tags at creation, trusted through keys handed
// over in user data (host key pinned), used, and terminated. Capacity errors move on to the next
// instance type, subnet, then on-demand; throttling and server errors retry the same request
// (same idempotency token) with backoff; every wait has one overall deadline and says what it waits for.
import { createHash, randomBytes } from 'node:crypto'
import { z } from 'zod'
import type * as Ec2 from '@aws-sdk/client-ec2'
import { writePrivateFile } from '../private-fs'
import type { Ec2Config } from '../config'
import { HookError, TransportError, formatError, isPermanentTransport } from '../errors'
import { NotAttachable } from '../fleet/ledger'
import { EC2_INSTANCE_ID, isHostName } from '../input-rules'
import { retry, unlessCancelled, waitUntil } from '../retry'
import { NoResultError, type ConnectInfo, type Remote } from '../remote/remote'
import { ask, oneWord, record } from '../remote/answer'
import { shq } from '../remote/quote'
import type { Acquired, JobRef, LeaseBase, LossEnv, LostMachine, OrphanReport, ProviderEnv, ProviderKind, VmProvider } from './provider'
import { instanceFate, lostMachineOf } from './instance-fate'
import { awsErrorName, ec2Client, isRetryableAwsError, launchErrorAction, lostAnswers } from './ec2-api'
import {
  addressOf,
  describeAttempt,
  knownHostsName,
  launchPlan,
  runInstancesInput,
  tagsFor,
  TAG_KEEP,
  TAG_OWNER,
  TAG_RESERVATION,
  TAG_RUNNER_HOST,
  type LaunchBasis
} from './ec2-plan'
import { launchBasisOf } from './ec2-basis'
import { instanceVcpus } from './ec2-vcpus'
import { ed25519KeyPair } from './keys'
import { readyMarker, userDataScript } from './user-data'
import { monoMs } from '../mono-clock'

export interface Ec2Lease extends LeaseBase<'ec2'> {
  /** The instance made for the job. */
  instanceId: string
  /**
   * provider.region when it was launched: an instance id means nothing in another region (a
   * terminate there answers "not found", which reads as "already gone"). Absent in an older build's state.
   */
  region?: string
}

/** A terminate gives up after this, even on a hung call. */
export const TERMINATE_DEADLINE_MS = 60_000
/** After a cancel, a terminate still runs (an instance must never outlive its job), for this long at most. */
export const TERMINATE_AFTER_CANCEL_MS = 15_000

const TERMINAL = new Set(['terminated', 'shutting-down', 'stopped', 'stopping'])

/** What RunInstances launches when neither the request nor the launch template names a type. */
export const EC2_DEFAULT_INSTANCE_TYPE = 'm1.small'

/** A live instance of ours, and the ledger reservation it was launched under (its tag), if any. */
interface Live {
  id: string
  reservation?: string
  /** EC2's launch time (epoch ms), for an instance found by its tags rather than by a lease. */
  launchedAt?: number
  /** It carries the operator's keep tag: left running, as reap leaves it. */
  kept?: boolean
}

/** How long a release after the runner's cancel looks for the keep tag before it terminates. */
const KEEP_LOOK_AFTER_CANCEL_MS = 2000
/** The boot check on a new instance: a file test, which a machine still booting may not answer. */
const BOOT_CHECK_MS = 20_000

/** What the hook says of an instance it leaves running for the keep tag. */
const keptNote = (id: string): string =>
  `${id} carries ${TAG_KEEP}: left running (its fleet reservation stays open until it ends; terminate it by hand when done)`

/**
 * The signal that ends a terminate: its deadline, or a short grace once `cancel` fires. Cancel never
 * stops it outright. `done` drops the listener on the job's signal.
 */
export function terminateSignal(
  cancel: AbortSignal,
  deadlineMs = TERMINATE_DEADLINE_MS,
  graceMs = TERMINATE_AFTER_CANCEL_MS
): { signal: AbortSignal; done: () => void } {
  const stop = new AbortController()
  const after = (ms: number, why: string): void =>
    void AbortSignal.timeout(ms).addEventListener('abort', () => stop.abort(new HookError(why)), { once: true })
  const graceOver = (): void => after(graceMs, `cancelled, and no answer within ${graceMs / 1000} s`)
  after(deadlineMs, `no answer within ${deadlineMs / 1000} s`)
  if (cancel.aborted) graceOver()
  else cancel.addEventListener('abort', graceOver, { once: true })
  return { signal: stop.signal, done: () => cancel.removeEventListener('abort', graceOver) }
}

/** Runs `work` with a signal bounded as a terminate is (see terminateSignal): the job's cancel only shortens its wait. */
export async function asCleanup<T>(cancel: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = terminateSignal(cancel)
  try {
    return await work(stop.signal)
  } finally {
    stop.done()
  }
}

export class Ec2Provider implements VmProvider<Ec2Lease> {
  readonly kind = 'ec2'
  readonly releaseDestroys = true
  constructor(
    private readonly cfg: Ec2Config,
    private readonly workRoot: string
  ) {}

  describe(l: Ec2Lease): string {
    return `${l.connect.host}:${l.connect.port} (${l.instanceId})`
  }

  async acquire(job: JobRef, env: ProviderEnv): Promise<Acquired<Ec2Lease>> {
    const cfg = this.cfg
    const { owner, localDir, jobId } = job
    const started = monoMs()
    const until = started + cfg.acquireTimeoutSeconds * 1000
    const left = (): number => Math.max(0, until - monoMs())
    const { sdk, client } = await ec2Client(cfg)
    const send = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
      retry(fn, {
        attempts: 8,
        minDelayMs: 300,
        maxDelayMs: 5000,
        deadlineMs: Math.max(1000, left()),
        signal: env.signal,
        retryable: isRetryableAwsError,
        onRetry: (e) => env.log.debug(`${what}: ${awsErrorName(e)}, retrying`)
      })

    // Per-job keys: the client key to log in, the host key to pin. Private halves stay in 0600 files.
    const clientKey = ed25519KeyPair(`rch-${jobId}-client`)
    const hostKey = ed25519KeyPair(`rch-${jobId}-host`)
    const identityFile = `${localDir}/id_ed25519`
    writePrivateFile(identityFile, clientKey.private)
    const userData = Buffer.from(
      userDataScript({
        user: cfg.user,
        workRoot: this.workRoot,
        hostPrivateKey: hostKey.private,
        hostPublicKey: hostKey.public,
        clientPublicKey: clientKey.public,
        maxLifetimeMinutes: cfg.maxLifetimeMinutes
      })
    ).toString('base64')
    const basis = await launchBasisOf(cfg, sdk, client, send)

    // A runner runs one job at a time, so a live instance of its own is a leftover of a job whose
    // cleanup never ran: found while this job launches, terminated once this job has its machine.
    // Only instances launched from this machine: an older build's owner id was the name alone, and a
    // same-named runner elsewhere is not this one.
    const leftovers = this.liveOf(owner, env.runner.host.hostname, env.signal).catch((e: unknown) => {
      env.log.warn(`could not look for instances left by earlier jobs of this runner: ${(e as Error).message}`)
      return [] as Live[]
    })

    const { instanceId, reservation } = await this.launch(job, env, basis, userData, (input, failed) =>
      send('RunInstances', () =>
        client.send(new sdk.RunInstancesCommand(input)).catch((e: unknown) => {
          failed(e)
          throw e
        })
      )
    )
    const launched = monoMs()
    const lease: Ec2Lease = {
      kind: 'ec2',
      instanceId,
      region: cfg.region,
      reservation,
      connect: { host: '', port: cfg.sshPort, user: cfg.user, identityFile, knownHostsFile: `${localDir}/known_hosts` }
    }
    try {
      // Billing starts now: attached at once, so an early end is settled from here. A ledger that
      // cannot answer now (throttled, slow) is no reason to end a launched job: the instance carries
      // its reservation's tag, by which reap attaches it. One already settled (reap judged it
      // unlaunched) counts this instance nowhere: that fails the job, the instance terminated.
      await env.fleet.attach(reservation, instanceId).catch((e: unknown) => {
        if (e instanceof NotAttachable) throw e
        env.log.warn(`could not attach ${instanceId} to fleet reservation ${reservation} (reap attaches it by its tag): ${formatError(e)}`)
      })
      const address = await this.waitRunning(env, instanceId, left, (input) =>
        send('DescribeInstances', () => client.send(new sdk.DescribeInstancesCommand(input)))
      )
      const running = monoMs()
      lease.connect = { ...lease.connect, ...address }
      writePrivateFile(
        lease.connect.knownHostsFile,
        `${knownHostsName(address.host, address.port)} ${hostKey.public.split(' ').slice(0, 2).join(' ')}\n`
      )
      const remote = await this.waitReady(env, lease.connect, instanceId, left)
      const ready = monoMs()
      for (const old of (await leftovers).filter((x) => x.id !== instanceId)) {
        if (old.kept) {
          env.log.progress(keptNote(old.id))
          continue
        }
        env.log.progress(`terminating ${old.id}, left by an earlier job of this runner`)
        await this.terminateAndSettle(old, env).catch((t) => env.log.warn(`could not terminate ${old.id}: ${(t as Error).message}`))
      }
      return { lease, remote, timings: { acquire: launched - started, boot: running - launched, ssh: ready - running } }
    } catch (e) {
      // The instance exists: it must not outlive this failure (nor a cancel: see terminateSignal).
      await this.terminateAndSettle({ id: instanceId, reservation }, env).catch((t) =>
        env.log.warn(`could not terminate ${instanceId}: ${(t as Error).message}`)
      )
      throw e
    }
  }

  /**
   * Walks the launch plan: capacity errors move on, throttling was retried by `runInstances`,
   * anything else fails at once. Each attempt is reserved in the fleet ledger first (a refusal
   * fails the job before anything launches); an attempt that launched nothing is settled at once.
   */
  private async launch(
    job: JobRef,
    env: ProviderEnv,
    basis: LaunchBasis,
    userData: string,
    /** `failed` hears of every attempt that failed, also those retried. */
    runInstances: (input: Ec2.RunInstancesCommandInput, failed: (e: unknown) => void) => Promise<Ec2.RunInstancesCommandOutput>
  ): Promise<{ instanceId: string; reservation: string }> {
    const tried: string[] = []
    const tags = tagsFor(this.cfg, {
      owner: job.owner,
      jobId: job.jobId,
      runner: env.runner,
      runnerHost: env.runner.host.hostname,
      launchedAt: new Date()
    })
    for (const [i, at] of launchPlan(this.cfg).entries()) {
      // One idempotency token per distinct request; retries of that same request reuse it.
      const token = createHash('sha256')
        .update(`${job.jobId}:${i}:${randomBytes(8).toString('hex')}`)
        .digest('hex')
        .slice(0, 48)
      const instanceType = at.instanceType ?? basis.templateInstanceType ?? EC2_DEFAULT_INSTANCE_TYPE
      const vcpus = await instanceVcpus(this.cfg, instanceType, env.signal)
      const reservation = await env.fleet.reserve({ instanceType, vcpus, maxLifetimeMinutes: this.cfg.maxLifetimeMinutes })
      const unlaunched = (): Promise<void> =>
        env.fleet
          .settle(reservation, { launched: false })
          .catch((s: unknown) => env.log.warn(`could not settle the unused reservation ${reservation}: ${(s as Error).message}`))
      let res: Ec2.RunInstancesCommandOutput
      // Whether an attempt of this request may have launched an instance whose answer was lost (a
      // server error, a dropped connection) and no later attempt with the same token said otherwise.
      const lost = lostAnswers()
      try {
        const reserved = [...tags, { Key: TAG_RESERVATION, Value: reservation }]
        res = await runInstances(runInstancesInput(this.cfg, at, basis, { token, userData, tags: reserved }), lost.note)
      } catch (e) {
        if (lost.unsure()) await this.launchedAnyway(token, reservation, env)
        else await unlaunched()
        if (env.signal.aborted || launchErrorAction(e) !== 'next')
          throw new HookError(`RunInstances (${describeAttempt(at)}) failed: ${awsErrorName(e)}: ${(e as Error).message}`)
        tried.push(`${describeAttempt(at)}: ${awsErrorName(e)}`)
        env.log.progress(`no capacity for ${describeAttempt(at)} (${awsErrorName(e)}), trying the next option`)
        continue
      }
      const id = res.Instances?.[0]?.InstanceId
      if (!id) {
        await unlaunched()
        throw new HookError('RunInstances returned no instance')
      }
      env.log.progress(`launched ${id} (${describeAttempt(at)})`)
      return { instanceId: id, reservation }
    }
    throw new HookError(`no EC2 capacity for this job; tried ${tried.join('; ')}`)
  }

  /**
   * A RunInstances given up on (a cancel, the deadline, retries used up) after an attempt whose
   * answer was lost: what its token launched is terminated now, its reservation settled with it. An
   * instance not found (EC2 may not show it yet) keeps the reservation unsettled, for reap: settled
   * as unlaunched, it would free the fleet's counters for an instance that may run.
   */
  private async launchedAnyway(token: string, reservation: string, env: ProviderEnv): Promise<void> {
    const { sdk, client } = await ec2Client(this.cfg)
    // Looked for even after a cancel, as a terminate is (see terminateSignal).
    let found: Live[]
    try {
      const res = await asCleanup(env.signal, (signal) =>
        retry(
          () =>
            client.send(new sdk.DescribeInstancesCommand({ Filters: [{ Name: 'client-token', Values: [token] }] }), {
              abortSignal: signal
            }),
          { attempts: 4, minDelayMs: 300, maxDelayMs: 2000, signal, retryable: isRetryableAwsError }
        )
      )
      found = (res.Reservations ?? [])
        .flatMap((r) => r.Instances ?? [])
        .filter((i) => i.InstanceId && !TERMINAL.has(i.State?.Name ?? ''))
        .map((i) => ({
          id: i.InstanceId as string,
          reservation,
          launchedAt: i.LaunchTime ? new Date(i.LaunchTime).getTime() : undefined
        }))
    } catch (e) {
      env.log.warn(
        `RunInstances may have launched an instance whose answer was lost, and it could not be looked for (${(e as Error).message}): reservation ${reservation} is left to reap`
      )
      return
    }
    if (!found.length)
      return env.log.warn(
        `RunInstances may have launched an instance whose answer was lost, and none is visible yet: reservation ${reservation} is left to reap (such an instance carries this runner's owner tag)`
      )
    for (const live of found) {
      env.log.progress(`terminating ${live.id}, launched by a RunInstances whose answer was lost`)
      await this.terminateAndSettle(live, env).catch((t: unknown) =>
        env.log.warn(`could not terminate ${live.id}: ${(t as Error).message}`)
      )
    }
  }

  private waitRunning(
    env: ProviderEnv,
    id: string,
    left: () => number,
    describe: (input: Ec2.DescribeInstancesCommandInput) => Promise<Ec2.DescribeInstancesCommandOutput>
  ): Promise<{ host: string; port: number }> {
    const started = Date.now()
    let state = 'not visible yet'
    const note = (): void =>
      env.log.progress(
        `waiting for ${id} (${state === 'running' ? `running, no ${this.cfg.connect.address} yet` : state}, ${Math.round((Date.now() - started) / 1000)} s)`
      )
    return waitUntil(
      async () => {
        // EC2 is eventually consistent: a just-launched id may be unknown to Describe for a moment.
        const res = await describe({ InstanceIds: [id] }).catch((e: unknown) => {
          if (awsErrorName(e) === 'InvalidInstanceID.NotFound') return null
          throw e
        })
        const inst = res?.Reservations?.[0]?.Instances?.[0]
        state = inst?.State?.Name ?? (res ? 'unknown' : 'not visible yet')
        if (state === 'running' && inst) return addressOf(inst, this.cfg) ?? undefined
        if (TERMINAL.has(state))
          throw new HookError(
            `${id} is ${state} before it could be used${inst?.StateReason?.Message ? `: ${inst.StateReason.Message}` : ''}`
          )
        return undefined
      },
      {
        timeoutMs: left(),
        minDelayMs: 500,
        maxDelayMs: 5000,
        factor: 1.5,
        signal: env.signal,
        onRetry: (_e, attempt) => attempt === 1 && note(),
        progressEveryMs: 10_000,
        onProgress: note,
        onTimeout: () =>
          new HookError(`${id} not usable after ${this.cfg.acquireTimeoutSeconds} s (state ${state}; provider.acquireTimeoutSeconds)`)
      }
    )
  }

  /**
   * SSH up and the boot setup done (its marker is written last). A session opened before that is
   * replaced: sshd accepts the key before cloud-init has added the user to group docker.
   */
  private waitReady(env: ProviderEnv, c: ConnectInfo, id: string, left: () => number): Promise<Remote> {
    const started = Date.now()
    let phase = `sshd on ${c.host}:${c.port}`
    let noted = ''
    const note = (): void => {
      noted = phase
      env.log.progress(`waiting for ${id} (${phase}, ${Math.round((Date.now() - started) / 1000)} s)`)
    }
    return waitUntil(
      async () => {
        // A connect to a booting machine can hang for timeouts.connectSeconds: a cancel does not wait
        // for it (the undo's terminate must come before the runner's SIGKILL), and a connection that
        // comes after the cancel is closed.
        const remote = await unlessCancelled(env.connect(c), env.signal, (late) => env.discard(c, late))
        let ready = false
        try {
          // Framed (answer.ts): a start-up file that prints text is not a boot that never ends. A
          // check the shell cannot run fails here with its exit status and stderr (a lost connection
          // is a TransportError, polled again): waiting does not mend a shell that refuses commands.
          // One that does not answer in time is a slow boot, polled again like a lost connection.
          const label = `${id}: check the boot setup`
          const marker = shq(readyMarker(this.workRoot))
          const got = await ask(remote, `if [ -f ${marker} ]; then ${record('ready')}; else ${record('booting')}; fi`, {
            label,
            signal: env.signal,
            timeoutMs: BOOT_CHECK_MS
          }).catch((e: unknown) => {
            throw e instanceof NoResultError ? new TransportError(e.message, 'timeout') : e
          })
          ready = oneWord(got, ['ready', 'booting'] as const, label) === 'ready'
        } finally {
          if (!ready) await env.discard(c, remote)
        }
        if (ready) return remote
        phase = 'cloud-init'
        return undefined
      },
      {
        timeoutMs: left(),
        minDelayMs: 300,
        maxDelayMs: 3000,
        factor: 1.5,
        signal: env.signal,
        // A wrong host key or unusable key file is an attack or a broken set-up, not a slow boot.
        // A refused login is not: the image may add the user's key late in its boot.
        transient: (e) => e instanceof TransportError && (e.kind === 'auth' || !isPermanentTransport(e)),
        onRetry: () => phase !== noted && note(),
        progressEveryMs: 10_000,
        onProgress: note,
        onTimeout: (_ms, last) =>
          phase === 'cloud-init'
            ? new HookError(`${id}: boot setup (cloud-init user data) not finished after ${this.cfg.acquireTimeoutSeconds} s`)
            : new TransportError(
                `${id}: SSH on ${c.host}:${c.port} not ready after ${this.cfg.acquireTimeoutSeconds} s${last ? `: ${(last as Error).message}` : ''}`,
                'timeout'
              )
      }
    )
  }

  /** Terminates an instance; an id EC2 no longer knows is gone already. See terminateSignal for cancel. */
  async terminate(id: string, env: Pick<ProviderEnv, 'log' | 'signal'>): Promise<void> {
    const { sdk, client } = await ec2Client(this.cfg)
    const stop = terminateSignal(env.signal)
    try {
      await retry(() => client.send(new sdk.TerminateInstancesCommand({ InstanceIds: [id] }), { abortSignal: stop.signal }), {
        attempts: 8,
        minDelayMs: 300,
        maxDelayMs: 4000,
        signal: stop.signal,
        // NotFound right after launch is EC2's eventual consistency, not proof the instance is gone:
        // retried (a few seconds) before it is taken as "already gone".
        retryable: (e) => isRetryableAwsError(e) || awsErrorName(e) === 'InvalidInstanceID.NotFound'
      })
      env.log.progress(`terminated ${id}`)
    } catch (e) {
      if (awsErrorName(e) === 'InvalidInstanceID.NotFound') return
      if (stop.signal.aborted)
        throw new HookError(
          `terminating ${id}: ${(stop.signal.reason as Error)?.message ?? 'stopped'} (it ends itself after provider.maxLifetimeMinutes)`
        )
      throw e
    } finally {
      stop.done()
    }
  }

  /**
   * Terminates, then settles the instance's reservation with its real time. A failed terminate
   * leaves it unsettled (reap settles it); a ledger that cannot be written is only a warning here.
   */
  private async terminateAndSettle(live: Live, env: Pick<ProviderEnv, 'log' | 'signal' | 'fleet'>): Promise<void> {
    await this.terminate(live.id, env)
    const reservation = live.reservation
    if (!reservation) return
    const settle = async (): Promise<void> => {
      // Found by its tags: its hook may have died between the launch and the attach, so the
      // reservation learns its instance here, billed from EC2's launch time (an attached one keeps its own).
      if (live.launchedAt !== undefined) await env.fleet.attach(reservation, live.id, live.launchedAt)
      await env.fleet.settle(reservation)
    }
    await settle().catch((e: unknown) =>
      env.log.warn(`could not settle the fleet ledger reservation ${reservation} of ${live.id}: ${(e as Error).message}`)
    )
  }

  async whyLost(lease: Ec2Lease, env: LossEnv): Promise<LostMachine> {
    const fate = await instanceFate(this.cfg, lease.instanceId, env)
    return lostMachineOf(lease.instanceId, fate, { maxLifetimeMinutes: this.cfg.maxLifetimeMinutes, now: Date.now() })
  }

  /**
   * Terminates the job's instance, unless the operator tagged it keep while the job ran (to look at
   * it afterwards). A keep that cannot be read does not keep it: no instance is left by a failed look.
   */
  async release(lease: Ec2Lease, _remote: Remote | null, _jobId: string, env: ProviderEnv): Promise<void> {
    // After a cancel, one short look: the runner kills the hook soon, and the terminate must go out first.
    const quick = env.signal.aborted
    // A plain timer, not AbortSignal.timeout: a timeout signal only AbortSignal.any refers to can be
    // collected with its timer, and then never fires.
    const look = new AbortController()
    const timer = quick
      ? setTimeout(() => look.abort(new Error('no answer in time after the cancel')), KEEP_LOOK_AFTER_CANCEL_MS)
      : undefined
    const kept = await asCleanup(env.signal, (signal) =>
      this.keptNow(lease.instanceId, quick ? AbortSignal.any([signal, look.signal]) : signal, quick)
    )
      .catch(() => false)
      .finally(() => clearTimeout(timer))
    if (kept) return env.log.progress(keptNote(lease.instanceId))
    await this.terminateAndSettle({ id: lease.instanceId, reservation: lease.reservation }, env)
  }

  /** Whether the instance carries the keep tag now. */
  private async keptNow(id: string, signal: AbortSignal, once: boolean): Promise<boolean> {
    const { sdk, client } = await ec2Client(this.cfg)
    const res = await retry(
      () =>
        client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id], Filters: [{ Name: 'tag-key', Values: [TAG_KEEP] }] }), {
          abortSignal: signal
        }),
      { attempts: once ? 1 : 3, minDelayMs: 300, maxDelayMs: 2000, signal, retryable: isRetryableAwsError }
    )
    return (res.Reservations ?? []).some((r) =>
      (r.Instances ?? []).some((i) => i.InstanceId === id && (i.Tags ?? []).some((t) => t.Key === TAG_KEEP))
    )
  }

  /**
   * The live (not terminated) instances tagged with an owner id and launched from this runner host
   * (the owner id holds the host's name too; the tag also keeps apart older builds' name-only ids).
   */
  private async liveOf(owner: string, host: string, signal: AbortSignal): Promise<Live[]> {
    const { sdk, client } = await ec2Client(this.cfg)
    const res = await retry(
      () =>
        client.send(
          new sdk.DescribeInstancesCommand({
            Filters: [
              { Name: `tag:${TAG_OWNER}`, Values: [owner] },
              { Name: `tag:${TAG_RUNNER_HOST}`, Values: [host] },
              { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }
            ]
          })
        ),
      { attempts: 6, minDelayMs: 300, maxDelayMs: 4000, signal, retryable: isRetryableAwsError }
    )
    return (res.Reservations ?? [])
      .flatMap((r) => r.Instances ?? [])
      .flatMap((i) =>
        i.InstanceId
          ? [
              {
                id: i.InstanceId,
                reservation: i.Tags?.find((t) => t.Key === TAG_RESERVATION)?.Value || undefined,
                launchedAt: i.LaunchTime ? new Date(i.LaunchTime).getTime() : undefined,
                kept: (i.Tags ?? []).some((t) => t.Key === TAG_KEEP)
              }
            ]
          : []
      )
  }

  /**
   * Terminates every live instance tagged with this runner's owner id and launched from this runner
   * host (cleanup without state), but those the operator tagged keep: nothing to tidy first. The host's tag also keeps apart the
   * name-only owner ids of older builds: a same-named runner on another host may be running a job.
   */
  async cleanupOrphans(owner: string, env: ProviderEnv): Promise<OrphanReport> {
    const report: OrphanReport = { released: [], unreachable: [] }
    // Looked for even after a cancel, as a terminate is (see terminateSignal): the last cleanup of
    // a lost job must not end before it has found what to terminate.
    for (const live of await asCleanup(env.signal, (signal) => this.liveOf(owner, env.runner.host.hostname, signal))) {
      if (live.kept) {
        env.log.progress(keptNote(live.id))
        continue
      }
      try {
        await this.terminateAndSettle(live, env)
        report.released.push(live.id)
      } catch (e) {
        report.unreachable.push({ machine: live.id, reason: (e as Error).message })
      }
    }
    return report
  }
}

/**
 * The lease's `region` (provider.region when it was launched or leased) and its check, for both
 * EC2 kinds: an instance id means nothing in another region (a terminate there answers "not found",
 * which reads as "already gone"), so a changed provider.region is refused. Absent in an older build's state.
 */
export const leaseRegion = {
  field: z.string().min(1).optional(),
  issue: (l: { region?: string }, cfg: { region: string }): [string, string][] =>
    l.region !== undefined && l.region !== cfg.region ? [['region', `differs from provider.region (${cfg.region})`]] : []
}

/** An AWS region's name (eu-west-1, us-gov-west-1, cn-northwest-1, eusc-de-east-1): nothing an endpoint's host could be built from otherwise. */
const AWS_REGION_NAME = /^[a-z]{2,4}(-[a-z0-9]{1,16}){1,3}-[0-9]{1,2}$/
/** Region prefixes of AWS's partitions other than `aws` (each its own endpoints and credentials). */
const PARTITION_PREFIX = /^(cn|us-gov|us-isob|us-isof|us-iso|eu-isoe|eusc)-/

/** The partition a region name belongs to: the first PARTITION_PREFIX it has, else `aws`. */
export function partitionOf(region: string): string {
  return PARTITION_PREFIX.exec(region)?.[1] ?? 'aws'
}

export const ec2: ProviderKind<Ec2Config, Ec2Lease> = {
  create: (cfg, workRoot) => new Ec2Provider(cfg, workRoot),
  summary: (cfg) => `region ${cfg.region}`,
  lease: {
    fields: {
      instanceId: z.string().regex(EC2_INSTANCE_ID, 'must be an EC2 instance id (i- and 8-17 hex digits)'),
      region: leaseRegion.field
    },
    machine: (l) => l.instanceId,
    issues(l, cfg, localDir) {
      const out: [string, string][] = leaseRegion.issue(l, cfg)
      if (!isHostName(l.connect.host)) out.push(['host', 'must be an IP address or a DNS name'])
      if (l.connect.user !== cfg.user) out.push(['user', 'differs from provider.user'])
      if (l.connect.identityFile !== `${localDir}/id_ed25519`) out.push(['identityFile', "is not the job's own key file"])
      if (l.connect.knownHostsFile !== `${localDir}/known_hosts`) out.push(['knownHostsFile', "is not the job's own known_hosts file"])
      return out
    },
    // An instance launched before provider.region changed runs on there (until maxLifetimeMinutes)
    // unless looked for there. Only this runner's instances are found (its owner and host tags), so
    // the region is the only thing taken from the refused state, and only one of provider.region's
    // partition: another partition has other endpoints, and the runner's credentials (a session
    // token, a web identity's for STS) are never sent there.
    elsewhere: (host, cfg) =>
      typeof host.region === 'string' &&
      AWS_REGION_NAME.test(host.region) &&
      host.region !== cfg.region &&
      partitionOf(host.region) === partitionOf(cfg.region)
        ? { region: host.region }
        : null
  }
}
