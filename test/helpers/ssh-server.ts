// An SSH server of the test's own, in this process on loopback: what root on a VM could put on its
// SSH port (with the VM's host key, which root can read). It accepts any client and hands each exec
// request to the test, whose channel it is to misuse.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Server, type Connection, type ServerChannel } from 'ssh2'
import type { ConnectInfo } from '../../src/remote/remote'
import { testKeyPair } from './keys'

export interface TestSshd {
  /** How the hook reaches it: the host key pinned, a key of its own. */
  info: ConnectInfo
  close(): Promise<void>
}

/** `onExec` gets each exec's channel, the command, and the connection (for what ssh2's channel API will not send). */
export async function testSshd(
  onExec: (ch: ServerChannel, command: string, conn: Connection) => void,
  opts: { onStreamLocal?: (accept: () => ServerChannel, reject: () => void) => void } = {}
): Promise<TestSshd> {
  const hostKey = testKeyPair()
  const dir = mkdtempSync(join(tmpdir(), 'rch-test-sshd-'))
  chmodSync(dir, 0o700)
  const identityFile = join(dir, 'id')
  writeFileSync(identityFile, testKeyPair().private, { mode: 0o600 })
  const conns = new Set<Connection>()
  const server = new Server({ hostKeys: [hostKey.private] }, (conn) => {
    conns.add(conn)
    conn.on('close', () => conns.delete(conn))
    conn.on('error', () => undefined)
    conn.on('authentication', (ctx) => ctx.accept())
    if (opts.onStreamLocal) conn.on('openssh.streamlocal', (accept, reject) => opts.onStreamLocal!(accept, reject))
    conn.on('ready', () =>
      conn.on('session', (accept) => {
        const session = accept()
        session.on('exec', (acc, _reject, info) => onExec(acc(), info.command, conn))
      })
    )
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  const [type, key] = hostKey.public.trim().split(/\s+/)
  const knownHostsFile = join(dir, 'known_hosts')
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${type} ${key}\n`)
  return {
    info: { host: '127.0.0.1', port, user: 'u', identityFile, knownHostsFile },
    close: async () => {
      for (const c of conns) ((c as unknown as { _sock?: Socket })._sock ?? { destroy: () => c.end() }).destroy()
      await new Promise<void>((r) => server.close(() => r()))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
