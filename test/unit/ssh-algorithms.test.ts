// What the hook's own ssh2 connections offer in their key exchange: read off the client's KEXINIT
// packet (sent in the clear, before any key is agreed) by a loopback listener that plays a server
// only up to there. A server that also speaks weaker algorithms gets none of them chosen, because
// the hook never offers them.
import { writeFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { Client } from 'ssh2'
import { SshRemote } from '../../src/remote/ssh'
import { testKeyPair } from '../helpers/keys'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

interface Offer {
  kex: string[]
  hostKey: string[]
  cipher: string[]
}

/** The client's first binary packet, after both version lines: its KEXINIT name-lists. */
function parseKexinit(buf: Buffer): Offer | null {
  const eol = buf.indexOf('\r\n')
  if (eol < 0 || buf.length < eol + 2 + 5) return null
  const p = buf.subarray(eol + 2)
  const len = p.readUInt32BE(0)
  if (p.length < 4 + len) return null
  const payload = p.subarray(5, 4 + len - p[4])
  if (payload[0] !== 20) throw new Error(`not a KEXINIT: message ${payload[0]}`)
  let off = 17 // message number and cookie
  const lists: string[][] = []
  for (let i = 0; i < 10; i++) {
    const n = payload.readUInt32BE(off)
    lists.push(
      payload
        .toString('latin1', off + 4, off + 4 + n)
        .split(',')
        .filter(Boolean)
    )
    off += 4 + n
  }
  // ssh2's markers for protocol extensions are not algorithms.
  const kex = lists[0].filter((a) => !/^(ext-info-c|kex-strict-c-v00@openssh\.com)$/.test(a))
  return { kex, hostKey: lists[1], cipher: [...new Set([...lists[2], ...lists[3]])] }
}

let server: Server
let port = 0
let offers: Offer[] = []

beforeAll(async () => {
  server = createServer((sock: Socket) => {
    sock.on('error', () => undefined)
    sock.write('SSH-2.0-OpenSSH_9.2p1\r\n')
    let got = Buffer.alloc(0)
    sock.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c])
      const offer = parseKexinit(got)
      if (!offer) return
      offers.push(offer)
      sock.destroy()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as AddressInfo).port
})
afterAll(() => new Promise((r) => server.close(r)))
beforeEach(() => (offers = []))

/** The hook's connection to the listener, pinned to an ed25519 key; it fails once the listener hangs up. */
async function hookOffer(): Promise<Offer> {
  const dir = tempDir()
  const identityFile = join(dir, 'id')
  const knownHostsFile = join(dir, 'known_hosts')
  writeFileSync(identityFile, testKeyPair().private, { mode: 0o600 })
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${testKeyPair().public.split(' ').slice(0, 2).join(' ')}\n`)
  await expect(SshRemote.connect({ host: '127.0.0.1', port, user: 'u', identityFile, knownHostsFile }, 5000)).rejects.toThrow()
  expect(offers).toHaveLength(1)
  return offers[0]
}

/** ssh2 with its own defaults, as a client that did not state its algorithms would offer. */
async function defaultOffer(): Promise<Offer> {
  const c = new Client()
  await new Promise<void>((res) => {
    c.on('error', () => res())
    c.on('close', () => res())
    c.connect({ host: '127.0.0.1', port, username: 'u', password: 'x', readyTimeout: 5000 })
  })
  expect(offers).toHaveLength(1)
  return offers[0]
}

const KEX = ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'diffie-hellman-group14-sha256']
const CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr']

test("positive control: a client that does not state its algorithms offers more than the hook's (the listener sees every one offered)", async () => {
  const o = await defaultOffer()
  expect(o.kex.filter((a) => !KEX.includes(a)).length).toBeGreaterThan(0)
  expect(o.cipher.filter((a) => !CIPHERS.includes(a)).length).toBeGreaterThan(0)
  expect(o.hostKey.length).toBeGreaterThan(1)
})

test('the hook offers only the key exchanges and ciphers it names, and only the host-key algorithm of the pinned key', async () => {
  const o = await hookOffer()
  expect(o.kex.length).toBeGreaterThan(0)
  expect(o.kex.filter((a) => !KEX.includes(a))).toEqual([])
  expect(o.cipher.length).toBeGreaterThan(0)
  expect(o.cipher.filter((a) => !CIPHERS.includes(a))).toEqual([])
  expect(o.hostKey).toEqual(['ssh-ed25519'])
})
