// Static hosts: a fixed list of SSH-reachable Docker hosts. A job takes a free slot, marked by an
// atomic `mkdir` of a lease folder on the host itself, so several runners can share one list.
import type { RunnerHost } from '../runner-host'
import { z } from 'zod'
import { HookError, RemoteCommandError, TransportError, isPermanentTransport } from '../errors'
import { privateJobsDirScript } from '../docker/job-folder'
import { ask, expectEach, record, UnexpectedAnswer } from '../remote/answer'
import { check, OutputLimitError, type ConnectInfo, type Remote } from '../remote/remote'
import { shPath, shq } from '../remote/quote'
import { holdLock } from '../remote/plain-file'
import { waitUntil } from '../retry'
import { monoMs } from '../mono-clock'
import { CONNECT_GRACE_MS, CONNECT_WHOLE_MS, HostLinks } from './host-links'
import { MAX_HOST_SLOTS, type StaticConfig } from '../config'
import { HEX16 } from '../input-rules'
import type { WorkerProcess } from '../worker-process'
import type { Acquired, JobRef, LeaseBase, OrphanReport, ProviderEnv, ProviderKind, Tidy, VmProvider } from './provider'

export interface StaticLease extends LeaseBase<'static'> {
  /** Index in provider.hosts. */
  index: number
  slot: number
}

export function leaseDir(workRoot: string, slot: number): string {
  return `${workRoot}/leases/slot-${slot}`
}

/**
 * Shell: frees the lease folder `dir` (a shell word), renamed first to `aside` beside it and removed
 * there. `rm -rf` of the folder in place empties it before it removes it, and a lease of another
 * runner (`mv -T`, which replaces an empty folder) could take the slot's name in between: that
 * lease then held the slot and the removal failed on it ("Directory not empty"). Renamed whole,
 * the slot is held or free, never an empty folder another lease can land on. A slot already gone
 * is free.
 */
export function freeSlotScript(dir: string, aside: string, jobId: string): string {
  return (
    `rm -rf ${aside} && if ! e=$(mv -T ${dir} ${aside} 2>&1); then ` +
    `if [ -e ${dir} ] || [ -L ${dir} ]; then echo "$e" >&2; exit 1; fi; fi; ` +
    // The caller tested the owner before: the same runner's next job may have taken the slot over
    // since (its owner file put in place), and that lease is put back, not removed. (Leased by a
    // third between the two renames, it cannot be: that is said, and the slot is the third's.)
    `if [ -d ${aside} ] && [ ! -L ${aside} ] && [ "$(${ownerField(`${aside}/owner`, 2)})" != ${shq(jobId)} ]; then ` +
    `mv -T ${aside} ${dir} 2>/dev/null || { echo "the slot was taken over by another job of this runner while it was released, and leased again meanwhile" >&2; exit 1; }; ` +
    `else rm -rf ${aside}; fi`
  )
}

/**
 * Shell: field `n` of a slot's owner file `file` (one shell word), read only when it is a plain file:
 * a job root on the host may leave a FIFO there, which would hold every runner's lease call. (It
 * may swap one in between the test and the read; the call's bound is what ends that.)
 */
export const ownerField = (file: string, n: number): string => `[ -f ${file} ] && [ ! -L ${file} ] && cut -d' ' -f${n} ${file} 2>/dev/null`

/** How long a lease script waits for the host's lease lock (a job root on the host can hold it). */
const LEASE_LOCK_WAIT_S = 10

/**
 * Shell: `body` run holding the host's lease lock, `<workRoot>/.leases.lock` (flock where the host
 * has it; opened only as a plain file: a FIFO planted there would hold every runner's lease call).
 * Every check-then-act on the slots takes it: a stale lease taken over while reap or the dead job's
 * own release freed the slot and another runner leased it wrote over that runner's lease, two jobs
 * on one slot. Without a leases folder nothing is held, and nothing locked. Taken in the script's
 * own shell, it is held until the script ends.
 */
export function underLeaseLock(workRoot: string, body: string): string {
  const leases = shPath(`${workRoot}/leases`)
  const lock = shPath(`${workRoot}/.leases.lock`)
  const held = `the lease lock ${workRoot}/.leases.lock stayed taken for ${LEASE_LOCK_WAIT_S} s`
  return `if [ -d ${leases} ] && [ ! -L ${leases} ]; then { ${holdLock(lock, LEASE_LOCK_WAIT_S, held, 7)}; } || exit 7; fi; ${body}`
}

/**
 * Shell: frees the slot folder `dir` (a shell word) if job `jobId` holds it, under the lease lock
 * (the release of cleanup_job, and reap's of a dead job).
 */
export function freeJobSlotScript(workRoot: string, dir: string | string[], jobId: string): string {
  const one = (d: string): string =>
    `[ "$(${ownerField(`${d}/owner`, 2)})" != ${shq(jobId)} ] || { ${freeSlotScript(d, shPath(asideOf(workRoot, jobId)), jobId)}; }`
  return underLeaseLock(workRoot, (Array.isArray(dir) ? dir : [dir]).map(one).join('; '))
}

/** Where a job's released lease folder is removed (see freeSlotScript). */
export const asideOf = (workRoot: string, jobId: string): string => `${workRoot}/leases/.gone-${jobId}`

/**
 * The slot numbers a release names (`released-slot-N` records), each once: the host's word (a job
 * was root there), so only slots that can exist (0 to MAX_HOST_SLOTS - 1), and a host that repeats
 * one cannot fill the step log with a line per record.
 */
function releasedSlots(records: string[], label: string): number[] {
  const slots = expectEach(records, /^released-slot-(0|[1-9][0-9]?)$/, label).map((r) => Number(r.slice('released-slot-'.length)))
  const beyond = slots.find((n) => n >= MAX_HOST_SLOTS)
  if (beyond !== undefined) throw new UnexpectedAnswer(`${label}: the host named slot ${beyond}, and a host has at most ${MAX_HOST_SLOTS}`)
  return [...new Set(slots)]
}

/**
 * Shell: removes the lease folders an owner holds on this host (but `keep`), a symlink never
 * followed, and its half-made ones; names each lease released as a record `released-slot-N`.
 */
function releaseOwnedScript(workRoot: string, owner: string, keepWord?: string): string {
  const leases = shq(`${workRoot}/leases`)
  return (
    `rm -rf ${leases}/.new-${owner}-* ${leases}/.gone-${owner}-*; ` +
    `for d in ${leases}/slot-*; do ` +
    `if [ -L "$d" ]; then continue; fi; ` +
    `${keepWord ? `[ "$d" = ${keepWord} ] || ` : ''}[ "$(${ownerField('"$d/owner"', 1)})" != ${shq(owner)} ] || ` +
    `{ g=${leases}/.gone-${owner}-"\${d##*/}"; mv -T "$d" "$g" 2>/dev/null && rm -rf "$g" && ${record('"released-${d##*/}"')}; }; ` +
    `done; true`
  )
}

/** The lease script's exit when it ran past the time it may act (it took nothing, or gave it up). */
export const LEASE_LATE_EXIT = 8

/**
 * Shell: takes the first of `dirs` that is free (new), or that a dead job of this runner holds
 * (stale, taken over), in order; answers `slot-N` and how, or busy when another job holds each. One
 * call for all of a host's slots: a round costs a host one round trip, not one per busy slot.
 * A lease appears whole: its folder is made beside it with the owner file inside, then renamed
 * into place, so no slot is ever held without saying by whom (a release finds and frees it).
 * Anything else that fails is the operator's to fix and fails loudly with the command's own
 * words, never answered as busy.
 */
export function leaseScript(workRoot: string, dirs: string[], owner: string, jobId: string, mark: string, actWithinS = 25): string {
  const leases = shq(`${workRoot}/leases`)
  const t = shq(`${workRoot}/leases/.new-${owner}-${jobId}`)
  // A call the hook gave up on (past its bound: a stalled file system) may still run on, and
  // sshd does not end it: one that finishes late must not act, or its release of this runner's
  // other leases would free the lease this job (or the runner's next one) took since. Whole
  // seconds since the host's boot (its wall clock only where /proc/uptime cannot be read: an
  // NTP step back, or a job root there, would stop that clock from ever saying late), counted
  // from the script's start.
  const tooLate = `[ $(($(secs) - t0)) -ge ${actWithinS} ]`
  const late = `echo "the lease call ran past its ${actWithinS} s and gave up (the hook no longer waits for it)" >&2; exit ${LEASE_LATE_EXIT}`
  return (
    // The clock is chosen once: a source that changed between readings would make any call late, or none.
    `u=; { read -r u _ < /proc/uptime; } 2>/dev/null; case "$u" in ` +
    `[0-9]*) secs() { u=; { read -r u _ < /proc/uptime; } 2>/dev/null; echo "\${u%%.*}"; };; *) secs() { date +%s; };; esac; t0=$(secs); ` +
    // umask 077: the lease folders (and the jobs folder) are the SSH user's alone.
    `umask 077; { mkdir -p ${leases} && chmod 700 ${leases} && ${privateJobsDirScript(workRoot)}; } || ` +
    `{ echo "cannot create ${workRoot}/leases and ${workRoot}/jobs (remote.workRoot) as $(id -un)" >&2; exit 3; }; ` +
    // printf, not echo: dash's echo reads backslashes in the runner's name (`\c` ended the line).
    underLeaseLock(workRoot, '') +
    `rm -rf ${t}; { mkdir ${t} && printf '%s\n' ${shq(mark)} > ${t}/owner; } || { rm -rf ${t}; echo "cannot write a lease into ${workRoot}/leases as $(id -un)" >&2; exit 4; }; ` +
    `r=; got=; for d in ${dirs.map(shq).join(' ')}; do ` +
    `if ${tooLate}; then rm -rf ${t}; ${late}; fi; ` +
    // After a failed rename: a lease folder is judged by its owner below; something else in the
    // slot's place is the operator's to fix; a slot released meanwhile (by the rename's failure, or
    // by any test of it since: another runner's job may end at any moment) is renamed into again.
    // Each test holds whatever the slot became in between: a folder gone and leased again, or a
    // lease released after it was seen (its owner then reads as no one's: busy, the next slot tried).
    `i=0; while :; do if e=$(mv -T ${t} "$d" 2>&1); then r=new; break; fi; ` +
    `i=$((i + 1)); if [ -d "$d" ] && [ ! -L "$d" ]; then break; fi; ` +
    `if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; } || [ $i -ge 5 ]; then rm -rf ${t}; echo "$e" >&2; exit 5; fi; done; ` +
    `if [ "$r" = new ]; then got=$d; break; fi; ` +
    `if [ "$(${ownerField('"$d/owner"', 1)})" = ${shq(owner)} ]; then mv -f ${t}/owner "$d/owner" && rm -rf ${t} || exit 6; r=stale; got=$d; break; fi; ` +
    `done; ` +
    `if [ -z "$got" ]; then rm -rf ${t}; ${record('busy')}; exit 0; fi; ` +
    // Taken late: given up again (the slot names this job; a takeover's dead lease goes with it).
    `if ${tooLate}; then { ${freeSlotScript('"$got"', shPath(asideOf(workRoot, jobId)), jobId)}; }; ${late}; fi; ` +
    `${releaseOwnedScript(workRoot, owner, '"$got"')}; ${record('"${got##*/}"')}; ${record('$r')}`
  )
}

/**
 * The slot's owner file: owner, job, runner, runner host (`hostname/key`, see runner-host.ts), time,
 * and the runner's worker process (pid and start time, `-` when unknown): reap on that runner host
 * judges the job dead once the worker is gone.
 */
export function leaseMark(owner: string, jobId: string, runnerName: string, worker: WorkerProcess | null, me: RunnerHost): string {
  const w = worker ? `${worker.pid} ${worker.start || '-'}` : '- -'
  return `${owner} ${jobId} ${runnerName.replace(/\s/g, '_')} ${me.name}/${me.key} ${new Date().toISOString()} ${w}`
}

export interface LeaseMark {
  owner: string
  jobId: string
  /** The runner host's hostname as written. */
  runnerHost: string
  /** Its key; null in a line of an older build, which wrote the hostname alone. */
  runnerHostKey: string | null
  /** Null: the lease names no worker (made by an older hook, or the worker was not found). */
  worker: WorkerProcess | null
}

export function parseLeaseMark(line: string): LeaseMark | null {
  const f = line.trim().split(' ')
  if (f.length < 5 || !HEX16.test(f[0]) || !HEX16.test(f[1])) return null
  // Written by the hook as decimal; anything else (`1e3`, `0x10`, `+5`) was not.
  const pid = /^[1-9][0-9]{0,9}$/.test(f[5] ?? '') ? Number(f[5]) : 0
  const worker = pid > 1 && /^([0-9]{1,20}|-)$/.test(f[6] ?? '') ? { pid, start: f[6] === '-' ? '' : f[6] } : null
  const keyed = /^(.+)\/([0-9a-f]{16})$/.exec(f[3])
  return { owner: f[0], jobId: f[1], runnerHost: keyed ? keyed[1] : f[3], runnerHostKey: keyed ? keyed[2] : null, worker }
}

const hostKey = (c: ConnectInfo): string => `${c.host}:${c.port}`

/** What a lease call on a host may take: a few file operations, where a job root there may stall it. */
const LEASE_CALL_MS = 30_000
/** A release after the job's cancel: the runner sends SIGTERM 7.5 s after its SIGINT. */
const RELEASE_AFTER_CANCEL_MS = 3_000
/**
 * How long a lease script may act, in whole seconds of the host's clock: well inside the hook's
 * bound (the script starts later than the hook's clock, and counts whole seconds), at least 2 so
 * that a call of a moment, crossing one second boundary, still acts.
 */
const actWithin = (callMs: number): number => Math.max(2, Math.floor(callMs / 1000) - 5)

export class StaticHostProvider implements VmProvider<StaticLease> {
  readonly kind = 'static'
  readonly releaseDestroys = false
  constructor(
    private readonly cfg: StaticConfig,
    private readonly workRoot: string,
    /** The bound of each lease call on a host (one a job root there stalls must not hold every runner). */
    private readonly callMs = LEASE_CALL_MS
  ) {}

  describe(l: StaticLease): string {
    return `${hostKey(l.connect)} slot ${l.slot}`
  }

  candidates(): StaticLease[] {
    return this.cfg.hosts.flatMap((h, index) =>
      Array.from({ length: h.slots }, (_, slot): StaticLease => ({
        kind: 'static',
        index,
        slot,
        connect: { host: h.host, port: h.port, user: h.user, identityFile: h.identityFile, knownHostsFile: h.knownHostsFile }
      }))
    )
  }

  async acquire(job: JobRef, env: ProviderEnv): Promise<Acquired<StaticLease>> {
    const { log } = env
    const runnerName = env.runner.runnerName
    const owner = job.owner
    const byHost = new Map<number, StaticLease[]>()
    for (const l of this.candidates()) byHost.set(l.index, [...(byHost.get(l.index) ?? []), l])
    let lastError: unknown = null
    /** Hosts that did not answer on the last pass, with why: named when the wait ends, not hidden behind "busy". */
    const down = new Map<number, string>()
    /**
     * Hosts that waiting will not fix (a wrong host key or key pair, the lease script's own refusal):
     * left out for this job, so one broken or hostile host does not fail jobs the others can take.
     * When every host is here, the acquire fails at once with the reason.
     */
    const dead = new Map<number, { why: string; error: unknown }>()
    const giveUp = (index: number, c: ConnectInfo, e: unknown): void => {
      const why = `${hostKey(c)}: ${(e as Error).message}`
      dead.set(index, { why, error: e })
      down.delete(index)
      if (dead.size < byHost.size) log.warn(`host ${why}; not tried again for this job`)
    }
    /** The acquire's end when no host is left to try: one host's own error, or each host's reason. */
    const noneLeft = (): unknown => {
      const all = [...dead.values()]
      if (all.length === 1) return all[0].error
      const why = `no host can be leased: ${all.map((d) => d.why).join('; ')}`
      // A connection problem (exit 75) only when every host's was one; the kind is the last host's.
      const transport = all.every((d) => d.error instanceof TransportError)
      return transport ? new TransportError(why, (all[all.length - 1].error as TransportError).kind) : new HookError(why)
    }
    const hosts = [...byHost.values()].map((leases) => leases[0].connect)
    const links = new HostLinks(hosts, env, (index, e) => {
      if (isPermanentTransport(e)) return giveUp(index, hosts[index], e)
      lastError = e
      down.set(index, `${hostKey(hosts[index])}: ${e.message}`)
      log.warn(`host ${hostKey(hosts[index])} unreachable: ${e.message}`)
    })
    /** Hosts whose last lease call did not answer (a stalled file system, a job root holding it): tried after the others. */
    const stalled = new Set<number>()
    const endAt = monoMs() + this.cfg.acquireTimeoutSeconds * 1000
    let asked = false
    /** One round over the hosts, in list order but for stalled ones, and their slots: a lease, or undefined when none is free now. */
    const tryAll = async (): Promise<Acquired<StaticLease> | undefined> => {
      const order = [...byHost.keys()].sort((a, b) => Number(stalled.has(a)) - Number(stalled.has(b)) || a - b)
      for (const index of order) {
        if (dead.has(index)) continue
        const c = hosts[index]
        // A round that outlived the wait's deadline starts no more connects or lease calls (each may
        // take a while) once one lease call went out; acquireTimeoutSeconds 0 is one whole round.
        const timeLeft = monoMs() < endAt
        if (this.cfg.acquireTimeoutSeconds > 0 && asked && !timeLeft) return undefined
        // A host that was down is not waited for: its connect goes on while the others are tried.
        // With no time for another round, a connect is waited for whole (its own bound).
        const remote = await links.ready(index, down.has(index) ? 0 : timeLeft ? CONNECT_GRACE_MS : CONNECT_WHOLE_MS)
        if (!remote || dead.has(index)) continue
        down.delete(index)
        try {
          asked = true
          const lease = await this.take(remote, byHost.get(index)!, job.jobId, owner, runnerName, env)
          stalled.delete(index)
          if (lease) return { lease, remote: (await links.close(index))! }
          busy.add(index)
        } catch (e) {
          if (env.signal.aborted) throw e
          // This host's answer, or its silence, is this host's: the others are still tried.
          busy.delete(index)
          await links.drop(index)
          // The lease script's own refusal, or an answer no lease script gives (a forced command, a
          // shell that prints around it): the same on the next round. One that ran late and gave up
          // (a stall) is this host's slowness, as a call past its bound is: tried again.
          const late = e instanceof RemoteCommandError && e.exitCode === LEASE_LATE_EXIT
          if (!late && (e instanceof RemoteCommandError || e instanceof UnexpectedAnswer || e instanceof OutputLimitError)) {
            giveUp(index, c, e)
            continue
          }
          lastError = e
          stalled.add(index)
          down.set(index, `${hostKey(c)}: ${(e as Error).message}`)
          log.warn(`host ${hostKey(c)}: ${(e as Error).message}; trying again later`)
        }
      }
      if (dead.size === byHost.size) throw noneLeft()
      return undefined
    }
    /** Hosts whose every slot another job held when last asked. */
    const busy = new Set<number>()
    /** The wait's end: why each host could not be leased, as far as it was asked. */
    const timedOut = (): Error => {
      const failed = [...down.values(), ...[...dead.values()].map((d) => d.why)]
      const unasked = [...byHost.keys()].filter((i) => !busy.has(i) && !down.has(i) && !dead.has(i))
      if (lastError && !busy.size && !dead.size && !unasked.length)
        return new TransportError(
          `no host could be leased: ${(lastError as Error).message}`,
          lastError instanceof TransportError ? lastError.kind : 'network'
        )
      if (!failed.length && !unasked.length)
        return new HookError(
          `no free host after ${this.cfg.acquireTimeoutSeconds} s: every slot of provider.hosts is leased by another job`
        )
      const why = [
        busy.size ? 'every slot of the hosts that answered is leased by another job' : '',
        failed.length ? `unreachable or refused: ${failed.join('; ')}` : '',
        unasked.length ? `not asked before the deadline: ${unasked.map((i) => hostKey(hosts[i])).join(', ')}` : ''
      ]
      return new HookError(`no free host after ${this.cfg.acquireTimeoutSeconds} s: ${why.filter(Boolean).join('; ')}`)
    }
    try {
      return await waitUntil(tryAll, {
        timeoutMs: this.cfg.acquireTimeoutSeconds * 1000,
        minDelayMs: 500,
        maxDelayMs: 5000,
        signal: env.signal,
        // Said once when the wait starts, then every 30 s.
        onRetry: (_e, attempt) => attempt === 1 && log.progress(this.waitNote(links.size)),
        progressEveryMs: 30_000,
        onProgress: () => log.progress(this.waitNote(links.size)),
        onTimeout: timedOut
      })
    } finally {
      await links.close()
    }
  }

  private waitNote(reachable: number): string {
    return reachable ? `waiting for a free host (all ${this.candidates().length} slots busy)` : 'waiting for a host to become reachable'
  }

  /** Tries the host's slots in one call: the lease taken, or null when each is another job's. */
  private async take(
    remote: Remote,
    leases: StaticLease[],
    jobId: string,
    owner: string,
    runnerName: string,
    env: ProviderEnv
  ): Promise<StaticLease | null> {
    const dirs = leases.map((l) => leaseDir(this.workRoot, l.slot))
    const mark = leaseMark(owner, jobId, runnerName, env.runner.worker, env.runner.host)
    const host = hostKey(leases[0].connect)
    const label = leases.length === 1 ? `lease slot ${leases[0].slot} on ${host}` : `lease a slot (0 to ${leases.length - 1}) on ${host}`
    // A runner runs one job at a time: a lease of its own is from a job that died. It is taken
    // over, and once a slot is ours, its other leases on this host are released.
    try {
      const r = await ask(remote, leaseScript(this.workRoot, dirs, owner, jobId, mark, actWithin(this.callMs)), {
        label,
        timeoutMs: this.callMs,
        signal: env.signal
      })
      if (r.length === 0) throw new UnexpectedAnswer(`${label}: the remote gave no answer`)
      const [answer] = expectEach(r.slice(-1), /^(new|stale|busy)$/, label)
      if (answer === 'busy') {
        if (r.length !== 1) throw new UnexpectedAnswer(`${label}: unexpected answer: ${JSON.stringify(r.slice(0, 4))}`)
        return null
      }
      // The slot the host names: one of those asked, or the answer is not a lease script's.
      const [taken] = expectEach(r.slice(-2, -1), /^slot-(0|[1-9][0-9]?)$/, label)
      const lease = leases.find((l) => `slot-${l.slot}` === taken)
      if (!lease) throw new UnexpectedAnswer(`${label}: the host named ${taken ?? 'no slot'}, which was not asked for`)
      const released = releasedSlots(r.slice(0, -2), label)
      env.log.debug(`leased ${host} slot ${lease.slot} (${answer})`)
      for (const n of released) env.log.progress(`released this runner's stale lease of slot ${n} on ${host}`)
      return lease
    } catch (e) {
      // Whatever went wrong after the mkdir, no slot may stay taken by a job that never started;
      // after a cancel, within the few seconds the runner leaves before its SIGKILL. A call that timed
      // out may still run on on the host (sshd does not end a command whose channel closed): past
      // its time it acts no more (leaseScript), and a slot it took names this job, which this
      // runner's next lease there, a cleanup without state or `reap` frees.
      await this.freeSlots(leases, remote, jobId, env.signal.aborted ? RELEASE_AFTER_CANCEL_MS : this.callMs).catch(() => undefined)
      throw e
    }
  }

  async release(lease: StaticLease, remote: Remote | null, jobId: string, env?: ProviderEnv): Promise<void> {
    if (!remote && !env) throw new HookError('releasing a static host slot needs a connection to the host')
    // Without the caller's connection (it could not reach the host), one of its own.
    const own = remote ? null : await env!.connect(lease.connect)
    try {
      await this.freeSlots([lease], remote ?? own!, jobId, this.callMs)
    } finally {
      own?.close()
    }
  }

  /** Frees whichever of `leases` this job holds, in one call (only its own: a stale state must not free a slot another job holds now). */
  private async freeSlots(leases: StaticLease[], remote: Remote, jobId: string, timeoutMs: number): Promise<void> {
    const dirs = leases.map((l) => shq(leaseDir(this.workRoot, l.slot)))
    await check(remote, freeJobSlotScript(this.workRoot, dirs, jobId), { label: 'release the host slot', timeoutMs })
  }

  /** Every slot this runner holds on a host (cleanup without state): the slots released. */
  async releaseOwned(remote: Remote, owner: string): Promise<string[]> {
    const label = "release this runner's host slots"
    return releasedSlots(await ask(remote, underLeaseLock(this.workRoot, releaseOwnedScript(this.workRoot, owner)), { label }), label).map(
      (n) => `slot-${n}`
    )
  }

  async cleanupOrphans(owner: string, env: ProviderEnv, tidy: Tidy): Promise<OrphanReport> {
    const report: OrphanReport = { released: [], unreachable: [] }
    const seen = new Set<string>()
    for (const c of this.candidates()) {
      const machine = hostKey(c.connect)
      if (seen.has(machine)) continue
      seen.add(machine)
      try {
        const remote = await env.connect(c.connect)
        try {
          await tidy(remote, machine)
          for (const slot of await this.releaseOwned(remote, owner)) report.released.push(`${machine} ${slot.replace('-', ' ')}`)
        } finally {
          remote.close()
        }
      } catch (e) {
        report.unreachable.push({ machine, reason: (e as Error).message })
      }
    }
    return report
  }
}

export const staticHosts: ProviderKind<StaticConfig, StaticLease> = {
  create: (cfg, workRoot) => new StaticHostProvider(cfg, workRoot),
  summary: (cfg) => `${cfg.hosts.length} host${cfg.hosts.length === 1 ? '' : 's'}`,
  lease: {
    fields: { index: z.number().int(), slot: z.number().int() },
    issues(l, cfg) {
      const c = cfg.hosts[l.index]
      if (!c) return [['index', 'no such host in provider.hosts']]
      const out: [string, string][] = []
      if (l.slot < 0 || l.slot >= c.slots) out.push(['slot', `is not a slot of provider.hosts.${l.index}`])
      for (const k of ['host', 'port', 'user', 'identityFile', 'knownHostsFile'] as const)
        if (l.connect[k] !== c[k]) out.push([k, `differs from provider.hosts.${l.index}.${k}`])
      return out
    }
  }
}
