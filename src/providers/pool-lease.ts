// A pool member's lease, kept on the member itself: one record under a flock, so any number of
// runner hosts share a pool with no service of ours. Each operation below is one SSH exec and one
// atomic step. Times are the member's own clock (a lease's expiry never depends on runner clocks);
// waiting order compares the waiters' own start times (runner clocks, NTP-close).
//
// What the member answers is untrusted (a job was root there): every answer is framed and matched
// exactly, and a record that does not parse counts as "dirty" (scrubbed before anyone uses it).
import { expectEach, record, UnexpectedAnswer } from '../remote/answer'
import { shPath, shq } from '../remote/quote'
import { plainFileOnly } from '../remote/plain-file'
import { LEASE_CALL } from '../remote/lease-call'
import { HEX16, isWorkRoot } from '../input-rules'

/** Seconds after which a waiter that stopped polling is dropped from a member's queue. */
export const QUEUE_STALE_SECONDS = 15
/**
 * A recorded expiry further ahead than this is not one any runner wrote (the longest ttlSeconds the
 * config allows, and slack): the lease counts as lapsed. Never the asker's own ttl, which may be shorter.
 */
const EXPIRY_BOUND_SECONDS = 3600 + 600

export const leaseFolder = (workRoot: string): string => `${workRoot}/pool`

/**
 * Shell text: `$ex`, the lease record's expiry, kept only when it is a time; else 0 (none: lapsed).
 * More than 11 digits is no time any runner wrote, and the shell's test and arithmetic fail on it
 * (dash: "Illegal number"). The lease scripts and reap's read of a lease both use it.
 */
export const EXPIRY_OR_NONE = `case "$ex" in ''|*[!0-9]*|????????????*) ex=0;; esac; `

/**
 * Opens the member's lease folder, takes its lock and reads the record into st h ex o j r (now =
 * member time): state, holder's token, expiry, owner, job, and the holder's runner host (hex id;
 * empty in a record of an older hook).
 */
function locked(workRoot: string): string {
  const p = shPath(leaseFolder(workRoot))
  return (
    LEASE_CALL +
    `umask 077; P=${p}; ` +
    `{ mkdir -p "$P" && [ -d "$P" ] && [ ! -L "$P" ]; } 2>/dev/null || { echo "cannot use $P (remote.workRoot) as $(id -un)" >&2; exit 3; }; ` +
    // A job (root there) may have planted a FIFO or a symlink: anything but a plain file is replaced,
    // never opened (the lock before it is taken, the rest under it).
    `plain() { ${plainFileOnly('"$P/$1"')}; }; plain lock; ` +
    // Tried with `true` first: a failed redirection of `exec` (a special built-in) ends the shell
    // with its own status instead of this one and its message.
    `{ true >> "$P/lock"; } 2>/dev/null || { echo "cannot write $P/lock as $(id -un) (a full disk?)" >&2; exit 3; }; exec 9>>"$P/lock"; ` +
    `command -v flock >/dev/null || { echo "flock (util-linux) is not installed on this member" >&2; exit 3; }; ` +
    `flock -w 20 9 || { echo "the lease lock $P/lock stayed taken for 20 s" >&2; exit 4; }; ` +
    `for f in lease log queue lease.new queue.new log.new; do plain $f; done; ` +
    `now=$(date +%s); st=; h=; ex=; o=; j=; r=; ` +
    `[ -f "$P/lease" ] && [ ! -L "$P/lease" ] && read -r st h ex o j r < "$P/lease"; ` +
    EXPIRY_OR_NONE +
    `put() { printf '%s\\n' "$*" > "$P/lease.new" && mv -f "$P/lease.new" "$P/lease"; }; ` +
    // An append-only history of grants and releases, for audits (and the tests' double-lease check); kept under 1 MiB.
    `note() { printf '%s %s\\n' "$now" "$*" >> "$P/log"; }; `
  )
}

export interface Waiter {
  /** The lease's secret-free identity (random hex): who holds or waits. */
  token: string
  /** When this job started waiting (ms since the epoch): the older waiter goes first. */
  since: number
}

export interface AcquireArgs extends Waiter {
  ttlSeconds: number
  /** Join the member's queue when it is not granted (the member this job waits at). */
  queue: boolean
  owner: string
  jobId: string
  /** The runner host's id (runnerHostId): a cleanup without state takes over only its own host's leases. */
  host: string
  /** Granted only from `free` (reap's brief hold of a member nobody holds): never a lapsed or unreadable record. */
  freeOnly?: boolean
}

export type AcquireAnswer =
  | {
      granted: true
      clean: boolean
      lapsed: boolean
      diskPercent: number
      docker: string | null
      /** When Docker did not answer: what its CLI said (its last lines, printable ASCII), or that it said nothing in time. */
      dockerError: string | null
      workRoot: string
    }
  | { granted: false; state: 'held' | 'retired' | 'queued'; ahead: number; waiting: number; expiresIn: number }

/** How much of what Docker's CLI said on a member is kept (the member is a job's: bounded, printable). */
const DOCKER_ERROR_MAX = 300

/**
 * Grants the member when it is free (or its holder's lease lapsed) and no live waiter queued there
 * is older; else answers busy (and queues this waiter when asked). A granted member also reports
 * its disk use and Docker's version (the health check costs no extra round trip).
 */
export function acquireScript(workRoot: string, a: AcquireArgs): string {
  const q = `"$P/queue"`
  const w = shPath(workRoot)
  return (
    locked(workRoot) +
    `avail=0; clean=0; lapsed=0; ` +
    `case "$st" in ` +
    (a.freeOnly
      ? `held) ;; `
      : `held) if [ "$ex" -lt "$now" ] || [ "$ex" -gt $((now + ${EXPIRY_BOUND_SECONDS})) ]; then avail=1; lapsed=1; fi;; `) +
    `free) avail=1; [ "$h" = clean ] && clean=1;; ` +
    `retired) ;; ` +
    `*) ${a.freeOnly ? ':' : 'avail=1'};; esac; ` +
    `touch ${q}; awk -v now="$now" -v me=${a.token} '$3+0 >= now-${QUEUE_STALE_SECONDS} && $3+0 <= now+${QUEUE_STALE_SECONDS} && $2 != me && NF == 3' ${q} > ${q}.new; ` +
    `ahead=$(awk -v s=${a.since} -v me=${a.token} '$1+0 < s || ($1+0 == s && $2 < me)' ${q}.new | wc -l); ` +
    `waiting=$(wc -l < ${q}.new); ` +
    `if [ "$avail" = 1 ] && [ "$ahead" -eq 0 ]; then ` +
    `put held ${a.token} $((now + ${a.ttlSeconds})) ${a.owner} ${a.jobId} ${a.host} && mv -f ${q}.new ${q} || exit 5; ` +
    `[ "$(wc -c < "$P/log" 2>/dev/null || echo 0)" -lt 1048576 ] || { tail -c 524288 "$P/log" > "$P/log.new"; mv -f "$P/log.new" "$P/log"; }; ` +
    `note grant ${a.token} "\${st:-none}" "$lapsed"; ` +
    `exec 9>&-; ` +
    `disk=$(df -P ${w} /var/lib/docker 2>/dev/null | awk 'NR > 1 { sub("%", "", $5); if ($5 + 0 > m) m = $5 + 0 } END { print m + 0 }'); ` +
    // Docker's own words when it does not answer (not installed, no access to its socket, daemon
    // stopped): what a job is told, and whether members fail alike (the pool's image, not one member).
    `de=$(mktemp) || exit 6; dv=$(timeout 10 docker version --format '{{.Server.Version}}' 2>"$de" | head -c 64); ` +
    `dm=; [ -n "$dv" ] || dm=$(tail -n 2 "$de" | LC_ALL=C tr -c '[:print:]' ' ' | head -c ${DOCKER_ERROR_MAX}); rm -f "$de"; ` +
    `${record('granted')}; ${record('"$clean"')}; ${record('"$lapsed"')}; ${record('"$disk"')}; ${record('"${dv:--}"')}; ${record(w)}; ${record('"${dm:--}"')}; ` +
    `else ` +
    (a.queue ? `printf '%s %s %s\\n' ${a.since} ${a.token} "$now" >> ${q}.new; ` : '') +
    `mv -f ${q}.new ${q}; ` +
    `[ "$st" = retired ] && s=retired || s=${a.queue ? 'queued' : 'held'}; ` +
    `${record('"$s"')}; ${record('"$ahead"')}; ${record('"$waiting"')}; ${record('"$((ex - now))"')}; ` +
    `fi`
  )
}

const INT = /^-?[0-9]{1,12}$/

export function parseAcquire(records: string[], label: string): AcquireAnswer {
  if (records[0] === 'granted' && records.length === 7) {
    const [, clean, lapsed, disk, docker, workRoot, dockerSaid] = records
    if (!isWorkRoot(workRoot))
      throw new UnexpectedAnswer(`${label}: the member's work root ${JSON.stringify(workRoot.slice(0, 200))} is not a plain absolute path`)
    expectEach([clean, lapsed], /^[01]$/, label)
    expectEach([disk], /^[0-9]{1,3}$/, label)
    expectEach([docker], /^[A-Za-z0-9.+~_-]{1,64}$/, label)
    expectEach([dockerSaid], new RegExp(`^[\\x20-\\x7e]{1,${DOCKER_ERROR_MAX}}$`), label)
    return {
      granted: true,
      clean: clean === '1',
      lapsed: lapsed === '1',
      diskPercent: Number(disk),
      docker: docker === '-' ? null : docker,
      dockerError:
        docker !== '-' ? null : dockerSaid.trim() === '-' || !dockerSaid.trim() ? 'no version and no error within 10 s' : dockerSaid.trim(),
      workRoot
    }
  }
  if (records.length === 4 && /^(held|retired|queued)$/.test(records[0])) {
    const [state, ahead, waiting, expiresIn] = records
    // Counts are never negative: a member's sum of its lines must not hold back every scale-out
    // (nor draw every waiting job to it as the shortest line). Only the lease's time may be past.
    expectEach([ahead, waiting], /^[0-9]{1,4}$/, label)
    expectEach([expiresIn], INT, label)
    // A member's own count of who waits there must not drive a scale-out to MaxSize by itself.
    if (Number(waiting) > 1000 || Number(ahead) > 1000) throw new UnexpectedAnswer(`${label}: a line of more than 1000 jobs`)
    return {
      granted: false,
      state: state as 'held' | 'retired' | 'queued',
      ahead: Number(ahead),
      waiting: Number(waiting),
      expiresIn: Number(expiresIn)
    }
  }
  throw new UnexpectedAnswer(`${label}: unexpected answer from the member: ${JSON.stringify(records.slice(0, 6))}`)
}

/** Extends this holder's lease; answers `renewed`, or `lost` when someone else holds it now. */
export function renewScript(workRoot: string, token: string, ttlSeconds: number): string {
  return (
    locked(workRoot) +
    `if [ "$st" = held ] && [ "$h" = ${token} ]; then put held ${token} $((now + ${ttlSeconds})) "$o" "$j" "$r" || exit 5; ${record('renewed')}; ` +
    `else ${record('lost')}; fi`
  )
}

/** How a holder gives a member back: free and clean, free but to be scrubbed first, or never again. */
export type ReleaseAs = { as: 'clean' } | { as: 'dirty' } | { as: 'retired'; reason: string }

/** Gives the member back if this holder still holds it; answers `released` or `not-holder`. */
export function releaseScript(workRoot: string, token: string, how: ReleaseAs): string {
  const next = how.as === 'retired' ? `retired ${shq(how.reason.replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 64))}` : `free ${how.as}`
  return (
    locked(workRoot) +
    `if [ "$st" = held ] && [ "$h" = ${token} ]; then put ${next} || exit 5; note release ${token} ${next.split(' ')[0]}; ${record('released')}; ` +
    `else ${record('not-holder')}; fi`
  )
}

/** Leaves the member's queue (a waiter served elsewhere); answers `left`. */
export function leaveScript(workRoot: string, token: string): string {
  const q = `"$P/queue"`
  return locked(workRoot) + `touch ${q}; awk -v me=${token} '$2 != me' ${q} > ${q}.new && mv -f ${q}.new ${q}; ${record('left')}`
}

/**
 * Takes over a lease that `owner` (this runner, whose job was lost) holds from this runner host,
 * named by any of `hosts`, for a cleanup without state: answers `taken` (now held by `token`) or
 * `not-owner`. The host is checked too: an older build's owner id was the runner's name alone, and
 * a same-named runner on another host may be running a job there. A record of an even older hook
 * names no host and goes by the owner alone.
 */
export function takeOverScript(workRoot: string, owner: string, hosts: readonly string[], token: string, ttlSeconds: number): string {
  if (!hosts.length || !hosts.every((h) => HEX16.test(h)))
    throw new Error(`runner host ids must be 16 hex digits: ${JSON.stringify(hosts)}`)
  return (
    locked(workRoot) +
    `if [ "$st" = held ] && [ "$o" = ${owner} ] && { [ -z "$r" ]${hosts.map((h) => ` || [ "$r" = ${h} ]`).join('')}; }; then put held ${token} $((now + ${ttlSeconds})) "$o" "$j" "$r" || exit 5; note takeover ${token} "$h"; ${record('taken')}; ` +
    `else ${record('not-owner')}; fi`
  )
}
