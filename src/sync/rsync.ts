// Bulk copies with rsync: the job's mounts in prepare_job and the runner's externals. rsync's
// transport is either the job's agent (no second SSH handshake) or OpenSSH with the pinned
// known_hosts file; never a command line holding a secret.
import { spawn } from 'node:child_process'
import { Cancelled, HookError, TransportError, type TransportKind } from '../errors'
import type { ConnectInfo } from '../remote/remote'
import { shjoin } from '../remote/quote'
import { requireTool, TOOL_ENV } from '../tools'
import { lineTail } from '../line-tail'
import { sshLiteral } from '../input-rules'

export interface RsyncTransport {
  /** The `-e` command rsync runs to reach the remote. */
  rsh: string
  /** The host part of rsync's `host:path` (ignored by the agent transport). */
  host: string
}

export function agentTransport(nodePath: string, hookPath: string, socketPath: string): RsyncTransport {
  return { rsh: shjoin([nodePath, hookPath, '__rsh', socketPath]), host: 'agent' }
}

/**
 * OpenSSH's options for rsync's transport. The runner user's ~/.ssh/config and /etc/ssh/ssh_config
 * are not read (-F /dev/null), and everything they could have turned on is stated off: no command
 * of theirs (ProxyCommand, LocalCommand, KnownHostsCommand) runs, nothing is forwarded, no shared
 * connection, no key agent, and only the pinned key file and host key are used.
 */
export function opensshArgs(ssh: string, info: ConnectInfo, connectSeconds?: number): string[] {
  // The configured files are checked in the config; a job's own key and pin are under TMPDIR.
  for (const [p, asOption] of [
    [info.identityFile, false],
    [info.knownHostsFile, true]
  ] as const)
    if (!sshLiteral(p, asOption))
      throw new HookError(
        `${p}: OpenSSH would not read this path as written (a space, %, $, quote, backslash or leading ~): set TMPDIR to a plain path`
      )
  const o = (kv: string): string[] => ['-o', kv]
  return [
    ssh,
    '-F',
    '/dev/null',
    '-i',
    info.identityFile,
    '-p',
    String(info.port),
    '-l',
    info.user,
    ...o(`UserKnownHostsFile=${info.knownHostsFile}`),
    ...o('GlobalKnownHostsFile=/dev/null'),
    ...o('StrictHostKeyChecking=yes'),
    ...o('UpdateHostKeys=no'),
    ...o('CheckHostIP=no'),
    ...o('VerifyHostKeyDNS=no'),
    ...o('BatchMode=yes'),
    ...o('IdentitiesOnly=yes'),
    ...o('IdentityAgent=none'),
    ...o('AddKeysToAgent=no'),
    ...o('PasswordAuthentication=no'),
    ...o('KbdInteractiveAuthentication=no'),
    ...o('PreferredAuthentications=publickey'),
    ...o('ProxyCommand=none'),
    ...o('ProxyJump=none'),
    ...o('PermitLocalCommand=no'),
    ...o('LocalCommand=none'),
    ...o('ControlMaster=no'),
    ...o('ControlPath=none'),
    ...o('ControlPersist=no'),
    ...o('ForwardAgent=no'),
    ...o('ForwardX11=no'),
    ...o('ForwardX11Trusted=no'),
    ...o('ClearAllForwardings=yes'),
    ...o('Tunnel=no'),
    ...o('RequestTTY=no'),
    ...o('CanonicalizeHostname=no'),
    // A host that never answers the connect or never sends its banner fails as the hook's own
    // connections do (timeouts.connectSeconds), not at rsync's I/O timeout as a failed copy.
    ...(connectSeconds === undefined ? [] : o(`ConnectTimeout=${Math.ceil(connectSeconds)}`)),
    // A peer that stops answering (a path that drops packets) ends the transport within a minute.
    ...o('ServerAliveInterval=15'),
    ...o('ServerAliveCountMax=4'),
    // The post-quantum default KEX makes each handshake slow on small CPUs; these are still strong.
    ...o('KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512')
  ]
}

export function opensshTransport(ssh: string, info: ConnectInfo, connectSeconds?: number): RsyncTransport {
  return { rsh: shjoin(opensshArgs(ssh, info, connectSeconds)), host: info.host.includes(':') ? `[${info.host}]` : info.host }
}

/**
 * Who may read the copy on the remote. A job's files (its secrets among them) are for the SSH user
 * alone; the content-versioned externals copy is shared by every job on the host, holds no secrets,
 * and has to stay readable by containers that run as other users.
 */
export type CopyAccess = 'private' | 'shared'

/**
 * Seconds without a byte either way after which rsync gives up (exit 30): an `rsync --server` left
 * on the VM by a job that was root there, or a path that drops packets silently, must not hold
 * prepare_job until the job's timeout. rsync keeps a slow but live copy awake with its own messages.
 */
export const RSYNC_IO_TIMEOUT_SECONDS = 120

/** rsync's arguments for a copy (the sources and destination come last). */
export function rsyncArgs(
  transport: RsyncTransport,
  sources: readonly string[],
  dest: string,
  extra: readonly string[],
  access: CopyAccess
): string[] {
  // --protect-args: names travel to the remote rsync as data, never through the remote shell.
  return [
    '-a',
    '--relative',
    '--stats',
    '--protect-args',
    `--timeout=${RSYNC_IO_TIMEOUT_SECONDS}`,
    ...(access === 'private' ? ['--chmod=Dgo-rwx,Fgo-rwx'] : []),
    ...extra,
    '-e',
    transport.rsh,
    ...sources,
    dest
  ]
}

/**
 * What a failed rsync says. When its transport (OpenSSH, or the agent's `__rsh`) fails, rsync only
 * reports "connection unexpectedly closed"; the reason (a key file others can read, a refused key,
 * a changed host key) is in the transport's own lines before that, so those are what the error names.
 */
export function rsyncFailure(destDir: string, code: number | null, stderr: string): HookError {
  const what = `rsync to ${destDir} failed (exit ${code})`
  // OpenSSH frames its warnings in lines of @; the words inside are kept.
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.replace(/^@+|@+$/g, '').trim())
    .filter(Boolean)
  const own = (l: string): boolean => /^rsync( error| warning)?:/.test(l)
  const transport = lines.filter((l) => !own(l))
  const closed = lines.some((l) => own(l) && /connection unexpectedly closed|error in rsync protocol data stream/.test(l))
  if (closed && transport.length) {
    const banner = /^WARNING: /.test(transport[0]) && transport.length > 3 ? [transport[0]] : []
    return new TransportError(`${what}: its SSH transport failed: ${[...banner, ...transport.slice(-3)].join(' | ')}`, sshKind(transport))
  }
  return new HookError(`${what}: ${lines.slice(-2).join(' | ')}`)
}

/**
 * The kind of an OpenSSH client failure, from the fixed lines it prints (its only account of it);
 * anything else, the agent transport's own lines included, is a connection lost.
 */
function sshKind(lines: string[]): TransportKind {
  const has = (re: RegExp): boolean => lines.some((l) => re.test(l))
  if (has(/^Host key verification failed\.$|REMOTE HOST IDENTIFICATION HAS CHANGED|^No \S+ host key is known for /)) return 'hostkey'
  if (has(/UNPROTECTED PRIVATE KEY FILE|^Load key ".*": |^Warning: Identity file .* not accessible/)) return 'keyfile'
  if (has(/: Permission denied \(/)) return 'auth'
  if (
    has(
      /^ssh: connect to host .*: (Connection refused|Connection timed out|No route to host|Network is unreachable)$|^ssh: Could not resolve hostname |^Connection timed out during banner exchange$/
    )
  )
    return 'network'
  return 'lost'
}

/** How much of rsync's stdout is kept: its transfer statistics come last. */
const STATS_TAIL = 64 * 1024

/**
 * Copies `relPaths` (relative to `srcBase`, which must exist) into `destDir` on the remote, keeping
 * the relative layout. Returns rsync's transfer statistics.
 */
export function rsyncUp(
  transport: RsyncTransport,
  srcBase: string,
  relPaths: readonly string[],
  destDir: string,
  extra: readonly string[] = [],
  /** A cancel stops rsync (its transport then closes, which ends the remote rsync too). */
  signal?: AbortSignal,
  access: CopyAccess = 'private'
): Promise<{ files: number; bytes: number }> {
  const sources = relPaths.map((p) => `${srcBase}/./${p}`)
  const args = rsyncArgs(transport, sources, `${transport.host}:${destDir}/`, extra, access)
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(Cancelled.by(signal))
    let rsync: string
    try {
      rsync = requireTool('rsync')
    } catch (e) {
      return reject(e)
    }
    const child = spawn(rsync, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...TOOL_ENV } })
    const onAbort = (): void => void child.kill('SIGTERM')
    signal?.addEventListener('abort', onAbort, { once: true })
    let out = ''
    const err = lineTail(4000)
    // Only the tail (rsync prints its stats last): the remote rsync's messages reach this stdout too.
    child.stdout.on('data', (c) => (out = (out + c).slice(-STATS_TAIL)))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.on('error', (e) => reject(new HookError(`rsync (${rsync}) could not start: ${e.message}`)))
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort)
      if (signal?.aborted) return reject(Cancelled.by(signal))
      if (code !== 0) return reject(rsyncFailure(destDir, code, err.text()))
      const files = Number(/Number of regular files transferred: ([\d,.]+)/.exec(out)?.[1]?.replace(/[,.]/g, '') ?? 0)
      const bytes = Number(/Total transferred file size: ([\d,.]+)/.exec(out)?.[1]?.replace(/[,.]/g, '') ?? 0)
      resolve({ files, bytes })
    })
  })
}
