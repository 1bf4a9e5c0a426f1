// doctor's checks of one machine over SSH, as the hook would use it: the pinned host key, the
// programs the hook runs there, the clock, Docker's API through a forwarded socket, and the work
// root. Read-only but for one temporary file written and removed inside the work root.
import { monoMs } from '../mono-clock'
import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { DEFAULT_DOCKER_SOCKET, type Config, type StaticConfig } from '../config'
import { dockerHostPrefix } from '../remote/docker-host'
import { Engine } from '../docker/engine'
import { TransportError, formatError } from '../errors'
import { shPath, shq } from '../remote/quote'
import { dropped, run, type ConnectInfo, type Remote } from '../remote/remote'
import { SshRemote } from '../remote/ssh'
import { withDeadline } from '../remote/deadline'
import type { CheckResult } from './output'

export interface Machine {
  connect: ConnectInfo
  /** remote.workRoot (a ~/path is the SSH user's home). */
  workRoot: string
  dockerSocket: string
}

export interface MachineOptions {
  connectMs: number
  /** A clock further off than this fails (signed requests and TLS certificates stop working). */
  maxSkewSeconds: number
  now?: () => number
  /** Each command's and call's bound (tests shorten it). */
  callMs?: number
}

/** The oldest Docker Engine API the hook speaks (its requests go to /v1.41). */
const MIN_API = [1, 41]
const REMOTE_TOOLS = ['rsync', 'tar', 'find', 'docker'] as const
const CALL_MS = 20_000

const target = (c: ConnectInfo): string => `${c.user}@${c.host}:${c.port}`

/** A machine as the hook's jobs use it: the configured work root and Docker socket. */
export const jobMachine = (config: Pick<Config, 'remote'>, connect: ConnectInfo): Machine => ({
  connect,
  workRoot: config.remote.workRoot,
  dockerSocket: config.remote.dockerSocket
})

/** Every static host, side by side. */
export async function hostsChecks(p: StaticConfig, config: Pick<Config, 'remote'>, opts: MachineOptions): Promise<CheckResult[]> {
  return (await Promise.all(p.hosts.map((h) => machineChecks(jobMachine(config, h), opts)))).flat()
}

/**
 * Why the machine's Docker daemon may write step env values to its log, or null; undefined when
 * /info does not answer (not judged). In debug mode dockerd logs the JSON body of every API request
 * of 4 KB or less, and masks only keys such as "password" and "secret", not a container's Env,
 * which the hook sends that way (exec and container creates).
 */
export async function debugProblem(get: (path: string) => Promise<{ status: number; data: unknown }>): Promise<string | null | undefined> {
  try {
    const r = await get('/info')
    if (r.status !== 200) return undefined
    if ((r.data as { Debug?: unknown } | null)?.Debug === true)
      return "the daemon runs in debug mode: it logs the body of each small API request, steps' env values among them"
    return null
  } catch {
    return undefined
  }
}

/** The daemon's ID as /info gives it (the CLI's `docker info` must name the same daemon), or null. */
async function daemonId(get: (path: string) => Promise<{ status: number; data: unknown }>): Promise<string | null> {
  try {
    const r = await get('/info')
    const id = (r.data as { ID?: unknown } | null)?.ID
    return r.status === 200 && typeof id === 'string' && /^[A-Za-z0-9:_-]{1,200}$/.test(id) ? id : null
  } catch {
    return null
  }
}

/**
 * Why a dockerd on the machine logs at debug level, read from its arguments (`-D`, `--debug`,
 * `-l debug`, `--log-level=debug`) and the config files they name (default
 * /etc/docker/daemon.json: `"debug": true` or `"log-level": "debug"`), or null. /info says only
 * `-D`/`"debug"`; the log level alone makes dockerd log request bodies just the same.
 */
export function logLevelProblem(args: string[][], configs: string[]): string | null {
  for (const a of args) {
    for (let i = 0; i < a.length; i++) {
      const x = a[i]
      if (x === '-D' || x === '--debug' || x === '--debug=true') return `a dockerd runs with ${x}`
      // Read as logrus reads it (any case); trace logs request bodies too.
      const level = /^(?:--log-level|-l)=?(.*)$/.exec(x)
      const value = (level?.[1] || a[i + 1] || '').toLowerCase()
      if (level && (value === 'debug' || value === 'trace')) return `a dockerd runs with ${level[1] ? x : `${x} ${a[i + 1]}`}`
    }
  }
  for (const text of configs) {
    let c: unknown
    try {
      c = JSON.parse(text)
    } catch {
      continue
    }
    if (c && typeof c === 'object') {
      const o = c as Record<string, unknown>
      if (o.debug === true) return 'its daemon.json sets "debug": true'
      const level = typeof o['log-level'] === 'string' ? o['log-level'].toLowerCase() : ''
      if (level === 'debug' || level === 'trace') return `its daemon.json sets "log-level": "${level}"`
    }
  }
  return null
}

/**
 * The config file each dockerd reads: the one its arguments name (`--config-file`), else the
 * default, /etc/docker/daemon.json for a daemon of root's, `<its home>/.config/docker/daemon.json`
 * for a rootless one (`homes`: each daemon's user's home, '' for root's).
 */
export function configFilesOf(args: string[][], homes: string[] = []): string[] {
  const files = args.map((a, n) => {
    const named = a.flatMap((x, i) => {
      const m = /^--config-file(?:=(.*))?$/.exec(x)
      const path = m ? (m[1] ?? a[i + 1]) : undefined
      return path && path.startsWith('/') && !path.includes('\n') ? [path] : []
    })[0]
    const home = homes[n] ?? ''
    return named ?? (home.startsWith('/') ? `${home}/.config/docker/daemon.json` : '/etc/docker/daemon.json')
  })
  return [...new Set(files.length ? files : ['/etc/docker/daemon.json'])].slice(0, 4)
}

export async function machineChecks(m: Machine, opts: MachineOptions): Promise<CheckResult[]> {
  const now = opts.now ?? Date.now
  const where = target(m.connect)
  const out: CheckResult[] = []
  const add = (check: string, status: CheckResult['status'], detail: string, fix?: string): void =>
    void out.push({ check, target: where, status, detail, ...(status === 'fail' && fix ? { fix } : {}) })

  let remote: Remote
  try {
    remote = await SshRemote.connect(m.connect, opts.connectMs)
  } catch (e) {
    add('ssh', 'fail', formatError(e), sshFix(e, m.connect))
    for (const c of ['rsync', 'tar', 'find', 'docker cli', 'clock', 'forwarding', 'docker api', 'work root'])
      add(c, 'skip', 'not reached over SSH')
    return out
  }
  add('ssh', 'pass', `logged in with ${m.connect.identityFile}; host key pinned in ${m.connect.knownHostsFile}`)
  // Every command gets DOCKER_HOST as the hook's do, so the docker CLI finds the same daemon.
  const prefix = dockerHostPrefix(m.dockerSocket)
  const callMs = opts.callMs ?? CALL_MS
  const sh = (cmd: string) => run(remote, prefix + cmd, { collect: true, maxCollect: 64 * 1024, timeoutMs: callMs })
  try {
    // The machine's clock is read first, so the round trip around it is short.
    // The round trip on the monotonic clock, the wall clock read once: a step of this host's clock
    // during the probe would make the margin negative, or the reading's middle false.
    const t0 = now()
    const m0 = monoMs()
    const probe = await sh(
      `echo "clock $(date +%s)"; for t in ${REMOTE_TOOLS.join(' ')}; do p=$(command -v "$t" 2>/dev/null) && echo "tool $t $p" || echo "tool $t -"; done`
    )
    const t1 = t0 + (monoMs() - m0)
    // A signal is the machine's answer (the probe was killed there): its rows say what is missing.
    if (dropped(probe)) throw new TransportError('the connection dropped while reading the tools and the clock', 'lost')
    const lines = probe.stdout.toString('utf8').split('\n')
    for (const t of REMOTE_TOOLS) {
      const p = lines.find((l) => l.startsWith(`tool ${t} `))?.slice(`tool ${t} `.length)
      const name = t === 'docker' ? 'docker cli' : t
      // The machine's word: a path of any length it chose is cut.
      if (p && p !== '-') add(name, 'pass', cut(p))
      else
        add(
          name,
          'fail',
          `${t} is not on the PATH of ${m.connect.user}'s SSH commands`,
          `install ${t === 'docker' ? 'Docker (its CLI)' : t} on the machine (e.g. apt-get install ${t === 'docker' ? 'docker.io' : t}); the hook runs it by name over SSH`
        )
    }
    // Digits only: Number('') is 0, which read a missing `date` as a clock 56 years behind.
    const clockText = lines.find((l) => l.startsWith('clock '))?.slice(6) ?? ''
    const remoteClock = /^[0-9]{1,12}$/.test(clockText) ? Number(clockText) : NaN
    if (!Number.isFinite(remoteClock)) add('clock', 'fail', '`date +%s` gave no number', 'make `date` available on the machine')
    else {
      const skew = remoteClock - Math.floor((t0 + t1) / 2000)
      // `date` ran somewhere in the round trip (a slow shell start-up puts it late): a second (it
      // counts whole seconds) and half the round trip is how far off the reading may be.
      const margin = 1 + (t1 - t0) / 2000
      const how = skew === 0 ? 'in step with this host' : `${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} this host`
      const sync = 'run time synchronisation (chrony or systemd-timesyncd) on the machine and on this runner host'
      if (Math.abs(skew) + margin <= opts.maxSkewSeconds) add('clock', 'pass', `${how} (±${margin.toFixed(1)} s)`)
      else if (Math.abs(skew) - margin > opts.maxSkewSeconds) add('clock', 'fail', `${how} (more than ${opts.maxSkewSeconds} s)`, sync)
      else
        add(
          'clock',
          'fail',
          `${how} ±${margin.toFixed(1)} s (the probe took ${((t1 - t0) / 1000).toFixed(1)} s): it may be more than ${opts.maxSkewSeconds} s`,
          `${sync}; a shell start-up that takes seconds (the SSH user's start-up files) makes the reading loose`
        )
    }
    await dockerChecks(
      remote,
      sh,
      m,
      add,
      out.some((c) => c.check === 'docker cli' && c.status === 'pass'),
      callMs
    )
    await workRootCheck(sh, m, add)
  } catch (e) {
    add('ssh session', 'fail', formatError(e), 'the connection failed after login; check the machine (load, sshd MaxSessions) and retry')
  } finally {
    remote.close()
  }
  return out
}

type Add = (check: string, status: CheckResult['status'], detail: string, fix?: string) => void

/** A machine's text as a row shows it: at most `max` characters (a row's detail is not cut by the table). */
const cut = (s: string, max = 200): string => (s.length > max ? `${Array.from(s).slice(0, max).join('')}…` : s)
type Sh = (cmd: string) => ReturnType<typeof run>

async function dockerChecks(remote: Remote, sh: Sh, m: Machine, add: Add, hasCli: boolean, callMs: number): Promise<void> {
  const sock = m.dockerSocket
  const dockerFix = `start Docker on the machine, or set remote.dockerSocket to its socket (now ${sock}); ${m.connect.user} must be allowed to use it (group docker)`
  // The hook drives Docker both ways: the Engine API through the forwarded socket, and the CLI
  // (create, pull, login, build) in SSH sessions. Both must reach the daemon.
  const viaCli = async (): Promise<{ api: string | null; said: string }> => {
    if (!hasCli) return { api: null, said: 'no docker CLI' }
    const r = await sh(`docker version --format '{{.Server.APIVersion}}' 2>&1`)
    const text = r.stdout.toString('utf8').trim()
    return r.code === 0 && /^\d+\.\d+$/.test(text)
      ? { api: text, said: text }
      : { api: null, said: cut(text.split('\n').slice(-1)[0] || `exit ${r.code}`) }
  }
  let forwarded: Duplex | null = null
  let refused: unknown = null
  // Bounded: a machine's own sshd (its root can run one) may never answer the channel's open.
  const bounded = withDeadline(remote, callMs, `opening ${sock} over SSH: no answer after ${callMs / 1000} s`)
  try {
    forwarded = await bounded.remote.openSocket(sock)
  } catch (e) {
    refused = e
  } finally {
    bounded.clear()
  }
  if (forwarded) {
    forwarded.destroy()
    add('forwarding', 'pass', `stream-local forwarding to ${sock} allowed`)
    let v: { status: number; data: { ApiVersion?: string; Version?: string } }
    const api = new Engine(remote, sock, callMs)
    try {
      v = await api.call('GET', '/version', undefined, 'version')
      if (v.status !== 200) throw new Error(`HTTP ${v.status}`)
    } catch (e) {
      return add('docker api', 'fail', formatError(e), dockerFix)
    }
    const apiVersion = v.data.ApiVersion ?? ''
    if (!apiAtLeast(apiVersion, MIN_API))
      return add(
        'docker api',
        'fail',
        `API ${apiVersion || '(none)'}, older than ${MIN_API.join('.')}`,
        'upgrade Docker Engine on the machine (20.10 or later)'
      )
    const engine = `Engine ${cut(String(v.data.Version ?? '?'), 40)}, API ${apiVersion} through the forwarded socket`
    // /info once: the debug mode and the daemon's ID are both read from it.
    let info: ReturnType<typeof api.call> | undefined
    const get = (p: string) => (info ??= api.call('GET', p, undefined, 'info'))
    const said = await debugProblem(get)
    const debug = said ?? null
    const level = debug ? null : await machineLogLevel(sh)
    if (debug || level)
      return add(
        'docker api',
        'fail',
        `${engine}, but ${debug ?? `${level}: it logs the body of each small API request, steps' env values among them`}`,
        'set "debug": false and no "log-level": "debug" in /etc/docker/daemon.json on the machine (no -D or -l debug on dockerd) and restart dockerd'
      )
    const judged = said === undefined ? ' (its debug mode not judged: /info did not answer)' : ''
    const cli = await viaCli()
    const id = cli.api ? await daemonId(get) : null
    const cliId = id ? await cliDaemonId(sh) : null
    if (!hasCli) add('docker api', 'pass', `${engine} (the CLI is missing: see docker cli)${judged}`)
    else if (cli.api && id && cliId && cliId !== id)
      add(
        'docker api',
        'fail',
        `${engine}, but the docker CLI in an SSH session reaches another daemon (ID ${cliId.slice(0, 40)}, the socket's is ${id.slice(0, 40)})`,
        `the SSH user's environment sends the docker CLI elsewhere (DOCKER_HOST or DOCKER_CONTEXT from sshd SetEnv, ~/.ssh/environment, a start-up file or ~/.docker): remove that, or set remote.dockerSocket to the daemon the CLI should use`
      )
    else if (cli.api) add('docker api', 'pass', `${engine}; the docker CLI reaches it too${judged}`)
    else
      add(
        'docker api',
        'fail',
        `${engine}, but the docker CLI in an SSH session reaches no daemon: ${cli.said}`,
        sock === DEFAULT_DOCKER_SOCKET
          ? `the SSH user's environment sends the docker CLI elsewhere (DOCKER_HOST or DOCKER_CONTEXT from sshd SetEnv, ~/.ssh/environment or a start-up file): remove that, or set remote.dockerSocket to the daemon's socket (the hook then sets DOCKER_HOST itself)`
          : `the hook sets DOCKER_HOST=unix://${sock} for the CLI and it still fails: check DOCKER_CONTEXT and ~${m.connect.user}/.docker/config.json on the machine`
      )
    return
  }
  // sshd answers "open failed" both when forwarding is off and when nothing listens on the path:
  // the docker CLI over a plain session tells the two apart.
  const cli = await viaCli()
  if (cli.api) {
    add(
      'forwarding',
      'fail',
      `sshd refuses to forward ${sock} (${formatError(refused)}), where Docker answers (API ${cli.api} through the docker CLI)`,
      "set AllowStreamLocalForwarding yes in the machine's sshd_config and reload sshd: the hook reaches Docker's API through it"
    )
    add('docker api', 'pass', `API ${cli.api} through the docker CLI (the forwarded socket is refused: see forwarding)`)
  } else {
    add('forwarding', 'skip', `cannot tell while Docker does not answer on ${sock} (the forwarded open: ${formatError(refused)})`)
    add('docker api', 'fail', `no Docker Engine answers on ${sock}: ${hasCli ? cli.said : formatError(refused)}`, dockerFix)
  }
}

/** Why a dockerd on the machine logs at debug level (its arguments and config files), or null; null when unreadable. */
async function machineLogLevel(sh: Sh): Promise<string | null> {
  try {
    // Each dockerd: the home of its user ('' for root's), then its arguments.
    const r = await sh(
      `for p in $(pidof dockerd 2>/dev/null); do u=$(stat -c %u /proc/$p 2>/dev/null); h=; ` +
        `[ -n "$u" ] && [ "$u" != 0 ] && h=$(getent passwd "$u" | cut -d: -f6); echo "$h"; ` +
        `tr '\\0' '\\n' < /proc/$p/cmdline 2>/dev/null | head -c 8192; echo; echo --; done`
    )
    const daemons = r.stdout
      .toString('utf8')
      .split('\n--\n')
      .map((d) => d.split('\n'))
      .filter((d) => d.slice(1).some(Boolean))
    const args = daemons.map((d) => d.slice(1).filter(Boolean))
    const files = configFilesOf(
      args,
      daemons.map((d) => d[0])
    )
    const c = await sh(files.map((f) => `head -c 65536 ${shq(f)} 2>/dev/null; printf '\\0'`).join('; '))
    return logLevelProblem(args, c.stdout.toString('utf8').split('\0').slice(0, files.length))
  } catch {
    // Not judged (a probe that did not answer in time): the check is about the daemon, not the session.
    return null
  }
}

/** The daemon the docker CLI in an SSH session reaches, by its ID, or null when it does not say. */
async function cliDaemonId(sh: Sh): Promise<string | null> {
  try {
    const r = await sh(`docker info --format '{{.ID}}' 2>/dev/null`)
    const id = r.stdout.toString('utf8').trim()
    return r.code === 0 && /^[A-Za-z0-9:_-]{1,200}$/.test(id) ? id : null
  } catch {
    return null
  }
}

async function workRootCheck(sh: Sh, m: Machine, add: Add): Promise<void> {
  const name = `.rch-doctor-${randomBytes(6).toString('hex')}`
  // noclobber: the file is made new (O_EXCL), never an existing one or a symlink's target written.
  const r = await sh(
    `R=${shPath(m.workRoot)}; if [ -L "$R/jobs" ] || { [ -e "$R/jobs" ] && [ ! -d "$R/jobs" ]; }; then echo jobs-not-folder; ` +
      `elif [ -d "$R" ]; then f="$R/"${shq(name)}; ` +
      `if (set -C; : > "$f") 2>/dev/null; then rm -f "$f" && echo written || echo "kept $f"; else echo unwritable; fi; ` +
      // Something else in its place (a file, a dangling link): the hook's mkdir -p would fail on it.
      `elif [ -e "$R" ] || [ -L "$R" ]; then echo not-folder; ` +
      `else d="$R"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; if [ -w "$d" ]; then echo "absent $d"; else echo "absent-locked $d"; fi; fi`
  )
  const [word, ...rest] = r.stdout.toString('utf8').trim().split(' ')
  const arg = rest.join(' ')
  const fix = `create ${m.workRoot} on the machine, owned by ${m.connect.user} (mkdir -p, chown)`
  if (word === 'written') add('work root', 'pass', `${m.workRoot} writable (a temporary file written and removed)`)
  else if (word === 'absent') add('work root', 'pass', `${m.workRoot} does not exist yet; ${arg} is writable, the hook creates it`)
  else if (word === 'absent-locked')
    add('work root', 'fail', `${m.workRoot} does not exist and ${arg} is not writable by ${m.connect.user}`, fix)
  else if (word === 'unwritable') add('work root', 'fail', `${m.workRoot} is not writable by ${m.connect.user}`, fix)
  else if (word === 'not-folder')
    add('work root', 'fail', `${m.workRoot} exists but is not a folder (a file or a symlink)`, `remove it, then ${fix}`)
  else if (word === 'jobs-not-folder')
    add(
      'work root',
      'fail',
      `${m.workRoot}/jobs is a symlink or not a folder: every prepare_job there refuses it`,
      `remove ${m.workRoot}/jobs on the machine (the hook makes it, private to ${m.connect.user})`
    )
  else if (word === 'kept')
    add('work root', 'fail', `wrote ${arg} but could not remove it`, `remove ${arg} and check the folder's permissions`)
  else add('work root', 'fail', `unexpected answer (exit ${r.code}): ${r.stderr.trim().slice(-200)}`, fix)
}

export function apiAtLeast(version: string, min: number[]): boolean {
  const m = /^(\d+)\.(\d+)$/.exec(version)
  if (!m) return false
  const [a, b] = [Number(m[1]), Number(m[2])]
  return a > min[0] || (a === min[0] && b >= min[1])
}

/** What to do about a failed SSH login, by where it failed (never by its message). */
export function sshFix(e: unknown, c: ConnectInfo): string {
  const name = c.port === 22 ? c.host : `[${c.host}]:${c.port}`
  const kind = e instanceof TransportError ? e.kind : 'network'
  if (kind === 'hostkey')
    return `the machine's host key is not the one pinned for ${name} in ${c.knownHostsFile}: if the machine was rebuilt, get its new key out of band (its console or build output) and replace that line`
  if (kind === 'auth') return `authorize the public key of ${c.identityFile} for ${c.user} on the machine (~${c.user}/.ssh/authorized_keys)`
  if (kind === 'keyfile') return `make ${c.identityFile} a readable private key without a passphrase (see: remote-hooks check-config)`
  return `check that sshd listens on ${c.host}:${c.port} and that this runner host can reach it (firewall, security group)`
}
