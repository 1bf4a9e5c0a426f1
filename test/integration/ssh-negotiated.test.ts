// What a real sshd that also speaks weak algorithms ends up agreeing with the hook, read from the
// server's own debug log: the unit tests read what the hook offers, this reads what is chosen.
// The sshd is the test VM's (its host key, its authorized keys, its user) on a port of its own,
// with SHA-1 key exchange, CBC ciphers and SHA-1 MACs switched on. Positive controls: a client
// that offers only those gets them, and OpenSSH's client without the hook's options gets its own
// default key exchange.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Client } from 'ssh2'
import { SshRemote } from '../../src/remote/ssh'
import { check } from '../../src/remote/remote'
import { opensshArgs } from '../../src/sync/rsync'
import { freePort, testVm } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'

const vm = testVm()
const dir = mkdtempSync(join(tmpdir(), 'rch-ssh-negotiated-'))
const logFile = join(dir, 'sshd.log')
let sshd: ChildProcess
let port = 0
let knownHostsFile = ''

beforeAll(async () => {
  port = await freePort()
  const vmConfig = readFileSync(join(dirname(vm.identityFile), 'sshd_config'), 'utf8')
  const setting = (k: string): string => new RegExp(`^${k} (.+)$`, 'm').exec(vmConfig)![1]
  const config = join(dir, 'sshd_config')
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${setting('HostKey')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${setting('AuthorizedKeysFile')}`,
      `AllowUsers ${vm.user}`,
      'AuthenticationMethods publickey',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // What a server kept for old clients still accepts: none of it may be chosen with the hook.
      'KexAlgorithms +diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1',
      'Ciphers +aes128-cbc,aes256-cbc',
      'MACs +hmac-sha1',
      'LogLevel DEBUG1',
      ''
    ].join('\n'),
    { mode: 0o600 }
  )
  const t = spawnSync('/usr/sbin/sshd', ['-t', '-f', config], { encoding: 'utf8' })
  if (t.status !== 0) throw new Error(`sshd -t: ${t.stderr}`)
  sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config, '-E', logFile], { stdio: 'ignore' })
  await waitUntil(() => readLog().includes(`Server listening on 127.0.0.1 port ${port}`), 10_000)
  const key = readFileSync(vm.knownHostsFile, 'utf8').split('\n')[0].split(' ').slice(1).join(' ')
  knownHostsFile = join(dir, 'known_hosts')
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${key}\n`)
})

afterAll(() => {
  sshd?.kill()
  rmSync(dir, { recursive: true, force: true })
})

function readLog(): string {
  try {
    return readFileSync(logFile, 'utf8')
  } catch {
    return ''
  }
}

interface Chosen {
  kex: string
  hostKey: string
  cipher: string[]
  mac: string[]
}

/** What sshd logged as agreed for the next connection, once `connect` has logged in over it. */
async function chosenFor(connect: () => Promise<void>): Promise<Chosen> {
  const from = readLog().length
  await connect()
  let text = ''
  await waitUntil(() => /kex: server->client cipher/.test((text = readLog().slice(from))), 5000)
  const one = (re: RegExp): string => re.exec(text)?.[1] ?? '(none)'
  const dirs = [...text.matchAll(/kex: (?:client->server|server->client) cipher: (\S+) MAC: (\S+)/g)]
  return {
    kex: one(/kex: algorithm: (\S+)/),
    hostKey: one(/kex: host key algorithm: (\S+)/),
    cipher: dirs.map((m) => m[1]),
    mac: dirs.map((m) => m[2])
  }
}

const info = () => ({ host: '127.0.0.1', port, user: vm.user, identityFile: vm.identityFile, knownHostsFile })

test('positive control: a client offering only SHA-1 key exchange, CBC and SHA-1 MACs gets them from this sshd', async () => {
  const chosen = await chosenFor(
    () =>
      new Promise<void>((resolve, reject) => {
        const c = new Client()
        c.on('ready', () => {
          c.end()
          resolve()
        })
        c.on('error', reject)
        c.connect({
          host: '127.0.0.1',
          port,
          username: vm.user,
          privateKey: readFileSync(vm.identityFile),
          algorithms: { kex: ['diffie-hellman-group14-sha1'], cipher: ['aes128-cbc'], hmac: ['hmac-sha1'] }
        })
      })
  )
  expect(chosen).toEqual({
    kex: 'diffie-hellman-group14-sha1',
    hostKey: 'ssh-ed25519',
    cipher: ['aes128-cbc', 'aes128-cbc'],
    mac: ['hmac-sha1', 'hmac-sha1']
  })
})

test("the hook's own ssh2 connection gets curve25519 and AES-GCM (an AEAD cipher: no separate MAC)", async () => {
  const chosen = await chosenFor(async () => {
    const remote = await SshRemote.connect(info(), 10_000)
    try {
      await check(remote, 'true')
    } finally {
      remote.close()
    }
  })
  expect(chosen).toEqual({
    kex: 'curve25519-sha256',
    hostKey: 'ssh-ed25519',
    cipher: ['aes128-gcm@openssh.com', 'aes128-gcm@openssh.com'],
    mac: ['<implicit>', '<implicit>']
  })
})

test("rsync's OpenSSH transport gets curve25519; control: OpenSSH's client left to its defaults picks its post-quantum exchange", async () => {
  const run = (argv: string[]) => async (): Promise<void> => {
    const r = spawnSync(argv[0], [...argv.slice(1), '127.0.0.1', 'true'], { encoding: 'utf8', timeout: 20_000 })
    if (r.status !== 0) throw new Error(`ssh exited ${r.status}: ${r.stderr}`)
  }
  const hooks = await chosenFor(run(opensshArgs('/usr/bin/ssh', info())))
  expect(hooks.kex).toBe('curve25519-sha256')
  expect(hooks.hostKey).toBe('ssh-ed25519')
  const base = [
    '/usr/bin/ssh',
    '-F',
    '/dev/null',
    '-i',
    vm.identityFile,
    '-p',
    String(port),
    '-l',
    vm.user,
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${knownHostsFile}`
  ]
  const plain = await chosenFor(run(base))
  expect(plain.kex).not.toBe('curve25519-sha256')
  expect(plain.kex).toMatch(/sntrup|mlkem/)
  // neither picks a weak cipher or MAC this server would accept
  for (const c of [hooks, plain]) {
    expect(c.cipher.some((x) => /cbc/.test(x))).toBe(false)
    expect(c.mac.some((x) => /^hmac-sha1/.test(x))).toBe(false)
  }
})
