// A VM whose SSH stream turns to garbage after login and that then keeps the connection open. ssh2
// only ends its own side after a protocol error; unless the hook closes the socket, every channel
// of the job, and whatever waits on one, waits for ever. Through a proxy on loopback in front of the
// test VM's sshd that garbles the server's next bytes on request and then holds both sockets open.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Server as SshServer, utils, type Connection, type ParsedKey } from 'ssh2'
import { SshRemote } from '../../src/remote/ssh'
import { TransportError } from '../../src/errors'
import { testVm } from '../helpers/conformance'

const vm = testVm()
let garble = false
const sockets: Socket[] = []
let proxy: Server
let port = 0
const dir = mkdtempSync(join(tmpdir(), 'rch-protoerr-'))
const knownHostsFile = join(dir, 'known_hosts')

beforeAll(async () => {
  // allowHalfOpen: the client's FIN does not end our side, as a hostile server would not.
  proxy = createServer({ allowHalfOpen: true }, (client) => {
    const server = createConnection({ host: vm.host, port: vm.port, allowHalfOpen: true })
    sockets.push(client, server)
    client.on('error', () => undefined)
    server.on('error', () => undefined)
    client.on('data', (c: Buffer) => server.write(c))
    let stalled = false
    server.on('data', (c: Buffer) => {
      if (stalled) return
      if (garble) {
        stalled = true
        client.write(Buffer.from(c.map((b) => b ^ 0xa5)))
        return
      }
      client.write(c)
    })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  port = (proxy.address() as AddressInfo).port
  // The VM's own key, pinned for the proxy's port.
  const key = readFileSync(vm.knownHostsFile, 'utf8').split('\n')[0].split(' ').slice(1).join(' ')
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${key}\n`)
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((r) => proxy.close(r))
  rmSync(dir, { recursive: true, force: true })
})

const info = () => ({ host: '127.0.0.1', port, user: vm.user, identityFile: vm.identityFile, knownHostsFile })
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'still waiting'> =>
  Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms).unref())])

/** Positive control: a command runs over a connection to `to` and prints `out`. */
async function runsThrough(to: Parameters<typeof SshRemote.connect>[0], command: string, out: string): Promise<void> {
  const remote = await SshRemote.connect(to, 10_000)
  try {
    const ch = await remote.openExec(command)
    let got = ''
    ch.stdout.on('data', (c: Buffer) => (got += c.toString()))
    expect(await ch.done).toEqual({ code: 0, signal: null })
    expect(got).toBe(out)
  } finally {
    remote.close()
  }
}

test('positive control: through the proxy, untouched, a command runs', async () => {
  garble = false
  await runsThrough(info(), 'echo through-the-proxy', 'through-the-proxy\n')
})

test('garbage after login: the connection is closed and reported, a running command ends as lost, a new one fails', async () => {
  let closedWith: Error | undefined | null = null
  const remote = await SshRemote.connect(info(), 10_000, (err) => (closedWith ??= err))
  const ch = await remote.openExec('sleep 1; echo too-late')
  ch.stdout.resume()
  garble = true
  // The next bytes from the server (the command's output) arrive garbled; the VM then holds on.
  const status = await within(ch.done, 8_000)
  expect(status).toEqual({ code: null, signal: null })
  expect(closedWith).toBeInstanceOf(Error)
  const next = await within(
    remote.openExec('true').then(
      () => 'opened',
      (e: unknown) => e
    ),
    5_000
  )
  expect(next).toBeInstanceOf(TransportError)
})

describe('a server that says goodbye "by application" and keeps the TCP connection open', () => {
  // ssh2 reports a DISCONNECT with that reason as no error at all: it only ends its own side. An
  // in-process ssh2 server plays the VM (sshd cannot be made to do this); the proxy in front keeps
  // the connection open after the server's FIN.
  const conns: Connection[] = []
  let sshServer: SshServer
  let relay: Server
  let relayPort = 0
  const relayKnownHosts = join(dir, 'known_hosts_relay')
  const user = join(dir, 'user')

  beforeAll(async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')])
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', user])
    const userKey = utils.parseKey(readFileSync(`${user}.pub`)) as ParsedKey
    sshServer = new SshServer({ hostKeys: [readFileSync(join(dir, 'host'))] }, (conn) => {
      conns.push(conn)
      conn.on('error', () => undefined)
      conn.on('authentication', (ctx) => {
        if (ctx.method === 'publickey' && ctx.key.data.equals(userKey.getPublicSSH())) return ctx.accept()
        ctx.reject(['publickey'])
      })
      conn.on('session', (accept) =>
        accept().on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec()
          // `hello` answers and exits; anything else runs until the connection goes.
          if (info.command === 'hello') {
            ch.write('hi\n')
            ch.exit(0)
            ch.end()
          }
        })
      )
    })
    await new Promise<void>((r) => sshServer.listen(0, '127.0.0.1', r))
    const serverPort = (sshServer.address() as AddressInfo).port
    relay = createServer({ allowHalfOpen: true }, (client) => {
      const server = createConnection({ host: '127.0.0.1', port: serverPort, allowHalfOpen: true })
      sockets.push(client, server)
      client.on('error', () => undefined)
      server.on('error', () => undefined)
      client.on('data', (c: Buffer) => server.write(c))
      server.on('data', (c: Buffer) => client.write(c))
    })
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r))
    relayPort = (relay.address() as AddressInfo).port
    const hostPub = readFileSync(join(dir, 'host.pub'), 'utf8').split(' ').slice(0, 2).join(' ')
    writeFileSync(relayKnownHosts, `[127.0.0.1]:${relayPort} ${hostPub}\n`)
  })

  afterAll(async () => {
    for (const c of conns) c.end()
    // A server closes only once its connections have: the relay's are held open on purpose.
    for (const s of sockets) s.destroy()
    await new Promise((r) => relay.close(r))
    await new Promise((r) => sshServer.close(r))
  })

  const relayInfo = () => ({ host: '127.0.0.1', port: relayPort, user: 'u', identityFile: user, knownHostsFile: relayKnownHosts })

  test('positive control: through it, a command runs', async () => {
    await runsThrough(relayInfo(), 'hello', 'hi\n')
  })

  test('the running command ends as lost and the connection is reported closed', async () => {
    let closed = false
    const remote = await SshRemote.connect(relayInfo(), 10_000, () => (closed = true))
    const ch = await remote.openExec('run-for-ever')
    ch.stdout.resume()
    // DISCONNECT, reason 11 (by application), then the server's FIN, which the relay keeps to itself.
    conns[conns.length - 1].end()
    expect(await within(ch.done, 8_000)).toEqual({ code: null, signal: null })
    expect(closed).toBe(true)
  })
})
