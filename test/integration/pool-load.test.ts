/**
 * A pool of 10 under 50 concurrent jobs from 2 runner hosts (each host its own runner names and its
 * own local folder, TMPDIR), through dist/index.js against moto + loopback members
 * (test/helpers/pool-env.ts): every job (prepare_job → a step → cleanup_job) succeeds, and no member
 * ever had two holders — checked from each member's own lease history, and against what each job
 * says it held. The wait each job had is reported (median, max).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { createPool, poolHookConfig, poolKeyPair, type Pool } from '../helpers/pool-env'
import { FakeRunner } from '../helpers/fake-runner'
import { dumpRun, hookCall, hookPrepare } from '../helpers/fake-instance'
import { testImages } from '../helpers/testenv'

jest.setTimeout(900_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

/** Holders of one member over time, from its history; a grant while another holds it is a double lease. */
export function doubleLeases(history: string): string[] {
  const out: string[] = []
  let holder: string | null = null
  for (const line of history.split('\n').filter(Boolean)) {
    const [, what, token, , lapsed] = line.split(' ')
    if (what === 'grant') {
      if (holder && lapsed !== '1') out.push(`${token} granted while ${holder} held it`)
      holder = token
    } else if (what === 'release') {
      if (holder !== token) out.push(`${token} released a lease held by ${holder ?? 'nobody'}`)
      holder = null
    } else if (what === 'takeover') holder = token
  }
  return out
}

test('the double-lease check finds one (positive control)', () => {
  expect(doubleLeases('1 grant a none 0\n2 release a free\n3 grant b free 0\n4 release b free\n')).toEqual([])
  expect(doubleLeases('1 grant a none 0\n2 grant b held 0\n3 release a free\n')).toEqual([
    'b granted while a held it',
    'a released a lease held by b'
  ])
  expect(doubleLeases('1 grant a none 0\n2 grant b held 1\n')).toEqual([])
})

let dir: string
let p: Pool | null = null
afterAll(async () => {
  await p?.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

test('50 jobs from 2 runner hosts on a pool of 10: all succeed, never two holders on one member', async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-load-'))
  const { key, pub } = poolKeyPair(dir)
  p = await createPool({
    name: `pool-load-${process.pid.toString(36)}`,
    size: 10,
    clientPublicKey: pub,
    extraTags: (m) => ({ 'rch-user': m.user })
  })
  const pool = p
  await pool.waitReady(10, 120_000)
  const hosts = ['a', 'b'].map((h) => ({ name: h, tmp: fs.mkdtempSync(path.join(dir, `host-${h}-`)) }))

  const job = async (i: number): Promise<{ code: number; wait: number; member: string; token: string; out: string }> => {
    const host = hosts[i % 2]
    const r = new FakeRunner({
      name: `load-${host.name}-${i}`,
      config: {
        ...poolHookConfig(pool, key, { lease: { ttlSeconds: 60 }, scaleOut: { enabled: false }, waitTimeoutSeconds: 600 }),
        // Each simulated runner host keeps its own fleet ledger, as two real hosts would.
        fleet: { ledger: { kind: 'local', path: path.join(host.tmp, 'ledger') } }
      }
    })
    const env = { TMPDIR: host.tmp }
    const prep = await hookPrepare(r, { container: r.jobContainer(testImages.tiny), services: [] }, { env, limitMs: 700_000 })
    if (prep.code !== 0) return { code: prep.code ?? -1, wait: NaN, member: '', token: '', out: dumpRun(prep) }
    const wait = Number(/leased \S+ \(\S+ of pool \S+\) after ([0-9.]+) s/.exec(prep.stdout + prep.stderr)?.[1] ?? NaN)
    const host1 = (r.state as { host: { instanceId: string; token: string } }).host
    const s = await hookCall(r, 'run_script_step', r.scriptStep('echo step-ran\n').args, { env })
    const c = await hookCall(r, 'cleanup_job', {}, { env })
    const code = s.code === 0 && s.stdout.includes('step-ran') ? (c.code ?? -1) : (s.code ?? -1) || 99
    return { code, wait, member: host1.instanceId, token: host1.token, out: code ? dumpRun(s) + dumpRun(c) : '' }
  }
  const t0 = Date.now()
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => job(i)))
  const wall = Date.now() - t0

  expect(results.filter((r) => r.code !== 0).map((r) => r.out)).toEqual([])
  // Each member's own history: never a second holder, and exactly the jobs that say they held it.
  const members = pool.members()
  const held = new Map<string, string[]>()
  for (const m of members) {
    // A member no job happened to ask has no log yet (the lease script writes it on its first note).
    const log = path.join(m.workRoot, 'pool', 'log')
    const history = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''
    expect({ member: m.id, problems: doubleLeases(history) }).toEqual({ member: m.id, problems: [] })
    held.set(
      m.id,
      history.split('\n').flatMap((l) => (l.split(' ')[1] === 'grant' ? [l.split(' ')[2]] : []))
    )
  }
  for (const r of results) expect(held.get(r.member)).toContain(r.token)
  expect([...held.values()].flat()).toHaveLength(50)
  const waits = results.map((r) => r.wait).sort((a, b) => a - b)
  const median = (waits[24] + waits[25]) / 2
  process.stdout.write(
    `pool load: 50 jobs on 10 members in ${(wall / 1000).toFixed(1)} s; wait for a member median ${median.toFixed(1)} s, max ${waits[49].toFixed(1)} s; jobs per member ${[...held.values()].map((t) => t.length).join(' ')}\n`
  )
  expect(Number.isFinite(median)).toBe(true)
})
