// Scripts the hook runs on a VM whose disk a job filled (no inode or block left): a real tmpfs,
// mounted here (as root), used up; the "VM" is a local folder run by the real /bin/sh (dash), find,
// tar and flock (test/unit/local-remote.ts). A failed redirection of a special built-in (`:`,
// `exec`) ends a POSIX shell outright, so these scripts must not rely on one failing softly.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pull, type SyncTarget } from '../../src/sync/sync'
import { ask } from '../../src/remote/answer'
import { acquireScript } from '../../src/providers/pool-lease'
import { LocalRemote } from '../unit/local-remote'
import { treeView } from '../unit/_tree-view'

const ROOTS = ['_temp', 'ws']

let top = ''
const mounts: string[] = []
afterAll(() => {
  for (const m of mounts) spawnSync('umount', ['--lazy', m])
  if (top) rmSync(top, { recursive: true, force: true })
})

/** A small tmpfs at `dir`, its folders `keep` made, then every inode and block used up. */
function fullDisk(dir: string, keep: string[]): void {
  mkdirSync(dir, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,nr_inodes=64,mode=0755', 'rch-full-disk', dir])
  mounts.push(dir)
  for (const d of keep) mkdirSync(join(dir, d), { recursive: true })
}

/** Uses up the inodes and blocks left on the file system of `dir` (from a folder `fill` in it). */
function fill(dir: string): void {
  const f = join(dir, 'fill')
  mkdirSync(f)
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(f, `i${i}`), '')
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC')
      break
    }
  }
  expect(spawnSync('sh', ['-c', `cat /dev/zero > ${join(f, 'i0')}`]).stderr.toString()).toMatch(/No space left/)
}

const tree = (base: string): string[] => treeView(base, ROOTS)

test('a VM disk with no inode or block left: the pull lists everything and brings back what changed; no listing file is left', async () => {
  top = mkdtempSync(join(tmpdir(), 'rch-full-disk-'))
  const disk = join(top, 'job')
  const vm = join(disk, 'w')
  const host = join(top, 'host')
  fullDisk(disk, ['w/_temp/_runner_file_commands', 'w/ws/src'])
  for (const d of [host, join(top, 'local')]) mkdirSync(d, { recursive: true })
  writeFileSync(join(vm, 'ws', 'src', 'a.txt'), 'first\n')
  writeFileSync(join(vm, '_temp', '_runner_file_commands', 'set_output_1'), 'x=1\n')
  fill(disk)
  // Positive control: the listing's stamp file cannot be made there.
  const stamp = spawnSync('sh', ['-c', ': > ../.rch-list-stamp.probe'], { cwd: vm })
  expect({ status: stamp.status, stderr: stamp.stderr.toString() }).toEqual({
    status: expect.not.stringMatching(/^0$/),
    stderr: expect.stringMatching(/No space left/)
  })

  const target = (): SyncTarget => ({
    remote: new LocalRemote(join(top, `remote-${Math.random().toString(36).slice(2)}`)),
    hostWork: host,
    remoteWork: vm,
    manifestFile: join(top, 'local', 'base.json'),
    excludes: [],
    deltaListing: true
  })
  const first = await pull(target(), ROOTS)
  expect(first.listed).toBe('all')
  expect(tree(host)).toEqual(tree(vm))

  // The step changes a file in place (its page is there already) and removes another.
  writeFileSync(join(vm, 'ws', 'src', 'a.txt'), 'again\n')
  rmSync(join(vm, '_temp', '_runner_file_commands', 'set_output_1'))
  const second = await pull(target(), ROOTS)
  expect(second.listed).toBe('all')
  expect(second.why).toMatch(/^the listing of the changes failed: .*No space left/)
  expect(readFileSync(join(host, 'ws', 'src', 'a.txt'), 'utf8')).toBe('again\n')
  expect(tree(host)).toEqual(tree(vm))
  expect(readdirSync(disk).sort()).toEqual(['fill', 'w'])
})

test("a pool member's lease on a full disk (its lock file not made yet): exit 3 naming the lock and the likely cause, not the shell's own end", async () => {
  top ||= mkdtempSync(join(tmpdir(), 'rch-full-disk-'))
  const work = join(top, 'member')
  fullDisk(work, ['pool'])
  fill(work)
  const remote = new LocalRemote(join(top, 'remote-lease'))
  const script = acquireScript(work, {
    token: 'a'.repeat(32),
    since: 1000,
    host: 'cccccccccccccccc',
    queue: false,
    ttlSeconds: 60,
    owner: 'a'.repeat(16),
    jobId: '1'.repeat(16)
  })
  await expect(ask(remote, script, { label: 'lease' })).rejects.toThrow(
    /exit code 3.*cannot write .*\/pool\/lock as \S+ \(a full disk\?\)/s
  )
})
