// rsync's OpenSSH transport must not be steered by the runner user's ssh configuration
// (ProxyCommand, LocalCommand, forwarding, shared connections): checked with the real ssh client
// run as a throwaway user whose ~/.ssh/config would run commands.
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { opensshArgs, opensshTransport, rsyncArgs } from '../../src/sync/rsync'
import { ConfigSchema } from '../../src/config'

const host = { host: '10.0.0.5', user: 'ci', identityFile: '/srv/keys/id', knownHostsFile: '/srv/keys/kh' }
const minimalConfig = { provider: { kind: 'static', hosts: [host] }, remote: { workRoot: '/srv/rch' } }
import { createLocalUser, type LocalUser } from '../helpers/local-user'

let user: LocalUser
let port = 0
const closed = createServer()

beforeAll(async () => {
  user = createLocalUser()
  // A port nothing listens on: ssh fails fast, after reading its config.
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()))
  port = (closed.address() as { port: number }).port
  await new Promise<void>((r) => closed.close(() => r()))
})
afterAll(() => user?.remove())

const info = () => ({ host: '127.0.0.1', port, user: 'nobody', identityFile: join(user.home, 'id'), knownHostsFile: join(user.home, 'kh') })

function plantConfig(marker: string): void {
  const dir = join(user.home, '.ssh')
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'config'),
    [
      'Host *',
      `  ProxyCommand /bin/sh -c 'echo proxy >> ${marker}; exit 1'`,
      '  PermitLocalCommand yes',
      `  LocalCommand /bin/sh -c 'echo local >> ${marker}'`,
      '  ForwardAgent yes',
      '  ControlMaster auto',
      `  ControlPath ${user.home}/cm-%r@%h:%p`,
      ''
    ].join('\n')
  )
  writeFileSync(join(user.home, 'id'), '')
  for (const f of ['.ssh', '.ssh/config', 'id']) {
    chownSync(join(user.home, f), user.uid, user.gid)
    chmodSync(join(user.home, f), f === '.ssh' ? 0o700 : 0o600)
  }
}

test("the user's ~/.ssh/config is not read: no ProxyCommand or LocalCommand of theirs runs", () => {
  const marker = join(user.home, 'ran')
  plantConfig(marker)
  // positive control: a plain ssh as that user runs the planted ProxyCommand
  user.tryRun(['/usr/bin/ssh', '-o', 'BatchMode=yes', '-p', String(port), '127.0.0.1', 'true'])
  expect(existsSync(marker)).toBe(true)
  rmSync(marker)

  const r = user.tryRun([...opensshArgs('/usr/bin/ssh', info()), '127.0.0.1', 'true'])
  expect(r.status).toBe(255) // it really tried (and failed) to connect
  expect(r.stderr).toMatch(/port \d+: Connection refused/)
  expect(existsSync(marker)).toBe(false)
  expect(existsSync(join(user.home, `cm-nobody@127.0.0.1:${port}`))).toBe(false)
})

test('explicit options close everything a config could turn on', () => {
  const args = opensshArgs('/usr/bin/ssh', info())
  expect(args.slice(0, 3)).toEqual(['/usr/bin/ssh', '-F', '/dev/null'])
  const opts = args.flatMap((a, i) => (args[i - 1] === '-o' ? [a] : []))
  for (const o of [
    'ForwardAgent=no',
    'ClearAllForwardings=yes',
    'ProxyCommand=none',
    'ProxyJump=none',
    'PermitLocalCommand=no',
    'ControlMaster=no',
    'ControlPath=none',
    'UpdateHostKeys=no',
    'ForwardX11=no',
    'StrictHostKeyChecking=yes',
    'BatchMode=yes',
    'IdentitiesOnly=yes',
    'GlobalKnownHostsFile=/dev/null',
    `UserKnownHostsFile=${info().knownHostsFile}`,
    'IdentityAgent=none'
  ])
    expect(opts).toContain(o)
})

test("rsync gets --protect-args, and --chmod for a job's files but not for the shared externals", () => {
  const t = opensshTransport('/usr/bin/ssh', info())
  expect(t.rsh.startsWith('/usr/bin/ssh -F /dev/null ')).toBe(true)
  const priv = rsyncArgs(t, ['/w/./_temp'], 'h:/d/', [], 'private')
  expect(priv).toEqual(expect.arrayContaining(['--protect-args', '--chmod=Dgo-rwx,Fgo-rwx']))
  const shared = rsyncArgs(t, ['/e/./.'], 'h:/d/', [], 'shared')
  expect(shared).toContain('--protect-args')
  expect(shared.some((a) => a.startsWith('--chmod'))).toBe(false)
})

// OpenSSH expands %-tokens, ${VAR} and a leading ~ in these paths, and splits an option's value
// (UserKnownHostsFile=) at white space: it would read another file than the one the hook checked.
test.each([
  ['/srv/ci 100%d/kh', true],
  ['/srv/${HOME}/kh', true],
  ['~/kh', true],
  ['/srv/ci tmp/kh', false],
  ['/srv/"q"/kh', false]
])('a known_hosts path OpenSSH would not read as written is refused: %s (as a key path too: %s)', (path, asKeyToo) => {
  // positive control (what ssh -G shows): ssh reads another file for the expanded ones
  const shown = spawnSync('/usr/bin/ssh', ['-F', '/dev/null', '-o', `UserKnownHostsFile=${path}`, '-G', '127.0.0.1'], { encoding: 'utf8' })
    .stdout.split('\n')
    .find((l) => l.startsWith('userknownhostsfile '))
  if (asKeyToo) expect(shown).not.toBe(`userknownhostsfile ${path}`)
  expect(() => opensshArgs('/usr/bin/ssh', { ...info(), knownHostsFile: path })).toThrow('OpenSSH would not read this path as written')
  const withKnownHosts = { ...minimalConfig, provider: { ...minimalConfig.provider, hosts: [{ ...host, knownHostsFile: path }] } }
  expect(ConfigSchema.safeParse(withKnownHosts).success).toBe(false)
  // -i takes its argument whole: a space or a quote is read as written, an expansion is not
  const asKey = () => opensshArgs('/usr/bin/ssh', { ...info(), identityFile: path })
  const withKey = { ...minimalConfig, provider: { ...minimalConfig.provider, hosts: [{ ...host, identityFile: path }] } }
  if (asKeyToo) {
    expect(asKey).toThrow('OpenSSH would not read this path as written')
    expect(ConfigSchema.safeParse(withKey).success).toBe(false)
  } else {
    expect(asKey).not.toThrow()
    expect(ConfigSchema.safeParse(withKey).success).toBe(true)
  }
  // control: plain paths are taken
  expect(ConfigSchema.safeParse(minimalConfig).success).toBe(true)
})

describe("what ssh makes of rsync's options (ssh -G: the settings it would connect with, nothing contacted)", () => {
  /** ssh -G's effective settings, lower-case keys as it prints them. */
  const effective = (args: string[]): Map<string, string> => {
    const r = spawnSync(args[0], [...args.slice(1), '-G', '127.0.0.1'], { encoding: 'utf8' })
    expect(r.status).toBe(0)
    return new Map(r.stdout.split('\n').map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]))
  }
  // What a config file could turn on: a weak key exchange, no host key check, other known_hosts,
  // forwarding, a shared connection, a command of its own.
  const hostile = {
    kexalgorithms: 'diffie-hellman-group14-sha1',
    stricthostkeychecking: 'false',
    userknownhostsfile: '/tmp/elsewhere',
    globalknownhostsfile: '/etc/ssh/ssh_known_hosts',
    batchmode: 'no',
    identitiesonly: 'no',
    identityagent: '/tmp/agent.sock',
    forwardagent: 'yes',
    forwardx11: 'yes',
    clearallforwardings: 'no',
    controlmaster: 'auto',
    controlpath: '/tmp/cm',
    permitlocalcommand: 'yes',
    localcommand: '/bin/false',
    proxycommand: '/bin/false',
    updatehostkeys: 'true'
  }
  const KEX = 'curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512'

  test('a config that is read after all (were -F dropped) turns on nothing: every option is stated on the command line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-ssh-g-'))
    try {
      const planted = join(dir, 'config')
      writeFileSync(
        planted,
        `Host *\n${Object.entries(hostile)
          .map(([k, v]) => `  ${k} ${v}\n`)
          .join('')}`
      )
      // positive control: ssh reading that config takes every one of its settings
      const control = effective(['/usr/bin/ssh', '-F', planted])
      for (const [k, v] of Object.entries(hostile)) expect([k, control.get(k)]).toEqual([k, v])
      const args = opensshArgs('/usr/bin/ssh', info())
      expect(args.slice(1, 3)).toEqual(['-F', '/dev/null'])
      const got = effective([args[0], '-F', planted, ...args.slice(3)])
      for (const k of Object.keys(hostile)) expect([k, got.get(k)]).not.toEqual([k, hostile[k as keyof typeof hostile]])
      expect(got.get('kexalgorithms')).toBe(KEX)
      expect(got.get('stricthostkeychecking')).toBe('true')
      expect(got.get('userknownhostsfile')).toBe(info().knownHostsFile)
      expect(got.get('globalknownhostsfile')).toBe('/dev/null')
      expect(got.get('batchmode')).toBe('yes')
      expect(got.get('forwardagent')).toBe('no')
      expect(got.get('controlmaster')).toBe('false')
      expect(got.has('proxycommand')).toBe(false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test("the key exchanges are only the four named (control: ssh's own default list has more)", () => {
    const args = opensshArgs('/usr/bin/ssh', info())
    expect(effective(args).get('kexalgorithms')).toBe(KEX)
    expect(effective(['/usr/bin/ssh', '-F', '/dev/null']).get('kexalgorithms')).not.toBe(KEX)
  })

  test("a peer that stops answering ends the transport within a minute (control: ssh's own default never does)", () => {
    const got = effective(opensshArgs('/usr/bin/ssh', info()))
    expect([got.get('serveraliveinterval'), got.get('serveralivecountmax')]).toEqual(['15', '4'])
    expect(effective(['/usr/bin/ssh', '-F', '/dev/null']).get('serveraliveinterval')).toBe('0')
  })
})
