// Bulk copies with rsync: the job's mounts in prepare_job and the runner's externals. rsync's
// transport is either the job's agent (no second SSH handshake) or OpenSSH with the pinned
// known_hosts file; never a command line holding a secret.
import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { Cancelled, HookError } from '../errors'
import type { ConnectInfo } from '../remote/remote'
import { shq } from '../remote/quote'

export interface RsyncTransport {
  /** The `-e` command rsync runs to reach the remote. */
  rsh: string
  /** The host part of rsync's `host:path` (ignored by the agent transport). */
  host: string
}

export function agentTransport(nodePath: string, hookPath: string, socketPath: string): RsyncTransport {
  return { rsh: [nodePath, hookPath, '__rsh', socketPath].map(shq).join(' '), host: 'agent' }
}

/** Whether OpenSSH's client is installed on the runner host (bulk copies then use its C data path). */
export function haveOpenSsh(pathEnv: string | undefined): boolean {
  return (pathEnv ?? '/usr/bin:/bin').split(':').some((d) => {
    try {
      accessSync(`${d}/ssh`, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

export function opensshTransport(info: ConnectInfo): RsyncTransport {
  const opts = [
    'ssh', '-i', info.identityFile, '-p', String(info.port), '-l', info.user,
    '-o', `UserKnownHostsFile=${info.knownHostsFile}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
    // The post-quantum default KEX costs ~90 ms per handshake on small CPUs; these are still strong.
    '-o', 'KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512'
  ]
  return { rsh: opts.map(shq).join(' '), host: info.host.includes(':') ? `[${info.host}]` : info.host }
}

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
  signal?: AbortSignal
): Promise<{ files: number; bytes: number }> {
  const sources = relPaths.map((p) => `${srcBase}/./${p}`)
  const args = ['-a', '--relative', '--stats', ...extra, '-e', transport.rsh, ...sources, `${transport.host}:${destDir}/`]
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(Cancelled.by(signal))
    const child = spawn('rsync', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const onAbort = (): void => void child.kill('SIGTERM')
    signal?.addEventListener('abort', onAbort, { once: true })
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => (out += c))
    child.stderr.on('data', (c) => (err = (err + c).slice(-4000)))
    child.on('error', (e) => reject(new HookError(`rsync could not start (is rsync installed on the runner host?): ${e.message}`)))
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort)
      if (signal?.aborted) return reject(Cancelled.by(signal))
      if (code !== 0) return reject(new HookError(`rsync to ${destDir} failed (exit ${code}): ${err.trim().split('\n').slice(-2).join(' | ')}`))
      const files = Number(/Number of regular files transferred: ([\d,.]+)/.exec(out)?.[1]?.replace(/[,.]/g, '') ?? 0)
      const bytes = Number(/Total transferred file size: ([\d,.]+)/.exec(out)?.[1]?.replace(/[,.]/g, '') ?? 0)
      resolve({ files, bytes })
    })
  })
}
