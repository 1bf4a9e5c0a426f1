// A runner whose _work folds names (ext4 with casefold, vfat, CIFS, a case-insensitive ZFS): `a/D`
// finds `a/d`. The kernel here has no such file system of its own (no CONFIG_UNICODE), so a real
// FUSE file system that folds case and Unicode form (test/helpers/foldfs.py, python3-fusepy) is
// mounted as root over a backing folder. Names the VM sends are distinct on Linux, but not there.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkNamesDistinct, SafeTree } from '../../src/sync/safe-fs'
import { FakeRunner } from '../helpers/fake-runner'
import { errorLines, staticProvider, testVm } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import { settlesWithin, waitUntil } from '../helpers/wait'

let top: string
let mnt: string
const mounts: { mnt: string; stop: () => Promise<void> }[] = []

const mountedAt = (dir: string): boolean => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${dir} `)

/** Mounts test/helpers/foldfs.py at top/NAME over top/NAME-backing. */
async function mountFold(name: string, ...extra: string[]): Promise<string> {
  const dir = join(top, name)
  mkdirSync(`${dir}-backing`)
  mkdirSync(dir)
  let log = ''
  const fuse: ChildProcess = spawn('/usr/bin/python3', [join(__dirname, '../helpers/foldfs.py'), `${dir}-backing`, dir, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  fuse.stdout!.on('data', (c) => (log += c))
  fuse.stderr!.on('data', (c) => (log += c))
  const exited = new Promise<void>((r) => fuse.once('exit', () => r()))
  const stop = async (): Promise<void> => {
    if (mountedAt(dir)) execFileSync('umount', [dir])
    if (!(await settlesWithin(exited, 5000))) fuse.kill('SIGKILL')
  }
  mounts.push({ mnt: dir, stop })
  if (!(await waitUntil(() => mountedAt(dir) || fuse.exitCode !== null, 10_000)) || !mountedAt(dir))
    throw new Error(`the folding file system did not mount: ${log}`)
  return dir
}

beforeAll(async () => {
  top = mkdtempSync(join(tmpdir(), 'rch-folding-'))
  mnt = await mountFold('mnt')
})

afterAll(async () => {
  for (const m of mounts.splice(0)) await m.stop()
  rmSync(top, { recursive: true, force: true })
})

/** A fresh `_work` inside the folding mount. */
function work(): string {
  const w = mkdtempSync(join(mnt, 'w-'))
  mkdirSync(join(w, '_temp'))
  mkdirSync(join(w, 'repo/repo'), { recursive: true })
  return w
}

describe('the mount folds names (what the tests below stand on)', () => {
  test('a folder made as a/d is found as a/D, and a name in composed form in its decomposed one', () => {
    const w = work()
    mkdirSync(join(w, 'a/d'), { recursive: true })
    mkdirSync(join(w, 'caf\u00e9'))
    expect(existsSync(join(w, 'a/D'))).toBe(true)
    expect(existsSync(join(w, 'cafe\u0301'))).toBe(true)
  })
})

describe('SafeTree on a folding file system', () => {
  // The VM's order of things: distinct names on Linux, one folder here. R is the workspace.
  const R = 'repo/repo'

  test('positive control: the same steps with plain writes put a file outside the runner root', () => {
    const w = work()
    mkdirSync(join(w, R, 'a/d'), { recursive: true })
    rmSync(join(w, R, 'a/D'), { recursive: true }) // removes a/d
    symlinkSync('../../../_temp', join(w, R, 'a/D'))
    mkdirSync(join(w, R, 'a/d/l')) // through the link: _temp/l
    expect(existsSync(join(w, '_temp/l'))).toBe(true)
    rmSync(join(w, R, 'a/d/L'), { recursive: true })
    symlinkSync('../../..', join(w, R, 'a/d/L')) // _temp/L → the folder above the mount
    writeFileSync(join(w, R, 'a/d/l/escaped-control'), 'x')
    expect(existsSync(join(top, 'escaped-control'))).toBe(true)
    rmSync(join(top, 'escaped-control'))
  })

  test('a folder removed under another spelling is forgotten under every one: no write goes through what took its place', () => {
    const w = work()
    const fs = new SafeTree(w)
    fs.makeDir(`${R}/a/d`)
    // Lexically both links stay inside the root; the removal of a/D is the removal of a/d.
    expect(fs.makeSymlink(`${R}/a/D`, '../../../_temp')).toBe(true)
    let refused: unknown = null
    try {
      fs.makeDir(`${R}/a/d/l`)
      expect(fs.makeSymlink(`${R}/a/d/L`, '../../..')).toBe(true)
      const f = fs.openFile(`${R}/a/d/l/escaped`, 0o644, 1_700_000_000)
      f.write(Buffer.from('x'))
      f.finish()
    } catch (e) {
      refused = e
    }
    expect(existsSync(join(top, 'escaped'))).toBe(false)
    expect(existsSync(join(w, '_temp/l'))).toBe(false)
    expect(String(refused)).toMatch(/"repo\/repo\/a\/d" is a symlink on the runner host/)
  })
})

describe('a runner whose _work folds names', () => {
  test('the pull refuses to write there; a case-sensitive folder passes the same check (control)', () => {
    expect(() => checkNamesDistinct(work())).toThrow(/case-sensitive file system/)
    const plain = mkdtempSync(join(top, 'plain-'))
    expect(() => checkNamesDistinct(plain)).not.toThrow()
  })

  test('also where each spelling of a name has its own inode number (CIFS with noserverino)', async () => {
    const other = await mountFold('name-inodes', 'name-inodes')
    mkdirSync(join(other, 'd'))
    expect(existsSync(join(other, 'D'))).toBe(true) // it folds
    expect(statSync(join(other, 'D')).ino).not.toBe(statSync(join(other, 'd')).ino) // under another inode
    expect(() => checkNamesDistinct(other)).toThrow(/case-sensitive file system/)
  })

  let recorder: Server
  let connections = 0
  afterAll(() => recorder?.close())

  test('prepare_job fails at once with one error and connects to nothing', async () => {
    recorder = createServer((s) => {
      connections++
      s.destroy()
    })
    await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', () => r()))
    const port = (recorder.address() as { port: number }).port
    const runner = new FakeRunner({ parent: mnt, config: { provider: staticProvider(testVm(), { port }, { acquireTimeoutSeconds: 5 }) } })
    try {
      const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
      expect(r.code).not.toBe(0)
      expect(errorLines(r)).toEqual([
        expect.stringMatching(/^::error::.*_work is on a file system that takes names differing in case.*case-sensitive file system\)$/)
      ])
      expect(connections).toBe(0)
    } finally {
      runner.dispose()
    }
  }, 60_000)
})
