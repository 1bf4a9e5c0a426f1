// The loader in dist/index.js: its V8 code cache lives in a private folder of the runner user, is
// never taken from a folder others can write, and old versions' caches do not pile up.
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HOOK } from '../helpers/fake-runner'

const uid = process.getuid!()
let tmp: string
let bundle: string

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'rch-loader-'))
  const alone = join(tmp, 'alone')
  mkdirSync(alone)
  bundle = join(alone, 'index.js')
  copyFileSync(HOOK, bundle)
})
afterEach(() => rmSync(tmp, { recursive: true, force: true }))

const run = (): string => execFileSync(process.execPath, [bundle, '--version'], { env: { PATH: process.env.PATH, TMPDIR: tmp }, encoding: 'utf8' })
const cacheDir = (): string => join(tmp, `rch-${uid}`)

test('a copy alone in an empty folder runs and writes its code cache 0600 in a 0700 folder', () => {
  expect(run()).toMatch(/^remote-container-hooks \d+\.\d+\.\d+\n$/)
  const files = readdirSync(cacheDir()).filter((f) => f.startsWith('code-'))
  expect(files.some((f) => /^code-[0-9a-f]{16}-core\.bin$/.test(f))).toBe(true)
  expect(statSync(cacheDir()).mode & 0o777).toBe(0o700)
  for (const f of files) expect(statSync(join(cacheDir(), f)).mode & 0o777).toBe(0o600)
  // and the second start uses it
  expect(run()).toMatch(/^remote-container-hooks/)
})

test('caches of other versions older than a day are removed when a new version writes its own; newer ones and other files stay', () => {
  mkdirSync(cacheDir(), { mode: 0o700 })
  const old = join(cacheDir(), 'code-0123456789abcdef-core.bin')
  const recent = join(cacheDir(), 'code-fedcba9876543210-core.bin')
  const other = join(cacheDir(), 'owner-1234')
  for (const f of [old, recent, other]) writeFileSync(f, 'x')
  const twoDaysAgo = new Date(Date.now() - 2 * 86400_000)
  utimesSync(old, twoDaysAgo, twoDaysAgo)
  utimesSync(other, twoDaysAgo, twoDaysAgo)
  run()
  expect([existsSync(old), existsSync(recent), existsSync(other)]).toEqual([false, true, true])
})

test('a cache folder others can write is not used', () => {
  mkdirSync(cacheDir())
  chmodSync(cacheDir(), 0o777)
  expect(run()).toMatch(/^remote-container-hooks/)
  expect(readdirSync(cacheDir()).filter((f) => f.startsWith('code-'))).toEqual([])
})
