// rsync over OpenSSH against VM a: when ssh refuses to go on, the error names ssh's reason (a key
// file others can read, a changed host key), not rsync's "connection unexpectedly closed".
// Each case has its control: the same copy with the problem fixed goes through.
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TransportError } from '../../src/errors'
import { opensshTransport, rsyncUp } from '../../src/sync/rsync'
import { resolveTools, tools, useTools } from '../../src/tools'
import { testVm } from '../helpers/conformance'
import { opensshArgs } from '../helpers/testenv'

const vm = testVm()
let dir: string
let src: string
const dest = (name: string): string => `${vm.workRoot}/rsync-reason-${process.pid}-${name}`

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'rch-rsync-reason-'))
  src = join(dir, 'src')
  mkdirSync(src)
  writeFileSync(join(src, 'f.txt'), 'hello\n')
  useTools(resolveTools({}, { workDir: '/nonexistent', runnerTemp: '/nonexistent/_temp' }))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
  // The control's copy on the VM (the failing copies never got there).
  execFileSync('ssh', ['-F', '/dev/null', ...opensshArgs(vm), `${vm.user}@${vm.host}`, `rm -rf ${dest('control')}`])
})

const info = (over: Partial<{ identityFile: string; knownHostsFile: string }> = {}) => ({
  host: vm.host,
  port: vm.port,
  user: vm.user,
  identityFile: vm.identityFile,
  knownHostsFile: vm.knownHostsFile,
  ...over
})
const copy = (i: ReturnType<typeof info>, name: string) => rsyncUp(opensshTransport(tools().ssh!, i), src, ['f.txt'], dest(name))

test('a key file others can read: the error says so', async () => {
  const key = join(dir, 'key')
  copyFileSync(vm.identityFile, key)
  chmodSync(key, 0o600)
  await expect(copy(info({ identityFile: key }), 'control')).resolves.toEqual({ files: 1, bytes: 6 }) // control: this key works
  chmodSync(key, 0o644)
  const err = await copy(info({ identityFile: key }), 'open').catch((e: Error) => e)
  expect(err).toBeInstanceOf(TransportError)
  expect((err as Error).message).toMatch(/its SSH transport failed: .*UNPROTECTED PRIVATE KEY FILE.*Load key "[^"]+": bad permissions/)
  expect((err as Error).message).not.toContain('unexpectedly closed')
})

test('a changed host key: the error says so', async () => {
  const other = join(dir, 'other')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
  const known = join(dir, 'known_hosts')
  writeFileSync(known, `[${vm.host}]:${vm.port} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`)
  const err = await copy(info({ knownHostsFile: known }), 'hostkey').catch((e: Error) => e)
  expect(err).toBeInstanceOf(TransportError)
  expect((err as Error).message).toMatch(
    /its SSH transport failed: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!.*Host key verification failed\.$/
  )
})
