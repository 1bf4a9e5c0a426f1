// The SSH socket reads into one reused buffer only while ssh2's decipher copies what it reads
// (src/remote/read-buffer.ts), against the real sshd. ssh2 runs without its native binding here, as
// in the bundle (which carries no .node file): its JavaScript ciphers are what the agent uses.
// Virtual: the binding exists only where npm could compile it.
jest.mock(
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- hoisted above the imports
  require('node:path').join(require('node:path').dirname(require.resolve('ssh2')), 'protocol/crypto/build/Release/sshcrypto.node'),
  () => {
    throw new Error('not in the bundle')
  },
  { virtual: true }
)

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Client, type ClientChannel } from 'ssh2'
import { SshRemote } from '../../src/remote/ssh'
import { connectReusingReads, type ReadCounts } from '../../src/remote/read-buffer'
import { testVm } from '../helpers/conformance'

const vm = testVm()
const info = { host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile }
// 20 MiB of random bytes, their hash on stderr: what arrives must hash the same.
const BULK = 'f=$(mktemp) && head -c 20971520 /dev/urandom > "$f" && sha256sum < "$f" >&2 && cat "$f"; r=$?; rm -f "$f"; exit $r'

interface Got {
  sha: string
  remoteSha: string
  bytes: number
}

/** Reads a run of BULK to its end: its bytes, their hash, and the hash the remote printed. */
function collect(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream): Promise<Got> {
  return new Promise((resolve) => {
    const h = createHash('sha256')
    let bytes = 0
    let errText = ''
    stdout.on('data', (c: Buffer) => {
      bytes += c.length
      h.update(c)
    })
    stderr.on('data', (c: Buffer) => (errText += c.toString()))
    stdout.on('end', () => resolve({ sha: h.digest('hex'), remoteSha: errText.split(' ')[0].trim(), bytes }))
  })
}

test('ssh2 runs on its JavaScript ciphers here, as in the bundle', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- ssh2's own module, to read how it loaded
  expect(require('ssh2/lib/protocol/crypto').bindingAvailable).toBe(false)
})

test('over AES-GCM the reads reuse one buffer, and 20 MiB arrive byte-exact', async () => {
  const remote = await SshRemote.connect(info, 10_000)
  try {
    const ch = await remote.openExec(BULK)
    const got = await collect(ch.stdout, ch.stderr)
    await ch.done
    expect(got.bytes).toBe(20971520)
    expect(got.sha).toBe(got.remoteSha)
    // Without the reuse every read is a new buffer: fresh would be in the hundreds.
    expect(remote.reads.reused).toBeGreaterThan(100)
    expect(remote.reads.fresh).toBeLessThan(20)
  } finally {
    remote.close()
  }
})

/** A bare ssh2 client on a reusing socket, with the predicate under test. */
function client(cipher: string, counts: ReadCounts, copies?: (d: unknown) => boolean): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client()
    const decipher = (): unknown => (c as unknown as { _protocol?: { _decipher?: unknown } })._protocol?._decipher
    c.on('ready', () => resolve(c)).on('error', reject)
    c.connect({
      sock: connectReusingReads(vm.host, vm.port, decipher, counts, copies),
      username: vm.user,
      privateKey: readFileSync(vm.identityFile),
      algorithms: { cipher: [cipher] as never }
    })
  })
}

test('positive control: reusing the buffer whatever the decipher breaks the key exchange', async () => {
  const counts = { reused: 0, fresh: 0 }
  await expect(client('aes128-gcm@openssh.com', counts, () => true)).rejects.toThrow(/handshake|signature|verif|mac/i)
  expect(counts.reused).toBeGreaterThan(0)
})

test('a cipher not known to copy (ChaCha20-Poly1305) gets a new buffer for every read, and the bytes arrive exact', async () => {
  const counts = { reused: 0, fresh: 0 }
  const c = await client('chacha20-poly1305@openssh.com', counts)
  try {
    const ch = await new Promise<ClientChannel>((res, rej) => c.exec(BULK, (err, s) => (err ? rej(err) : res(s))))
    const got = await collect(ch, ch.stderr)
    expect(got.sha).toBe(got.remoteSha)
    expect(counts.reused).toBe(0)
    expect(counts.fresh).toBeGreaterThan(100)
  } finally {
    c.end()
  }
})
