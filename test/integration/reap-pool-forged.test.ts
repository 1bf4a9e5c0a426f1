/**
 * A hostile job on a pool member (root there) leaves behind a lease record saying "held", with an
 * expiry within the TTL bound that a daemon of its own would keep pushing ahead. The record is the
 * member's word: reap must not believe it past the age at which no job can still hold the member
 * (reuse.maxVmAgeMinutes + fleet.reap.maxJobMinutes, the age from EC2's LaunchTime), or the member
 * and its reservation stay for ever. Through dist/index.js against moto and a loopback sshd member.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { EC2Client } from '@aws-sdk/client-ec2'
import { createPool, poolHookConfig, poolKeyPair, type Pool } from '../helpers/pool-env'
import { describeInstance } from '../helpers/fake-instance'
import { ec2Client } from '../helpers/ec2-env'
import { expectOk, rowOf, runReap } from './reap-helpers'

jest.setTimeout(300_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
const MIN = 60_000

let dir: string
let key: string
let pub: string
let ec2: EC2Client
let pool: Pool | null = null
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-reap-forged-'))
  ;({ key, pub } = poolKeyPair(dir))
  ec2 = ec2Client()
})
afterAll(async () => {
  await pool?.close()
  ec2?.destroy()
  fs.rmSync(dir, { recursive: true, force: true })
})

test('a lease record the member keeps saying "held" does not keep it past maxVmAge + maxJobMinutes', async () => {
  pool = await createPool({
    name: `reap-forged-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
    size: 1,
    clientPublicKey: pub,
    extraTags: (m) => ({ 'rch-user': m.user })
  })
  const [m] = await pool.waitReady(1, 90_000)
  // What root on the member writes: a lease held by a token no runner has, expiring within the TTL bound.
  const folder = path.join(m.workRoot, 'pool')
  fs.mkdirSync(folder, { recursive: true, mode: 0o700 })
  const uid = Number(execFileSync('id', ['-u', m.user]).toString().trim())
  const gid = Number(execFileSync('id', ['-g', m.user]).toString().trim())
  fs.chownSync(folder, uid, gid)
  const hex = (n: number): string => randomBytes(n).toString('hex')
  const forged = `held ${hex(16)} ${Math.floor(Date.now() / 1000) + 3000} ${hex(8)} ${hex(8)}\n`
  fs.writeFileSync(path.join(folder, 'lease'), forged, { mode: 0o644 })

  const cfg = path.join(dir, 'reap.json')
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      ...poolHookConfig(pool, key, { lease: { ttlSeconds: 15 }, reuse: { maxVmAgeMinutes: 10 }, scaleOut: { enabled: false } }),
      fleet: { ledger: { kind: 'local', path: path.join(dir, 'ledger') }, reap: { maxJobMinutes: 60, graceMinutes: 2 } }
    })
  )
  const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'))
  const at = (ms: number) => ({ env: { RCH_LEDGER_NOW_MS: String(Date.now() + ms) } })

  // Positive control: within the bound the forged record is read and believed (a job could hold it).
  const p0 = await runReap(cfg, tmp, at(65 * MIN))
  expectOk(p0)
  expect(rowOf(p0, m.id)).toMatchObject({ action: 'left alone', why: expect.stringMatching(/^lease live \(\d+ s left\)$/) })

  const p1 = await runReap(cfg, tmp, at(71 * MIN))
  expectOk(p1)
  expect(rowOf(p1, m.id)).toMatchObject({
    action: 'marked',
    why: expect.stringMatching(/past reuse\.maxVmAgeMinutes 10 \+ fleet\.reap\.maxJobMinutes 60: no job can hold it/)
  })
  const p2 = await runReap(cfg, tmp, at(74 * MIN))
  expectOk(p2)
  expect(rowOf(p2, m.id)).toMatchObject({ action: 'removed', why: expect.stringMatching(/replaced through the group$/) })
  expect(['shutting-down', 'terminated']).toContain((await describeInstance(ec2, m.id)).State?.Name)
  // The record was still the forged one: the member was replaced in spite of it, not after it lapsed.
  expect(fs.existsSync(path.join(folder, 'lease')) ? fs.readFileSync(path.join(folder, 'lease'), 'utf8') : forged).toBe(forged)
})
