// reap's marks for untagged things (a private file per ledger on this runner host), and its command
// line: the configuration from --config or the first argument, and the flags it takes.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { parseArgs } from '../../src/ops/command'
import { fileMarks, WATCH } from '../../src/ops/reap-marks'
import { marksName, reapCommand } from '../../src/ops/reap'
import { ConfigSchema } from '../../src/config'

afterAll(cleanupTempDirs)

test('marks persist between passes in a 0600 file; marks no pass still uses are dropped; a dry run changes no mark', () => {
  const dir = join(tempDir('rch-reap-marks-'), 'reap')
  const a = fileMarks(dir, 'l1', true)
  a.set('reservation:x', '2026-12-01T00:00:00.000Z')
  a.save(new Set(['reservation:x']))
  expect(existsSync(dir)).toBe(false)

  const b = fileMarks(dir, 'l1', false)
  b.set('reservation:x', '2026-12-01T00:00:00.000Z')
  b.set('reservation:y', '2026-12-01T00:01:00.000Z')
  b.save(new Set(['reservation:x', 'reservation:y']))
  expect(statSync(join(dir, 'marks-l1.json')).mode & 0o777).toBe(0o600)
  const c = fileMarks(dir, 'l1', false)
  expect(c.get('reservation:x')).toBe('2026-12-01T00:00:00.000Z')
  c.save(new Set(['reservation:y']))
  expect(JSON.parse(readFileSync(join(dir, 'marks-l1.json'), 'utf8'))).toEqual({ 'reservation:y': '2026-12-01T00:01:00.000Z' })
  // Another ledger's marks are another file.
  expect(fileMarks(dir, 'l2', false).get('reservation:y')).toBeUndefined()
  // A damaged file starts the marks again (reap only ever waits longer).
  writeFileSync(join(dir, 'marks-l1.json'), '{not json')
  expect(fileMarks(dir, 'l1', false).get('reservation:y')).toBeUndefined()
  // Inherited names are not marks.
  expect(fileMarks(dir, 'l1', false).get('constructor')).toBeUndefined()
})

test('marks in a folder other users can write are refused before they are read (control: the same marks in a 0700 folder are read)', () => {
  const dir = join(tempDir('rch-reap-marks-'), 'reap')
  mkdirSync(dir, { mode: 0o700 })
  writeFileSync(join(dir, 'marks-l1.json'), JSON.stringify({ 'reservation:x': '1970-01-01T00:00:00.000Z' }))
  expect(fileMarks(dir, 'l1', true).get('reservation:x')).toBe('1970-01-01T00:00:00.000Z')
  chmodSync(dir, 0o777)
  expect(() => fileMarks(dir, 'l1', true)).toThrow(/private folder .* is open to other users/)
})

test('the command line: --config FILE or FILE, --dry-run, --json; anything else is a usage error', () => {
  expect(parseArgs(reapCommand, ['--config', '/etc/rch.yaml', '--dry-run', '--json'])).toEqual({
    positional: [],
    file: '/etc/rch.yaml',
    json: true,
    options: { 'dry-run': true }
  })
  expect(parseArgs(reapCommand, ['/etc/rch.yaml'])).toMatchObject({ positional: ['/etc/rch.yaml'], file: '/etc/rch.yaml' })
  expect(parseArgs(reapCommand, ['--dry-run=yes'])).toEqual({ error: 'reap: --dry-run takes no value' })
  expect(parseArgs(reapCommand, ['--force'])).toEqual({ error: 'reap: unknown option --force' })
  expect(parseArgs(reapCommand, ['a', 'b'])).toEqual({ error: 'reap: unexpected argument "b"' })
  expect(reapCommand.help).toMatch(/^usage: remote-hooks reap \[FILE \| --config FILE\] \[--dry-run\] \[--json\]/)
})

test('a dry run keeps its watch of heartbeats (what it saw), and leaves every mark as it was', () => {
  const dir = join(tempDir('rch-reap-marks-'), 'reap')
  const real = fileMarks(dir, 'l1', false)
  real.set('reservation:x', '2026-12-01T00:00:00.000Z')
  real.set(`${WATCH}r1`, '1000@2000')
  real.save(new Set(['reservation:x', `${WATCH}r1`]))
  const dry = fileMarks(dir, 'l1', true)
  dry.set('reservation:y', '2026-12-01T00:05:00.000Z')
  dry.delete('reservation:x')
  dry.set(`${WATCH}r1`, '1500@3000')
  dry.set(`${WATCH}r2`, '1000@3000')
  dry.save(new Set(['reservation:y', `${WATCH}r1`, `${WATCH}r2`]))
  expect(JSON.parse(readFileSync(join(dir, 'marks-l1.json'), 'utf8'))).toEqual({
    'reservation:x': '2026-12-01T00:00:00.000Z',
    [`${WATCH}r1`]: '1500@3000',
    [`${WATCH}r2`]: '1000@3000'
  })
})

test("the marks' file is named by the ledger and what the pass looks at, never by a setting: a changed default or ttl keeps the marks", () => {
  const pool = {
    provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'ci-pool', identityFile: '/k/pool' },
    remote: { workRoot: '~/rch' }
  }
  const name = (c: object): string => marksName(ConfigSchema.parse(c))
  const base = name(pool)
  expect(name({ ...pool, provider: { ...pool.provider, lease: { ttlSeconds: 300 }, reuse: { maxJobsPerVm: 20 } } })).toBe(base)
  expect(name({ ...pool, timeouts: { connectSeconds: 5 } })).toBe(base)
  // Controls: another group, region or ledger is another file.
  expect(name({ ...pool, provider: { ...pool.provider, autoScalingGroup: 'other' } })).not.toBe(base)
  expect(name({ ...pool, provider: { ...pool.provider, region: 'us-east-1' } })).not.toBe(base)
  expect(name({ ...pool, fleet: { ledger: { kind: 'local', path: '/var/lib/rch/ledger' } } })).not.toBe(base)
  const hosts = (...hs: string[]) => ({
    provider: { kind: 'static', hosts: hs.map((host) => ({ host, user: 'u', identityFile: '/k/id', knownHostsFile: '/k/kh' })) },
    remote: { workRoot: '/srv/rch' }
  })
  expect(name(hosts('10.0.0.1', '10.0.0.2'))).toBe(name(hosts('10.0.0.2', '10.0.0.1')))
  expect(name(hosts('10.0.0.1'))).not.toBe(name(hosts('10.0.0.1', '10.0.0.2')))
})
