// A VM whose SSH stream turns to garbage after login and that then keeps the connection open. ssh2
// only ends its own side after a protocol error; unless the hook closes the socket, every channel
// of the job, and whatever waits on one, waits for ever. Through a proxy on loopback in front of the
// test VM's sshd that garbles the server's next bytes on request and then holds both sockets open.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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

test('positive control: through the proxy, untouched, a command runs', async () => {
  garble = false
  const remote = await SshRemote.connect(info(), 10_000)
  try {
    const ch = await remote.openExec('echo through-the-proxy')
    let out = ''
    ch.stdout.on('data', (c: Buffer) => (out += c.toString()))
    expect(await ch.done).toEqual({ code: 0, signal: null })
    expect(out).toBe('through-the-proxy\n')
  } finally {
    remote.close()
  }
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
