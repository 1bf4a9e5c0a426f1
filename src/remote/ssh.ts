// Direct ssh2 connection with a pinned host key, keepalives and a connect deadline.
import { Client } from 'ssh2'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { HookError, TransportError, type TransportKind } from '../errors'
import { hostKeyAlgorithms, verifyHostKey } from './known-hosts'
import type { ConnectInfo, ExecChannel, ExitStatus, Remote } from './remote'
import { connectReusingReads, type ReadCounts } from './read-buffer'
import { closedByServer, holdToProtocol } from './ssh-guard'

/** ssh2 marks where a failure arose in `level`: the client's authentication, its deadline, or the socket. */
function kindOf(err: Error & { level?: string }): TransportKind {
  if (err.level === 'client-authentication') return 'auth'
  if (err.level === 'client-timeout') return 'timeout'
  return 'network'
}

/** How long an unanswered server counts as still there, unless the caller says otherwise. */
export const KEEPALIVE_MS = 30_000

/**
 * ssh2's keepalive settings for a connection that may go `ms` unanswered: a keepalive every 10 s
 * (a third of `ms` when shorter); ssh2 gives up at the tick after `keepaliveCountMax` unanswered.
 */
export function keepalives(ms: number): { keepaliveInterval: number; keepaliveCountMax: number } {
  const interval = Math.min(10_000, Math.max(1_000, Math.floor(ms / 3)))
  return { keepaliveInterval: interval, keepaliveCountMax: Math.max(1, Math.round(ms / interval) - 1) }
}

const SIGNAL_NAME = /^[A-Za-z0-9@._-]{1,32}$/

export class SshRemote implements Remote {
  private constructor(
    private readonly client: Client,
    readonly info: ConnectInfo,
    /** How the socket's reads were served (see read-buffer.ts). */
    readonly reads: ReadCounts
  ) {}

  /**
   * `keepaliveMs`: how long the server may leave keepalives unanswered before the connection counts
   * as lost (a keepalive every 10 s, or a third of that when shorter). The operator commands keep
   * the default; a job's connections take timeouts.keepaliveSeconds, so that a network blip shorter
   * than that does not fail a long step.
   */
  static connect(info: ConnectInfo, timeoutMs: number, onClose?: (err?: Error) => void, keepaliveMs = KEEPALIVE_MS): Promise<SshRemote> {
    let knownHosts: string
    let privateKey: Buffer
    try {
      knownHosts = readFileSync(info.knownHostsFile, 'utf8')
      privateKey = readFileSync(info.identityFile)
    } catch (e) {
      return Promise.reject(new TransportError(`cannot read SSH key files for ${info.host}: ${(e as Error).message}`, 'keyfile'))
    }
    const serverHostKey = hostKeyAlgorithms(knownHosts, info.host, info.port)
    return new Promise((resolve, reject) => {
      const client = new Client()
      const reads: ReadCounts = { shared: 0, copied: 0, replaced: 0 }
      let hostKeyProblem: string | null = null
      let ready = false
      client.on('ready', () => {
        ready = true
        resolve(new SshRemote(client, info, reads))
      })
      client.on('error', (err: Error & { level?: string }) => {
        // After a protocol error ssh2 only ends its own side: a server that keeps its side open
        // would hold every channel, and whatever waits on one, for ever. Closing the socket fails them.
        client.destroy()
        if (ready) return onClose?.(err)
        if (hostKeyProblem)
          return reject(new TransportError(`host key verification failed for ${info.host}:${info.port}: ${hostKeyProblem}`, 'hostkey'))
        reject(new TransportError(`cannot connect to ${info.user}@${info.host}:${info.port}: ${err.message}`, kindOf(err)))
      })
      client.on('close', () => {
        if (ready) onClose?.()
        else
          reject(
            new TransportError(
              `connection to ${info.host}:${info.port} closed during the handshake`,
              hostKeyProblem ? 'hostkey' : 'network'
            )
          )
      })
      let sock: Socket
      try {
        const decipher = (): unknown => (client as unknown as { _protocol?: { _decipher?: unknown } })._protocol?._decipher
        sock = connectReusingReads(info.host, info.port, decipher, reads)
        // Once our side is ended (ssh2 does it after a DISCONNECT from the server, which it does not
        // report as an error when the reason is "by application"), nothing more is read: a server
        // that then holds its side open must not hold the channels with it.
        sock.on('finish', () => sock.destroy())
      } catch (e) {
        return reject(new TransportError(`cannot connect to ${info.user}@${info.host}:${info.port}: ${(e as Error).message}`, 'network'))
      }
      try {
        client.connect({
          sock,
          host: info.host,
          port: info.port,
          username: info.user,
          privateKey,
          readyTimeout: timeoutMs,
          ...keepalives(keepaliveMs),
          algorithms: {
            kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'diffie-hellman-group14-sha256'],
            cipher: ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr'],
            // No compression: a server's packet would be inflated before any check could look at it.
            compress: ['none'],
            ...(serverHostKey.length ? { serverHostKey: serverHostKey as never } : {})
          },
          hostVerifier: (key: Buffer) => {
            hostKeyProblem = verifyHostKey(knownHosts, info.host, info.port, key)
            return hostKeyProblem === null
          }
        })
        if (!holdToProtocol(client, sock)) {
          client.destroy()
          return reject(new HookError("ssh2's channel handlers are not where this build expects them (a different ssh2 version?)"))
        }
        // Set on the socket before it connects, so the authentication round trips are not held back
        // either: without ssh2's native crypto binding a packet goes out in more than one write, and
        // Nagle then waits for the server's delayed ACK on each.
        client.setNoDelay(true)
      } catch (e) {
        // ssh2 parses the private key inside connect() and throws there, before it listens on the socket.
        sock.destroy()
        reject(new TransportError(`cannot use the SSH key ${info.identityFile}: ${(e as Error).message}`, 'keyfile'))
      }
    })
  }

  openExec(command: string): Promise<ExecChannel> {
    return new Promise((resolve, reject) => {
      // ssh2 throws "Not connected" once the connection is gone.
      this.guard(reject, () =>
        this.client.exec(command, (err, stream) => {
          if (err) return reject(new TransportError(`cannot start a remote command on ${this.info.host}: ${err.message}`, 'lost'))
          let status: ExitStatus | null = null
          stream.on('exit', (code: number | null, signal?: string) => {
            // The server's words: a signal's name ends up in error lines, so only a name-like one is kept.
            const named = typeof signal === 'string' ? (SIGNAL_NAME.test(signal) ? signal : 'unnamed') : null
            status = { code: typeof code === 'number' ? code : null, signal: named }
            if (status.code === null && !status.signal) status = null
          })
          const done = new Promise<ExitStatus>((res) => {
            // Closed with the connection (the server never closed it): the output may be cut
            // short, whatever exit status came before, so no status.
            stream.on('close', () => res((closedByServer(stream) && status) || { code: null, signal: null }))
          })
          // Never an uncaught error of a stream nobody reads to its end (the agent would end with every step).
          stream.stderr.on('error', () => undefined)
          resolve({ stdin: stream, stdout: stream, stderr: stream.stderr, done })
        })
      )
    })
  }

  openSocket(path: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      this.guard(reject, () =>
        this.client.openssh_forwardOutStreamLocal(path, (err, stream) => {
          if (err)
            return reject(
              new TransportError(`cannot open ${path} on ${this.info.host} (sshd AllowStreamLocalForwarding?): ${err.message}`, 'lost')
            )
          resolve(stream)
        })
      )
    })
  }

  private guard(reject: (e: unknown) => void, open: () => unknown): void {
    try {
      open()
    } catch (e) {
      reject(new TransportError(`the connection to ${this.info.host} is gone: ${(e as Error).message}`, 'lost'))
    }
  }

  close(): void {
    this.client.end()
  }
}
