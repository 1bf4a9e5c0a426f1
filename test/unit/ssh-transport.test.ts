// rsync's OpenSSH transport must not be steered by the runner user's ssh configuration
// (ProxyCommand, LocalCommand, forwarding, shared connections): checked with the real ssh client
// run as a throwaway user whose ~/.ssh/config would run commands.
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { opensshArgs, opensshTransport, rsyncArgs } from '../../src/sync/rsync'
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
