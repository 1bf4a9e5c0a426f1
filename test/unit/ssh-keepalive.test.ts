// How long a connection may go unanswered before it counts as lost is the job's
// timeouts.keepaliveSeconds: a network blip shorter than that must not fail a long step, and a
// server that stopped answering for longer must end the connection. An ssh2 server on loopback
// behind a relay that holds back everything the server sends while `stalled` (and delivers it
// afterwards), as a path that drops packets for a while does until TCP retransmits them.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createConnection, createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { Server, utils } from 'ssh2'
import { keepalives, SshRemote } from '../../src/remote/ssh'
import { testKeyPair } from '../helpers/keys'
import { cleanupTempDirs, tempDir } from './_helpers'

let server: Server
let relay: NetServer
let port = 0
const sockets: Socket[] = []
/** While true, what the server sends is held back; set to false, it is delivered. */
let stalled = false
const held: { to: Socket; data: Buffer }[] = []
const stall = (on: boolean): void => {
  stalled = on
  if (!on) for (const h of held.splice(0)) h.to.write(h.data)
}
const dir = tempDir()
const client = testKeyPair()
const hostKey = testKeyPair()
const identityFile = join(dir, 'id')
const knownHostsFile = join(dir, 'known_hosts')

beforeAll(async () => {
  writeFileSync(identityFile, client.private, { mode: 0o600 })
  server = new Server({ hostKeys: [hostKey.private] }, (conn) => {
    conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])))
    conn.on('error', () => undefined)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const sshPort = (server.address() as AddressInfo).port
  relay = createServer((c) => {
    const s = createConnection({ host: '127.0.0.1', port: sshPort })
    sockets.push(c, s)
    c.on('error', () => undefined)
    s.on('error', () => undefined)
    c.on('data', (d: Buffer) => s.write(d))
    s.on('data', (d: Buffer) => (stalled ? held.push({ to: c, data: d }) : c.write(d)))
  })
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r))
  port = (relay.address() as AddressInfo).port
  const pub = utils.parseKey(hostKey.public)
  if (pub instanceof Error) throw pub
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${pub.type} ${pub.getPublicSSH().toString('base64')}\n`)
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((r) => relay.close(r))
  await new Promise((r) => server.close(r))
  cleanupTempDirs()
})

const info = () => ({ host: '127.0.0.1', port, user: 'u', identityFile, knownHostsFile })

/** Connects with a bound of `ms`, and resolves with the time the connection was lost (null: still up after `watchMs`). */
async function lostAfter(ms: number, watchMs: number, during?: (t0: number) => void): Promise<number | null> {
  const t0 = Date.now()
  let lost: number | null = null
  let wake = (): void => undefined
  const remote = await SshRemote.connect(
    info(),
    5000,
    () => {
      lost ??= Date.now() - t0
      wake()
    },
    ms
  )
  during?.(t0)
  await new Promise<void>((r) => {
    const t = setTimeout(r, watchMs)
    wake = () => (clearTimeout(t), r())
  })
  remote.close()
  return lost
}

test('keepalives: every 10 s, a third of the bound when shorter, given up about at the bound', () => {
  expect(keepalives(90_000)).toEqual({ keepaliveInterval: 10_000, keepaliveCountMax: 8 })
  expect(keepalives(30_000)).toEqual({ keepaliveInterval: 10_000, keepaliveCountMax: 2 })
  expect(keepalives(3_000)).toEqual({ keepaliveInterval: 1_000, keepaliveCountMax: 2 })
})

test('a server that stops answering is lost at the bound', async () => {
  const lost = await lostAfter(3_000, 6_000, () => stall(true))
  stall(false)
  expect(lost).not.toBeNull()
  expect(lost!).toBeGreaterThanOrEqual(2_500)
  expect(lost!).toBeLessThan(8_000) // from before the handshake: a loaded machine's login may take seconds
}, 20_000)

test('a server silent for less than the bound, then answering again, keeps the connection', async () => {
  const lost = await lostAfter(8_000, 9_000, () => {
    stall(true)
    setTimeout(() => stall(false), 5_000)
  })
  stall(false)
  expect(lost).toBeNull()
  // Control: the same 5-second stall is longer than a 3-second bound.
  let unstall: NodeJS.Timeout | undefined
  const short = await lostAfter(3_000, 6_000, () => {
    stall(true)
    unstall = setTimeout(() => stall(false), 5_000)
  })
  clearTimeout(unstall)
  stall(false)
  expect(short).not.toBeNull()
}, 30_000)

test('control: a server that answers keeps a connection with a short bound', async () => {
  expect(await lostAfter(3_000, 5_000)).toBeNull()
}, 20_000)
