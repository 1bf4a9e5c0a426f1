// check(): a command the VM killed is the VM's answer (RemoteCommandError naming the signal); only
// a channel that ends with neither an exit code nor a signal is a lost connection.
import { check, type Remote } from '../../src/remote/remote'
import { RemoteCommandError, TransportError } from '../../src/errors'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

/** Every channel of `local` ends as a dropped connection's does: no exit code, no signal. */
const dropping = (local: LocalRemote): Remote => ({
  openExec: async (c) => {
    const ch = await local.openExec(c)
    return { ...ch, done: ch.done.then(() => ({ code: null, signal: null })) }
  },
  openSocket: (p) => local.openSocket(p),
  close: () => undefined
})

test('a command killed by a signal fails naming it, not as a lost connection', async () => {
  const failed = check(new LocalRemote(tempDir()), 'kill -KILL 0', { label: 'docker rm' })
  await expect(failed).rejects.toBeInstanceOf(RemoteCommandError)
  await expect(failed).rejects.toThrow('docker rm failed (killed by signal SIGKILL)')
  await expect(failed).rejects.toMatchObject({ exitCode: null, signal: 'SIGKILL' })
})

test('control: a channel without exit code or signal is a lost connection', async () => {
  const lost = check(dropping(new LocalRemote(tempDir())), 'true', { label: 'docker rm' })
  await expect(lost).rejects.toBeInstanceOf(TransportError)
  await expect(lost).rejects.toMatchObject({ kind: 'lost', message: 'connection lost while running docker rm' })
})

test('controls: an exit code fails with it, and 0 passes', async () => {
  await expect(check(new LocalRemote(tempDir()), 'exit 3', { label: 'x' })).rejects.toThrow('x failed (exit code 3)')
  await expect(check(new LocalRemote(tempDir()), 'true')).resolves.toMatchObject({ code: 0 })
})
