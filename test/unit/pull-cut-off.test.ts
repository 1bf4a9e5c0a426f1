// A pull-back whose tar stream ends in the middle of a file (the VM's tar killed, the channel gone,
// or an archive cut short) leaves nothing of that file behind: no descriptor open in the process
// (the job's agent runs every step's pull for the whole job) and no temporary file in `_work`.
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { pull, type SyncTarget } from '../../src/sync/sync'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { header } from './_tar'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

const REAL_PATH = process.env.PATH ?? '/usr/bin:/bin'
const realTar = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()

/** Every command in the local /bin/sh, with PATH as given (a VM whose tar is replaced). */
function localRemote(path: string): Remote {
  return {
    async openExec(command) {
      const c = spawn('/bin/sh', ['-c', command], { env: { PATH: path } })
      const done = new Promise<{ code: number | null; signal: string | null }>((res) =>
        c.on('close', (code, signal) => res({ code, signal }))
      )
      return { stdin: c.stdin, stdout: c.stdout, stderr: c.stderr, done }
    },
    openSocket: () => Promise.reject(new Error('no sockets here')),
    close: () => undefined
  }
}

const openFds = (): number => readdirSync('/proc/self/fd').length

/** Files left in a folder tree whose names are the sync's temporary names. */
function leftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => /(^|\/)\.rch-.*\.tmp$/.test(p))
}

test.each([
  ['the VM tar fails mid-file', 2],
  ['the archive just stops mid-file', 0]
])('%s: no descriptor and no temporary file is left, step after step', async (_what, exit) => {
  const top = tempDir()
  const [host, vm, bin] = [`${top}/host`, `${top}/vm`, `${top}/bin`]
  for (const d of [`${host}/ws`, `${vm}/ws`, bin, `${top}/local`]) mkdirSync(d, { recursive: true })
  writeFileSync(`${vm}/ws/f`, 'x'.repeat(4096))
  // The header of ws/f as listed, then half of its bytes, then the end of the stream.
  writeFileSync(`${bin}/cut.tar`, Buffer.concat([header({ name: 'ws/f', size: 4096 }), Buffer.alloc(2048, 120)]))
  writeFileSync(`${bin}/tar`, `#!/bin/sh\ncase "$1" in -c) cat ${bin}/cut.tar; exit ${exit};; esac\nexec ${realTar} "$@"\n`)
  chmodSync(`${bin}/tar`, 0o755)
  const target: SyncTarget = {
    remote: localRemote(`${bin}:${REAL_PATH}`),
    hostWork: host,
    remoteWork: vm,
    manifestFile: `${top}/local/base.json`,
    excludes: []
  }
  // Warm up once (modules, lazily opened handles), then count.
  await expect(pull(target, ['ws'])).rejects.toThrow()
  await new Promise((r) => setTimeout(r, 50))
  const before = openFds()
  for (let i = 0; i < 20; i++) await expect(pull(target, ['ws'])).rejects.toThrow(exit ? /exit 2/ : /cut off/)
  // Handles close a moment after a failed pull returns: waited for, then asserted with the real values.
  await waitUntil(() => openFds() - before < 5 && leftovers(host).length === 0, 2000, 10)
  expect(leftovers(host)).toEqual([])
  // Whatever a temporary file is named: the host holds only what it held before the pulls.
  expect(readdirSync(host, { recursive: true, encoding: 'utf8' })).toEqual(['ws'])
  expect(openFds() - before).toBeLessThan(5)
})
