// OpenSSH may send a command's exit status before the last of its output; a connection that drops
// then closes the channel on the client's side alone. The exit status must not pass for the end of
// the command: a listing cut at a record's end parses whole, and what it left out would be taken as
// deleted on the VM. Only a channel the server closed itself keeps its status.
import type { Socket } from 'node:net'
import { TransportError } from '../../src/errors'
import { check } from '../../src/remote/remote'
import { SshRemote } from '../../src/remote/ssh'
import { testSshd, type TestSshd } from '../helpers/ssh-server'

let sshd: TestSshd

beforeAll(async () => {
  sshd = await testSshd((ch, command, conn) => {
    // Half a listing of whole records, then the exit status 0.
    ch.write('a\0b\0')
    ch.exit(0)
    // `cut`: the connection drops; otherwise (control) the server ends and closes the channel.
    if (command === 'cut') setTimeout(() => (conn as unknown as { _sock: Socket })._sock.destroy(), 50)
    else ch.end()
  })
})
afterAll(() => sshd.close())

async function listing(command: string): Promise<{ out: string } | { error: unknown }> {
  const remote = await SshRemote.connect(sshd.info, 5000)
  try {
    const r = await check(remote, command, { collect: true })
    return { out: r.stdout.toString() }
  } catch (error) {
    return { error }
  } finally {
    remote.close()
  }
}

test('control: a channel the server closes keeps its exit status 0 and its output', async () => {
  expect(await listing('whole')).toEqual({ out: 'a\0b\0' })
})

test('a channel closed by a dropped connection after an exit status 0 is a lost connection, not a success', async () => {
  const r = await listing('cut')
  expect('error' in r && r.error).toBeInstanceOf(TransportError)
  expect(r).toMatchObject({ error: { kind: 'lost' } })
})
