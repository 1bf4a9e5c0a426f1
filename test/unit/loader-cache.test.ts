// The loader in dist/index.js runs the lazy libraries from a V8 code cache in $TMPDIR/rch-<uid>: code
// this process runs. The folder must be ours alone and so must its place: a folder on the way that
// another user may rename entries in (writable by all without the sticky bit) lets them put a folder
// of theirs in place of ours after the loader's check, and every later read of a cache file would
// run their code. The same rule as src/private-fs.ts (checkAncestors), with a real build.
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { buildBundle } from './_bundle'

const uid = process.getuid!()
let bundle: string
let spy: string
let otherV8: string

afterAll(cleanupTempDirs)

beforeAll(() => {
  bundle = buildBundle()
  // Notes on stderr each library the loader compiles, and whether with a code cache.
  spy = join(tempDir(), 'spy.js')
  writeFileSync(
    spy,
    "const vm = require('vm'), S = vm.Script\nvm.Script = class extends S { constructor(src, o) { super(src, o); process.stderr.write('COMPILED ' + o.filename + ' cache=' + !!o.cachedData + '\\n') } }\n"
  )
  // As another node's V8 would name itself (the V8 itself is this one: it would accept the cache).
  otherV8 = join(tempDir(), 'other-v8.js')
  writeFileSync(otherV8, "Object.defineProperty(process, 'versions', { value: { ...process.versions, v8: '1.2.3.4-other' } })\n")
}, 180_000)

/** One hook command with TMPDIR=`tmp`: it loads the rest of the hook (rch-rest) from the file, then stops at the missing config. */
function compiled(tmp: string, preload: string[] = []): string[] {
  const work = tempDir()
  const r = spawnSync(process.execPath, [...preload.flatMap((p) => ['-r', p]), '-r', spy, bundle], {
    input: JSON.stringify({ command: 'cleanup_job', responseFile: '/dev/null', args: {}, state: null }),
    env: { PATH: process.env.PATH, TMPDIR: tmp, RUNNER_TEMP: join(work, '_temp') },
    encoding: 'utf8'
  })
  expect(r.stdout).toContain('REMOTE_HOOKS_CONFIG') // it got as far as reading the config
  return r.stderr.split('\n').filter((l) => l.startsWith('COMPILED bundled:rch-rest'))
}

const cacheFiles = (tmp: string): string[] =>
  existsSync(join(tmp, `rch-${uid}`)) ? readdirSync(join(tmp, `rch-${uid}`)).filter((f) => f.startsWith('code-')) : []

/** `$parent/tmp` (0700, ours) as TMPDIR, with `$parent` of the given mode. */
function tmpIn(parentMode: number): string {
  const parent = join(tempDir(), 'shared')
  mkdirSync(join(parent, 'tmp'), { recursive: true, mode: 0o700 })
  chmodSync(parent, parentMode)
  return join(parent, 'tmp')
}

test('a TMPDIR in a folder all users can write without the sticky bit: the code cache is neither written nor read', () => {
  const tmp = tmpIn(0o777)
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(cacheFiles(tmp)).toEqual([])
})

test('control: the same folder with the sticky bit (as /tmp): the second command runs from the cache the first wrote', () => {
  const tmp = tmpIn(0o1777)
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(cacheFiles(tmp).length).toBeGreaterThan(0)
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=true'])
})

test('a TMPDIR that is a symlink into such a folder (its own place is safe) is refused the same way', () => {
  const target = tmpIn(0o777)
  const link = join(tempDir(), 'tmp-link')
  symlinkSync(target, link)
  expect(compiled(link)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(compiled(link)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(cacheFiles(target)).toEqual([])
})

test("another V8 (a system node running reap beside the runner's node) keeps a cache of its own: neither rewrites the other's", () => {
  const tmp = tmpIn(0o1777)
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=false'])
  const mine = cacheFiles(tmp)
  // On the previous loader the other V8 was handed this V8's file (and, rejecting it, rewrote it).
  expect(compiled(tmp, [otherV8])).toEqual(['COMPILED bundled:rch-rest cache=false'])
  expect(cacheFiles(tmp).length).toBeGreaterThan(mine.length)
  expect(compiled(tmp)).toEqual(['COMPILED bundled:rch-rest cache=true'])
  expect(compiled(tmp, [otherV8])).toEqual(['COMPILED bundled:rch-rest cache=true'])
})
