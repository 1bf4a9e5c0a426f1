// reap's pass over a pool's members: a lease that lapsed (its job's runner died) is taken back,
// scrubbed and given back; a member marked for replacement that nobody holds, or one unreachable
// in two passes, is replaced through the group. A member with a live lease is left alone; one
// nobody holds that is still protected from scale-in has its protection lifted under its lease.
// One whose lease cannot be read from here is replaced only when the group says no job holds it
// (not protected from scale-in), and never for this host's own login failing: reap runs on every
// runner host, and one that lost its way to the pool must not end the members other hosts' jobs use.
// The lease operations are pool-lease.ts's and the give-back is the pool provider's own release.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Config, Ec2PoolConfig } from '../config'
import { fleetGate, type JobFacts } from '../fleet/gate'
import { nameOwnerId, newJobId } from '../labels'
import { thisRunnerHost } from '../runner-host'
import { writePrivateFile } from '../private-fs'
import { retry } from '../retry'
import { ask, expectEach, oneWord, record } from '../remote/answer'
import { TransportError } from '../errors'
import { shPath } from '../remote/quote'
import type { ConnectInfo, Remote } from '../remote/remote'
import { SshRemote } from '../remote/ssh'
import { withDockerHost } from '../remote/docker-host'
import { autoScalingClient, awsErrorName, isRetryableAwsError } from '../providers/ec2-api'
import { knownHostsName, TAG_KEEP, TAG_REAP_CANDIDATE, TAG_RESERVATION } from '../providers/ec2-plan'
import { Ec2PoolProvider, type PoolLease } from '../providers/ec2-pool'
import { acquireScript, EXPIRY_OR_NONE, leaseFolder, parseAcquire, releaseScript, type AcquireAnswer } from '../providers/pool-lease'
import {
  membersOf,
  leasedForOneJob,
  SERVED_ONE_JOB,
  setupStuck,
  TAG_GROUP,
  TAG_RECYCLE,
  viewOf,
  wornOut,
  type GroupRow,
  type Member
} from '../providers/pool-plan'
import type { ProviderEnv } from '../providers/provider'
import { scrubMachine } from '../docker/machine-scrub'
import { LEASE_CALL } from '../remote/lease-call'
import { act, addRow, alignToAws, passNow, step, type ReapContext } from './reap-context'
import { factOf, LIVE_STATES, ReapEc2, tagsOf } from './reap-aws'
import { reapReservations, type PoolFacts } from './reap-ec2'
import { heldPastAnyJob, markStep, waitWhy } from './reap-plan'

const CALL_MS = 30_000
/** As pool-lease.ts judges it: an expiry further ahead than any runner writes is a lapsed lease. */
const EXPIRY_BOUND_SECONDS = 3600 + 600

interface LeaseView {
  state: string
  /** Seconds until it lapses (negative: lapsed), by the member's clock. */
  left: number
}

/** The member's lease record, read without its lock (the record is replaced whole by a rename). */
async function readLease(remote: Remote, workRoot: string): Promise<LeaseView> {
  const label = 'read the lease'
  const r = await ask(
    remote,
    LEASE_CALL +
      `P=${shPath(leaseFolder(workRoot))}; now=$(date +%s); st=; h=; ex=; ` +
      `if [ -f "$P/lease" ] && [ ! -L "$P/lease" ]; then read -r st h ex o j < "$P/lease"; fi; ` +
      EXPIRY_OR_NONE +
      `case "$st" in *[!a-z]*) st=unreadable;; esac; ` +
      `${record('"${st:-none}"')}; ${record('"$((ex - now))"')}`,
    { label, timeoutMs: CALL_MS }
  )
  if (r.length !== 2) throw new Error(`${label}: unexpected answer`)
  expectEach([r[0]], /^[a-z]{1,16}$/, label)
  expectEach([r[1]], /^-?[0-9]{1,12}$/, label)
  return { state: r[0], left: Number(r[1]) }
}

const lapsed = (l: LeaseView): boolean => l.state === 'held' && (l.left < 0 || l.left > EXPIRY_BOUND_SECONDS)
const live = (l: LeaseView): boolean => l.state === 'held' && !lapsed(l)

/** Kind ec2-pool: its members, then the ledger's open reservations (a replaced member's among them). */
export async function reapPoolPass(cfg: Ec2PoolConfig, config: Config, ctx: ReapContext): Promise<void> {
  const api = new ReapEc2(cfg, ctx.signal, (ms) => alignToAws(ctx, ms))
  const pool = await step(ctx, 'member', cfg.autoScalingGroup, () => reapPool(cfg, config, api, ctx))
  await step(ctx, 'reservation', 'ledger', () => reapReservations(api, ctx, pool ?? undefined))
}

export async function reapPool(cfg: Ec2PoolConfig, config: Config, api: ReapEc2, ctx: ReapContext): Promise<PoolFacts> {
  const raw = await api.describe([
    { Name: `tag:${TAG_GROUP}`, Values: [cfg.autoScalingGroup] },
    { Name: 'instance-state-name', Values: LIVE_STATES }
  ])
  const byId = new Map(raw.map((i) => [i.InstanceId as string, i]))
  const members = membersOf({ Reservations: [{ Instances: raw }] } as Ec2.DescribeInstancesCommandOutput, cfg)
  const ready = new Set(viewOf(members).ready.map((m) => m.id))
  const dir = mkdtempSync(`${tmpdir()}/rch-reap-`)
  const pool = new PoolPass(cfg, config, api, ctx, dir)
  // Not known, no stop is taken for a reservation's end (the ledger pass still runs on the members),
  // and no member's protection is lifted.
  const rows = await pool.groupRows(members.map((m) => m.id)).catch((e: unknown) => {
    addRow(ctx, 'member', cfg.autoScalingGroup, 'failed', `how the group sees its members: ${(e as Error).message}`)
    return new Map<string, GroupRow>()
  })
  try {
    // Not known (the group did not answer, or does not list it): it may be protected.
    const look = (m: Member): Promise<void> =>
      pool.member(m, tagsOf(byId.get(m.id) as Ec2.Instance), ready.has(m.id), rows.get(m.id)?.protected)
    for (const m of members) await look(m)
    // A login refused before any member let this host in: judged again now that one has (then the
    // refusal is the member's: its keys gone), else this host's own (failed rows).
    for (const m of pool.takeDeferred()) await look(m)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const standby = new Set(members.filter((m) => m.state === 'stopped' && rows.get(m.id)?.state === 'Standby').map((m) => m.id))
  return { group: cfg.autoScalingGroup, members: raw.map(factOf), standby }
}

class PoolPass {
  private readonly provider: Ec2PoolProvider
  /** Whether some member of this pass let this host log in: a refusal by another is then that member's doing. */
  private loggedIn = false
  /** Members whose login was refused while none had let this host in yet (see reapPool), with their rows' why. */
  private deferred: { m: Member; why: string }[] | null = []
  private readonly env: ProviderEnv
  private readonly workRoot: string
  /** remote.dockerSocket: the scrub's docker commands talk to the daemon the hook's do. */
  private readonly dockerSocket: string
  private readonly maxJobMs: number

  constructor(
    private readonly cfg: Ec2PoolConfig,
    config: Config,
    private readonly api: ReapEc2,
    private readonly ctx: ReapContext,
    private readonly dir: string
  ) {
    this.workRoot = config.remote.workRoot
    this.dockerSocket = config.remote.dockerSocket
    this.maxJobMs = config.fleet.reap.maxJobMinutes * 60_000
    this.provider = new Ec2PoolProvider(cfg, this.workRoot)
    const quiet = (): void => undefined
    this.env = {
      log: { progress: quiet, warn: quiet, debug: quiet },
      signal: ctx.signal,
      runner: { runnerName: `reap@${hostname()}`, github: {}, host: thisRunnerHost(), worker: null },
      connect: (c) => this.connectTo(c),
      discard: (_c, r) => Promise.resolve(r.close()),
      // Only a release's settlement of a recycled member goes through it: reap reserves nothing.
      fleet: fleetGate(ctx.ledger, {} as JobFacts, ctx.clock),
      scrub: async (remote, machine) => void (await scrubMachine(remote, this.workRoot, machine))
    }
  }

  /** A connection to a member whose docker commands (the scrub's) reach remote.dockerSocket, as the hook's do. */
  private async connectTo(c: ConnectInfo): Promise<Remote> {
    return withDockerHost(await SshRemote.connect(c, this.ctx.connectMs), this.dockerSocket)
  }

  /** The members to judge again once every member was looked at; after this, none is deferred. */
  takeDeferred(): Member[] {
    const d = this.deferred ?? []
    this.deferred = null
    if (this.loggedIn) return d.map((x) => x.m)
    for (const { m, why } of d) addRow(this.ctx, 'member', m.id, 'failed', why)
    return []
  }

  /** Each member as its group sees it (lifecycle state, scale-in protection), through the pool provider. */
  groupRows(ids: string[]): Promise<Map<string, GroupRow>> {
    return this.provider.lifecycles(this.env, ids)
  }

  private connectInfo(m: Member): ConnectInfo {
    const a = m.address as { host: string; port: number }
    const knownHostsFile = `${this.dir}/known_hosts-${m.id}`
    writePrivateFile(knownHostsFile, `${knownHostsName(a.host, a.port)} ${m.hostKey}\n`)
    return { ...a, user: m.user as string, identityFile: this.cfg.identityFile, knownHostsFile }
  }

  /**
   * What the member is: a candidate (and why) or not; `remote` stays open for phase 2. `failed`:
   * this host could not log in (its key unreadable, or refused while no member has let it in),
   * which says nothing of the member. `unread`: its lease could not be read.
   */
  private async judge(
    m: Member,
    isReady: boolean,
    isProtected: boolean | undefined
  ): Promise<{
    candidate: boolean
    why: string
    how?: 'lapsed' | 'replace'
    remote?: Remote
    lease?: LeaseView
    failed?: 'keyfile' | 'auth'
    unread?: true
  }> {
    // No job was ever granted a member without its host key; one running that long hung in its setup,
    // and would run (and be billed) for good: the group replaces it, unless it protects it.
    if (setupStuck(m, this.ctx.times.now)) {
      const why = `running for ${Math.floor((this.ctx.times.now - (m.launchedAt as Date).getTime()) / 60_000)} min without its host key tag: its setup never finished`
      if (isProtected !== false)
        return {
          candidate: false,
          why: `${why}, but ${isProtected ? 'protected from scale-in' : 'its group did not say whether it is protected'}`
        }
      return { candidate: true, why, how: 'replace', unread: true }
    }
    if (!isReady && !m.recycle) return { candidate: false, why: `${m.state}, not ready to serve (starting or stopped)` }
    let remote: Remote | undefined
    let lease: LeaseView | null = null
    let unreachable = ''
    let ours: 'keyfile' | 'auth' | null = null
    if (m.address && m.hostKey && m.user) {
      try {
        remote = await this.connectTo(this.connectInfo(m))
        this.loggedIn = true
        lease = await readLease(remote, this.workRoot)
      } catch (e) {
        unreachable = (e as Error).message
        if (e instanceof TransportError && (e.kind === 'keyfile' || (e.kind === 'auth' && !this.loggedIn))) ours = e.kind
      }
    } else unreachable = 'no address, host key or user to reach it with'
    // The lease record is the member's word; its age is EC2's.
    const tooOld = heldPastAnyJob(m.launchedAt?.getTime(), this.ctx.times.now, this.cfg.reuse.maxVmAgeMinutes * 60_000, this.maxJobMs)
    if (tooOld) return { candidate: true, why: tooOld, how: 'replace', remote }
    // Whether a job holds it is not known (a recycle tag, set at every lease with maxJobsPerVm 1, says nothing of it).
    if (!lease && ours) return { candidate: false, why: `its lease cannot be read from this host: ${unreachable}`, failed: ours }
    if (!lease && isProtected !== false)
      return {
        candidate: false,
        why: `unreachable from this host (${unreachable}), but ${isProtected ? 'protected from scale-in: a job may hold it' : 'its group did not say whether a job holds it'}`,
        unread: true
      }
    // A member leased for one job and marked to go since (at its release) serves no job whatever its
    // record says (no grant takes a member with a recycle tag): a live record there is a forgery
    // (root on the member), which would keep it until it is older than any job.
    const gone = m.recycle !== SERVED_ONE_JOB && leasedForOneJob(m.recycle)
    if (lease && live(lease) && !gone) return { candidate: false, why: `lease live (${lease.left} s left)`, remote }
    if (lease && live(lease))
      return {
        candidate: true,
        why: `marked for replacement (${m.recycle}); its live lease record serves no job (it was leased for one)`,
        how: 'replace',
        remote
      }
    if (m.recycle)
      return {
        candidate: true,
        why: `marked for replacement (${m.recycle}) and nobody holds it`,
        how: 'replace',
        remote,
        unread: lease ? undefined : true
      }
    if (!lease) return { candidate: true, why: `unreachable: ${unreachable}`, how: 'replace', remote, unread: true }
    if (lapsed(lease)) return { candidate: true, why: `lease lapsed ${-lease.left} s ago`, how: 'lapsed', remote }
    // No job is granted a worn-out member (the grant replaces it instead), so one nobody holds only
    // runs up cost until a job happens to come: its reservation was priced up to that age.
    const worn = wornOut(m, this.cfg, this.ctx.times.now)
    if (worn) return { candidate: true, why: `${worn} and nobody holds it`, how: 'replace', remote }
    return { candidate: false, why: `lease ${lease.state}`, remote, lease }
  }

  async member(m: Member, tags: Record<string, string>, isReady: boolean, isProtected: boolean | undefined): Promise<void> {
    const { ctx, api } = this
    const t = ctx.times
    const id = m.id
    if (TAG_KEEP in tags) return addRow(ctx, 'member', id, 'left alone', `keep tag (${TAG_KEEP})`)
    const v = await this.judge(m, isReady, isProtected)
    try {
      // Its mark, if any, stays as it is: nothing was learnt of the member.
      if (v.failed === 'auth' && this.deferred) return void this.deferred.push({ m, why: v.why })
      if (v.failed) return addRow(ctx, 'member', id, 'failed', v.why)
      const mark = tags[TAG_REAP_CANDIDATE]
      const step = markStep(v.candidate, mark, t)
      if (step === 'none' && isProtected && v.lease?.state === 'free' && v.remote) return await this.liftFree(m, v.remote, v.why)
      if (step === 'none') return addRow(ctx, 'member', id, 'left alone', v.why)
      if (step === 'unmark')
        return void (await act(ctx, 'member', id, 'unmarked', `no longer a candidate: ${v.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE])))
      if (step === 'mark')
        return void (await act(ctx, 'member', id, 'marked', v.why, () =>
          api.tag(id, { [TAG_REAP_CANDIDATE]: new Date(t.now).toISOString() })
        ))
      if (step === 'wait') return addRow(ctx, 'member', id, 'kept', waitWhy(v.why, mark, t))
      // Phase 2: the tags read again (keep, recycle), then the lease judged again under its lock.
      const again = await api.one(id)
      const fresh =
        again && LIVE_STATES.includes(again.State?.Name ?? '')
          ? membersOf({ Reservations: [{ Instances: [again] }] } as Ec2.DescribeInstancesCommandOutput, this.cfg)[0]
          : undefined
      if (!fresh) return addRow(ctx, 'member', id, 'left alone', 'ended meanwhile')
      if (TAG_KEEP in tagsOf(again as Ec2.Instance)) return addRow(ctx, 'member', id, 'left alone', `keep tag (${TAG_KEEP})`)
      if (v.how === 'lapsed' && !fresh.recycle && v.remote) return await this.takeBack(fresh, v.remote, v.why)
      let now = fresh.recycle || v.how === 'replace' ? await this.judge(fresh, isReady, isProtected) : v
      v.remote?.close()
      v.remote = now.remote
      if (now.failed) return addRow(ctx, 'member', id, 'failed', now.why)
      // Its lease unread: protection as the group sees it now, right before the removal (a job may
      // have leased it from another host since the first look, or during this judge's connect).
      if (now.candidate && now.unread) {
        const p = (await this.groupRows([id]).catch(() => undefined))?.get(id)?.protected
        if (p !== false)
          now = {
            candidate: false,
            why: `unreachable from this host, but ${p ? 'protected from scale-in now: a job may hold it' : 'its group did not say whether a job holds it'}`
          }
      }
      if (!now.candidate)
        return void (await act(ctx, 'member', id, 'unmarked', `came back to life: ${now.why}`, () => api.untag(id, [TAG_REAP_CANDIDATE])))
      await act(ctx, 'member', id, 'removed', now.why, async () => {
        if (!fresh.recycle) await api.tag(id, { [TAG_RECYCLE]: `reap: ${now.why}`.slice(0, 250) })
        await this.terminateInGroup(id, fresh.reservation !== null)
        return `replaced through the group${await this.settleFor(tagsOf(again as Ec2.Instance), again as Ec2.Instance)}`
      })
    } finally {
      v.remote?.close()
    }
  }

  /**
   * The member's lease taken by reap (granted only while nobody holds it, or its holder's lease
   * lapsed, unless `freeOnly`: the grant is atomic), so that no job's grant or release overlaps what
   * reap does with it.
   */
  private async take(m: Member, remote: Remote, freeOnly = false): Promise<{ token: string; a: AcquireAnswer }> {
    const token = randomBytes(16).toString('hex')
    const a = parseAcquire(
      await ask(
        remote,
        acquireScript(this.workRoot, {
          token,
          since: 0,
          ttlSeconds: this.cfg.lease.ttlSeconds,
          queue: false,
          owner: nameOwnerId(`reap@${hostname()}`),
          host: this.env.runner.host.key,
          jobId: newJobId(),
          freeOnly
        }),
        { label: `take ${m.id}`, timeoutMs: CALL_MS }
      ),
      `take ${m.id}`
    )
    return { token, a }
  }

  /** A lease reap took from nobody, handed straight back as it was: `released`, or `not-holder` (it lapsed, and may be another job's now). */
  private async handBack(remote: Remote, token: string, clean: boolean): Promise<'released' | 'not-holder'> {
    return oneWord(
      await ask(remote, releaseScript(this.workRoot, token, { as: clean ? 'clean' : 'dirty' }), { label: 'give back', timeoutMs: CALL_MS }),
      ['released', 'not-holder'] as const,
      'release'
    )
  }

  /** handBack, once more on a new connection when the first one broke. */
  private async handBackOnce(m: Member, remote: Remote, token: string, clean: boolean): Promise<'released' | 'not-holder'> {
    try {
      return await this.handBack(remote, token, clean)
    } catch {
      const again = await this.connectTo(this.connectInfo(m))
      try {
        return await this.handBack(again, token, clean)
      } finally {
        again.close()
      }
    }
  }

  /** Reap's lease of the member, as the pool provider takes it. */
  private heldLease(m: Member, token: string, workRoot: string): PoolLease {
    return { kind: 'ec2-pool', instanceId: m.id, token, worker: null, workRoot, connect: { ...this.connectInfo(m) } }
  }

  /** A lease whose holder's lease lapsed, given back through the pool provider: scrubbed, its protection lifted, or replaced. */
  private async scrubbed(m: Member, remote: Remote, token: string, workRoot: string): Promise<void> {
    await this.provider.release(this.heldLease(m, token, workRoot), remote, '', this.env)
  }

  /** A lapsed lease taken back (only while it is still lapsed), scrubbed and given back. */
  private async takeBack(m: Member, remote: Remote, why: string): Promise<void> {
    const { ctx } = this
    if (ctx.dryRun) return addRow(ctx, 'member', m.id, 'removed', `${why}: take it back, scrub it, give it back`)
    try {
      const { token, a } = await this.take(m, remote)
      if (!a.granted) {
        await this.api.untag(m.id, [TAG_REAP_CANDIDATE])
        return addRow(ctx, 'member', m.id, 'unmarked', `came back to life: lease ${a.state}`)
      }
      if (!a.lapsed) {
        await this.handBack(remote, token, a.clean)
        await this.api.untag(m.id, [TAG_REAP_CANDIDATE])
        return addRow(ctx, 'member', m.id, 'unmarked', 'came back to life: given back meanwhile')
      }
      await this.scrubbed(m, remote, token, a.workRoot)
      await this.api.untag(m.id, [TAG_REAP_CANDIDATE]).catch(() => undefined)
      addRow(ctx, 'member', m.id, 'removed', `${why}; lease taken back, member scrubbed and given back (or replaced if it could not be)`)
    } catch (e) {
      addRow(ctx, 'member', m.id, 'failed', `${why}; taking it back: ${(e as Error).message}`)
    }
  }

  /**
   * A member nobody holds that is still protected from scale-in (its runner died before the lift
   * at its release, or that lift failed): the group could never end it to scale in, and a `Wait`
   * instance refresh waits on it. Lifted while reap holds its lease (taken from `free` only, renewed
   * during the call), so never a job's protection; where the lease was not reap's to the end, the
   * protection is set again (it may be the next job's), and the next pass looks again.
   */
  private async liftFree(m: Member, remote: Remote, why: string): Promise<void> {
    const { ctx } = this
    const what = `${why} and protected from scale-in`
    if (ctx.dryRun) return addRow(ctx, 'member', m.id, 'unprotected', `${what}: lift its protection`)
    let taken: { token: string; a: AcquireAnswer }
    try {
      taken = await this.take(m, remote, true)
    } catch (e) {
      return addRow(ctx, 'member', m.id, 'failed', `${what}; taking its lease: ${(e as Error).message}`)
    }
    const { token, a } = taken
    if (!a.granted) return addRow(ctx, 'member', m.id, 'left alone', `${what}, but no longer free (lease ${a.state})`)
    const refused = await this.provider.liftHeld(this.heldLease(m, token, a.workRoot), remote, this.env)
    const back = await this.handBackOnce(m, remote, token, a.clean).catch(
      (e: unknown) =>
        `not handed back: ${(e as Error).message}; reap's lease lapses within ${this.cfg.lease.ttlSeconds} s, and the next job scrubs the member`
    )
    if (back !== 'released') {
      const again = await this.provider.protect(m.id, true, this.env)
      return addRow(
        ctx,
        'member',
        m.id,
        'failed',
        `${what}; the lease was not reap's to the end (${back}): protection ${again ? `not set again: ${(again as Error).message}` : 'set again'}`
      )
    }
    // Not in service any more (leaving its group): the group's scale-in does not look at it.
    if (refused && awsErrorName(refused) === 'ValidationError')
      return addRow(ctx, 'member', m.id, 'left alone', `${what}; nothing to lift now: ${(refused as Error).message}`)
    if (refused)
      return addRow(ctx, 'member', m.id, 'failed', `${what}; lifting it (autoscaling:SetInstanceProtection): ${(refused as Error).message}`)
    addRow(ctx, 'member', m.id, 'unprotected', `${what}; lifted`)
  }

  /**
   * Has the group replace the member. One a hook reserved goes with the desired capacity lowered (as
   * the pool provider does), so its replacement is reserved by whoever asks for it; where the
   * group's minimum refuses that, it is replaced as one of the members the group keeps.
   */
  private async terminateInGroup(id: string, reserved: boolean): Promise<void> {
    const { sdk, client } = autoScalingClient(this.cfg)
    // A dead job's member keeps the scale-in protection its lease set. It does not stop this terminate;
    // lifted first all the same, as a precaution (as ec2-pool.ts recycle does), a failure ignored.
    await this.provider.protect(id, false, this.env)
    const terminate = (decrement: boolean): Promise<unknown> =>
      retry(
        () =>
          client.send(new sdk.TerminateInstanceInAutoScalingGroupCommand({ InstanceId: id, ShouldDecrementDesiredCapacity: decrement })),
        { attempts: 6, minDelayMs: 300, maxDelayMs: 4000, signal: this.ctx.signal, retryable: isRetryableAwsError }
      )
    try {
      await (reserved
        ? terminate(true).catch((e: unknown) => (awsErrorName(e) === 'ValidationError' ? terminate(false) : Promise.reject(e)))
        : terminate(false))
    } catch (e) {
      // Not (or no longer) in the group: ended already.
      if (awsErrorName(e) !== 'ValidationError') throw e
    } finally {
      client.destroy()
    }
  }

  /** The member's reservation (the one its scale-out or start made), settled with its real time. */
  private async settleFor(tags: Record<string, string>, inst: Ec2.Instance): Promise<string> {
    const id = tags[TAG_RESERVATION]
    if (!id) return ''
    const r = (await this.ctx.ledger.unsettled()).find((x) => x.id === id)
    if (!r) return ''
    const s = await this.ctx.ledger.settle(id, {
      startedAt: r.attachedAt ?? (inst.LaunchTime ? new Date(inst.LaunchTime).getTime() : undefined),
      endedAt: passNow(this.ctx)
    })
    return `; reservation ${id} settled (${s.billedSeconds} s)`
  }
}
