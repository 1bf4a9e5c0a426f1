// The first copy's rsync gives up on a peer that says nothing: an `rsync --server` left on the VM by
// a job that was root there (played here by a transport that never answers), or a dead path.
import { chmodSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { opensshTransport, rsyncArgs, rsyncUp, RSYNC_IO_TIMEOUT_SECONDS, type RsyncTransport } from '../../src/sync/rsync'
import { HookError, TransportError } from '../../src/errors'
import { settlesWithin } from '../../src/retry'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)
jest.setTimeout(30_000)

const silent = (): RsyncTransport => {
  const rsh = `${tempDir()}/silent-rsh`
  writeFileSync(rsh, '#!/bin/sh\nexec sleep 600\n')
  chmodSync(rsh, 0o755)
  return { rsh, host: 'vm' }
}

test('every copy has an I/O bound', () => {
  expect(rsyncArgs({ rsh: 'ssh', host: 'h' }, ['/w/./_temp'], 'h:/d/', [], 'private')).toContain(`--timeout=${RSYNC_IO_TIMEOUT_SECONDS}`)
})

test('a transport that never answers fails the copy at the bound, naming rsync’s timeout (the bound shortened to 2 s here)', async () => {
  const src = tempDir()
  writeFileSync(`${src}/f`, 'x')
  const copy = rsyncUp(silent(), src, ['f'], '/d', ['--timeout=2'])
  copy.catch(() => undefined)
  expect(await settlesWithin(copy, 15_000)).toBe(true)
  await expect(copy).rejects.toBeInstanceOf(HookError)
  await expect(copy).rejects.toThrow(/rsync to \/d failed \(exit 30\).*timeout/)
})

test('control: without a bound the same copy is still waiting', async () => {
  const src = tempDir()
  writeFileSync(`${src}/f`, 'x')
  const stop = new AbortController()
  const copy = rsyncUp(silent(), src, ['f'], '/d', ['--timeout=0'], stop.signal)
  copy.catch(() => undefined)
  expect(await settlesWithin(copy, 4000)).toBe(false)
  stop.abort('SIGINT')
  expect(await settlesWithin(copy, 5000)).toBe(true)
})

test("a host that accepts the connection but never sends its SSH banner fails at the hook's connect bound, as a network failure", async () => {
  // A listener that says nothing (a stopped sshd whose port still accepts, a middlebox holding the connection).
  const held = new Set<Socket>()
  const server = createServer((c) => void held.add(c))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as { port: number }).port
  const keys = tempDir()
  writeFileSync(`${keys}/id`, '', { mode: 0o600 })
  writeFileSync(`${keys}/kh`, '')
  const src = tempDir()
  writeFileSync(`${src}/f`, 'x')
  try {
    const transport = opensshTransport(
      'ssh',
      { host: '127.0.0.1', port, user: 'u', identityFile: `${keys}/id`, knownHostsFile: `${keys}/kh` },
      1
    )
    // rsync's own I/O bound stays far off (20 s): the connect bound (1 s) is what ends it.
    const copy = rsyncUp(transport, src, ['f'], '/d', ['--timeout=20'])
    copy.catch(() => undefined)
    expect(await settlesWithin(copy, 10_000)).toBe(true)
    await expect(copy).rejects.toBeInstanceOf(TransportError)
    await expect(copy).rejects.toMatchObject({
      kind: 'network',
      message: expect.stringContaining('Connection timed out during banner exchange')
    })
  } finally {
    for (const c of held) c.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  }
})
