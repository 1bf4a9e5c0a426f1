// The first copy (a tar over the hook's own connection) has a bound on a stall: a remote that stops
// taking the copy (an extracting tar left to hang by an earlier job that was root on the VM) fails
// it, where a step's push waits until its cancel. Progress alone resets the bound.
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { push, type SyncTarget } from '../../src/sync/sync'
import { walkLocal } from '../../src/sync/tree'
import { settlesWithin } from '../../src/retry'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)
jest.setTimeout(30_000)

const realTar = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()

function copy(tarStub: string | null, size: number, stallMs = 1000): { run: Promise<unknown>; vm: string } {
  const host = tempDir()
  const vm = tempDir()
  execFileSync('mkdir', ['-p', `${host}/ws`])
  writeFileSync(`${host}/ws/f.bin`, Buffer.alloc(size, 7))
  const t: SyncTarget = {
    remote: new LocalRemote(tempDir(), {}, tarStub === null ? {} : { tar: tarStub }),
    hostWork: host,
    remoteWork: vm,
    manifestFile: '',
    excludes: []
  }
  const run = push(t, ['ws'], { fresh: walkLocal(host, ['ws'], []), stallMs })
  run.catch(() => undefined)
  return { run, vm }
}

test.each([
  ['that stops reading (a copy bigger than the pipe)', 4 << 20],
  ['that reads it all and never ends', 1000]
])('a remote tar %s fails the first copy at the bound, naming it', async (_what, size) => {
  const c = copy(`case "$1" in -x*) exec sleep 600;; esac\nexec ${realTar} "$@"`, size)
  expect(await settlesWithin(c.run, 8000)).toBe(true)
  await expect(c.run).rejects.toThrow(/^the first copy to the remote made no progress for 1 s: the remote stopped taking it$/)
})

test('control: a slow remote that keeps taking the copy is not cut (pauses of 0.2 s against a bound of 3 s; 3 s in all)', async () => {
  // 4 MiB taken 256 KiB at a time, 0.2 s apart.
  const slow =
    'f=$(mktemp); while dd bs=262144 count=1 iflag=fullblock of="$f" 2>/dev/null && [ -s "$f" ]; do cat "$f"; sleep 0.2; done; rm -f "$f"'
  const c = copy(`case "$1" in -x*) { ${slow}; } | ${realTar} "$@"; exit $?;; esac\nexec ${realTar} "$@"`, 4 << 20, 3000)
  await c.run
  expect(readFileSync(`${c.vm}/ws/f.bin`).length).toBe(4 << 20)
})
