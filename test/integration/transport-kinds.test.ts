// Connection failures carry their kind from where they arise (a real sshd on loopback): retry
// decisions read the kind, so a reworded message cannot turn a wrong key into a 10-minute wait.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshRemote } from '../../src/remote/ssh'
import { TransportError, isPermanentTransport } from '../../src/errors'
import { connectFailure, connectFailureLine } from '../../src/remote/agent-failure'
import { testVm } from '../helpers/conformance'

const dir = mkdtempSync(join(tmpdir(), 'rch-kinds-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function newKey(name: string): string {
  const f = join(dir, name)
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f])
  return f
}

async function failure(info: Parameters<typeof SshRemote.connect>[0]): Promise<TransportError> {
  const r = await SshRemote.connect(info, 5000).then(
    (remote) => {
      remote.close()
      return null
    },
    (e: unknown) => e
  )
  expect(r).toBeInstanceOf(TransportError)
  return r as TransportError
}

describe('transport error kinds', () => {
  const vm = testVm()
  const good = { host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile }

  it('connects with the right keys (positive control)', async () => {
    const r = await SshRemote.connect(good, 5000)
    r.close()
  })

  it('hostkey: the server presents a key other than the pinned one', async () => {
    const other = newKey('other-host')
    const known = join(dir, 'known_hosts')
    writeFileSync(known, `[${vm.host}]:${vm.port} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`)
    const e = await failure({ ...good, knownHostsFile: known })
    expect(e.kind).toBe('hostkey')
    expect(isPermanentTransport(e)).toBe(true)
  })

  it('auth: a client key the server does not accept', async () => {
    const e = await failure({ ...good, identityFile: newKey('stranger') })
    expect(e.kind).toBe('auth')
    expect(isPermanentTransport(e)).toBe(true)
  })

  it('keyfile: a missing key file, and one that is not a key', async () => {
    expect((await failure({ ...good, identityFile: join(dir, 'missing') })).kind).toBe('keyfile')
    const junk = join(dir, 'junk')
    writeFileSync(junk, 'not a key\n')
    const e = await failure({ ...good, identityFile: junk })
    expect(e.kind).toBe('keyfile')
    expect(isPermanentTransport(e)).toBe(true)
  })

  it('network: nothing listens on the port (may mend by waiting)', async () => {
    const e = await failure({ ...good, port: 1 })
    expect(e.kind).toBe('network')
    expect(isPermanentTransport(e)).toBe(false)
  })

  it("an agent's connect failure keeps its kind on the way back to the hook", async () => {
    const e = await failure({ ...good, identityFile: newKey('stranger2') })
    const log = `2026-12-01T00:00:00.000Z agent 1: starting\n2026-12-01T00:00:01.000Z agent 1: ${connectFailureLine(e)}\n`
    const back = connectFailure(log)
    expect(back?.kind).toBe('auth')
    expect(back?.message).toBe(e.message)
    expect(connectFailure('2026-12-01T00:00:00.000Z agent 1: ssh connection closed\n')).toBeNull()
  })
})
