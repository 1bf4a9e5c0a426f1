// reap over static hosts when the fleet ledger cannot be read (a damaged ledger.json): the slots
// are reaped all the same, the ledger is one failed row, and the pass ends with the rows (exit 1
// in the command), not with an uncaught error (exit 70) that also dropped the pass's marks.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { reap } from '../../src/ops/reap'
import { loadConfig, type Config } from '../../src/config'
import { systemConfigIo } from '../../src/config'
import { cleanupTempDirs, staticConfigFile, tempDir } from './_helpers'

// reap's marks go under the hook's local folder: a folder of this test's own.
const tmpBefore = process.env.TMPDIR
beforeAll(() => (process.env.TMPDIR = tempDir()))
afterAll(() => {
  if (tmpBefore === undefined) delete process.env.TMPDIR
  else process.env.TMPDIR = tmpBefore
  cleanupTempDirs()
})

/** Static hosts whose one host refuses connections at once (nothing listens on loopback port 1). */
const configWith = (ledgerDir: string): Config => {
  const c = loadConfig(
    { REMOTE_HOOKS_CONFIG: staticConfigFile(tempDir(), { fleet: { ledger: { kind: 'local', path: ledgerDir } } }) },
    systemConfigIo
  )
  const p = c.provider as Extract<Config['provider'], { kind: 'static' }>
  return { ...c, provider: { ...p, hosts: p.hosts.map((h) => ({ ...h, port: 1 })) } }
}
const unreachable = { kind: 'slot', what: '127.0.0.1:1', action: 'failed', why: expect.stringMatching(/^unreachable: .*ECONNREFUSED/) }

const opts = () => ({ dryRun: false, clock: { now: () => Date.now() }, signal: new AbortController().signal })

test('a damaged ledger.json is a failed row; the pass still returns its rows', async () => {
  const ledgerDir = join(tempDir(), 'ledger')
  mkdirSync(ledgerDir, { mode: 0o700 })
  writeFileSync(join(ledgerDir, 'ledger.json'), '{"version": 2, "open": ', { mode: 0o600 })
  const { rows } = await reap(configWith(ledgerDir), opts())
  expect(rows).toEqual([
    unreachable,
    { kind: 'reservation', what: 'ledger', action: 'failed', why: expect.stringMatching(/^fleet ledger: .*ledger\.json is not a ledger/) }
  ])
})

test('control: a readable ledger with no open reservation gives no row', async () => {
  const ledgerDir = join(tempDir(), 'ledger')
  mkdirSync(ledgerDir, { mode: 0o700 })
  expect((await reap(configWith(ledgerDir), opts())).rows).toEqual([unreachable])
})
