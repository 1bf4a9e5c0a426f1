// Image pulls are bounded: images.pullTimeoutSeconds ends a hung pull, and a cancel ends it at once;
// either way the remote channel is closed and the call fails.
import { pullImage } from '../../src/docker/cli'
import { Cancelled } from '../../src/errors'
import { existsSync } from 'node:fs'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'
import { LocalRemote } from './local-remote'

afterAll(cleanupTempDirs)

/** A docker that has no image and whose pull takes `secs` seconds (it creates dir/pulling first). */
function remote(secs: number, dir = tempDir()): LocalRemote {
  return new LocalRemote(dir, {}, { docker: `case "$1" in image) exit 1;; pull) : > ${dir}/pulling; sleep ${secs}; echo pulled;; esac` })
}

test('a pull that finishes in time succeeds (positive control)', async () => {
  await expect(pullImage(remote(0.2), 'img:1', null, '/nowhere', undefined, { timeoutMs: 10_000 })).resolves.toBe('pulled')
})

test('a hung pull fails after images.pullTimeoutSeconds, naming the pull', async () => {
  const t0 = Date.now()
  await expect(pullImage(remote(30), 'img:1', null, '/nowhere', undefined, { timeoutMs: 500 })).rejects.toThrow(
    'docker pull img:1: no result after 0.5 s'
  )
  expect(Date.now() - t0).toBeLessThan(3000)
})

test('a cancel ends the pull at once with Cancelled', async () => {
  const c = new AbortController()
  const dir = tempDir()
  const pulling = pullImage(remote(30, dir), 'img:1', null, '/nowhere', undefined, { signal: c.signal }).catch((e: unknown) => e)
  expect(await waitUntil(() => existsSync(`${dir}/pulling`), 10_000, 10)).toBe(true)
  const t0 = Date.now()
  c.abort('SIGINT')
  const err = await pulling
  expect(err).toBeInstanceOf(Cancelled)
  expect((err as Error).message).toBe('cancelled by SIGINT')
  expect(Date.now() - t0).toBeLessThan(3000)
})

test('the pull output a hostile docker on the VM prints is held a bounded line at a time (a line without end is not buffered whole)', async () => {
  // 8 MiB without a newline, then a short line: the docker CLI on the VM is the job's to replace.
  const r = new LocalRemote(
    tempDir(),
    {},
    { docker: `case "$1" in image) exit 1;; pull) head -c 8388608 /dev/zero | tr '\\0' x; printf '\\nok\\n';; esac` }
  )
  const lines: string[] = []
  await expect(pullImage(r, 'img:1', null, '/nowhere', (l) => void lines.push(l), { timeoutMs: 20_000 })).resolves.toBe('pulled')
  expect(lines[lines.length - 1]).toBe('ok') // control: the lines after it still arrive
  expect(lines[0].startsWith('xxxx')).toBe(true) // control: the long line was really printed
  expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(4096)
})

test("a failed container's logs are read up to 1 MiB, whatever the VM's docker prints (control: a short log is shown)", async () => {
  const { containerLogs } = await import('../../src/docker/cli')
  const huge = new LocalRemote(tempDir(), {}, { docker: 'head -c 20000000 /dev/zero | tr "\\0" x' })
  await expect(containerLogs(huge, 'c1')).resolves.toMatch(/over 1048576 bytes: not shown/)
  const short = new LocalRemote(tempDir(), {}, { docker: 'echo "database ready"' })
  await expect(containerLogs(short, 'c1')).resolves.toBe('database ready\n')
})
