/**
 * Runs `reap` as an operator would (`node dist/index.js reap --config FILE --json`) with the EC2
 * test environment's dummy credentials and a TMPDIR of the test's own (reap's local marks and the
 * default local ledger live under it), and reads its JSON answer. For reap against a pool, the
 * set-up its test files share (usePoolReapTest).
 */
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EC2Client } from '@aws-sdk/client-ec2'
import { ec2Client } from '../helpers/ec2-env'
import { EC2_HOOK_ENV } from '../helpers/fake-instance'
import { poolHookConfig, poolKeyPair, startTestPool, type Pool, type PoolMember } from '../helpers/pool-env'
import { repoRoot } from '../helpers/testenv'

export interface ReapRowOut {
  kind: string
  what: string
  action: string
  why: string
}

export interface ReapOut {
  code: number | null
  stdout: string
  stderr: string
  json: { ok: boolean; dryRun: boolean; at: string; provider: string; rows: ReapRowOut[] } | null
}

export function runReap(
  configFile: string,
  tmp: string,
  opts: { dryRun?: boolean; human?: boolean; env?: Record<string, string> } = {}
): Promise<ReapOut> {
  const args = [
    join(repoRoot, 'dist', 'index.js'),
    'reap',
    '--config',
    configFile,
    ...(opts.dryRun ? ['--dry-run'] : []),
    ...(opts.human ? [] : ['--json'])
  ]
  const child = spawn(process.execPath, args, {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      ...EC2_HOOK_ENV,
      TMPDIR: tmp,
      ...(opts.env ?? {})
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const limit = setTimeout(() => child.kill('SIGTERM'), 120_000)
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(limit)
      let json: ReapOut['json']
      try {
        json = opts.human ? null : (JSON.parse(stdout) as ReapOut['json'])
      } catch {
        json = null
      }
      resolve({ code, stdout, stderr, json })
    })
  )
}

/** The row about `what` (exactly one expected). */
export function rowOf(out: ReapOut, what: string): ReapRowOut {
  const rows = (out.json?.rows ?? []).filter((r) => r.what === what)
  if (rows.length !== 1) throw new Error(`expected one row for ${what}, got ${rows.length}:\n${out.stdout}\n${out.stderr}`)
  return rows[0]
}

/** Exit 0, or fail with what reap printed. */
export function expectOk(out: ReapOut): void {
  if (out.code !== 0) throw new Error(`reap exited ${out.code}\n--- stdout\n${out.stdout}\n--- stderr\n${out.stderr}`)
}

/** runReap's options for a reap run as if the ledger's clock were `ms` ahead of now. */
export function ledgerAhead(ms: number): { env: Record<string, string> } {
  return { env: { RCH_LEDGER_NOW_MS: String(Date.now() + ms) } }
}

/** What a test file of reap against a pool works with; the fields are set once its beforeAll has run. */
export interface PoolReapTest {
  /** The file's private folder, removed after all its tests. */
  dir: string
  /** The runner's private key for the pool's members (poolHookConfig's identityFile). */
  key: string
  ec2: EC2Client
  /** The local ledger's folder, as reapConfig names it. */
  ledgerDir: string
  /** A pool of `size` members (members' users as the tag rch-user), once all are ready; closed after all tests. */
  startPool(size: number): Promise<{ pool: Pool; members: PoolMember[] }>
  /**
   * Writes reap's configuration: the pool's hook configuration with `provider` settings, and the
   * local ledger in ledgerDir with `reap` settings. Returns its path and a fresh TMPDIR for runReap.
   */
  reapConfig(pool: Pool, provider: Record<string, unknown>, reap?: Record<string, unknown>): { cfg: string; tmp: string }
}

/** Registers the file's beforeAll/afterAll: a private folder with a key pair and an EC2 client; closes the pool it starts. */
export function usePoolReapTest(prefix: string): PoolReapTest {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  const pools: Pool[] = []
  const t: PoolReapTest = {
    dir: '',
    key: '',
    ec2: undefined as unknown as EC2Client,
    ledgerDir: '',
    startPool: (size) => startTestPool(pools, prefix, size, pub, {}, 90_000),
    reapConfig(pool, provider, reap) {
      const cfg = join(t.dir, 'reap.json')
      writeFileSync(
        cfg,
        JSON.stringify({
          ...poolHookConfig(pool, t.key, provider),
          fleet: { ledger: { kind: 'local', path: t.ledgerDir }, ...(reap ? { reap } : {}) }
        })
      )
      return { cfg, tmp: mkdtempSync(join(t.dir, 'tmp-')) }
    }
  }
  let pub = ''
  beforeAll(() => {
    t.dir = mkdtempSync(join(tmpdir(), `rch-${prefix}-`))
    t.ledgerDir = join(t.dir, 'ledger')
    ;({ key: t.key, pub } = poolKeyPair(t.dir))
    t.ec2 = ec2Client()
  })
  afterAll(async () => {
    for (const p of pools) await p.close()
    t.ec2?.destroy()
    if (t.dir) rmSync(t.dir, { recursive: true, force: true })
  })
  return t
}

/**
 * Writes a lease record on a member as a live job's agent keeps it (or as root there forges one):
 * held by a token no runner has, expiring within the TTL bound. Written as the member's own scripts
 * write it, under the lease folder's lock and by a rename, so that a script running at the same time
 * (a renewal) either sees it or is done before it. Returns the record.
 */
export function writeHeldLease(m: { workRoot: string; user: string }, expiry = String(Math.floor(Date.now() / 1000) + 3000)): string {
  const folder = join(m.workRoot, 'pool')
  mkdirSync(folder, { recursive: true, mode: 0o700 })
  const uid = Number(execFileSync('id', ['-u', m.user]).toString().trim())
  const gid = Number(execFileSync('id', ['-g', m.user]).toString().trim())
  chownSync(folder, uid, gid)
  // The lock file stays the member user's (its scripts append to it).
  const lock = join(folder, 'lock')
  writeFileSync(lock, '', { flag: 'a', mode: 0o600 })
  chownSync(lock, uid, gid)
  const hex = (n: number): string => randomBytes(n).toString('hex')
  const record = `held ${hex(16)} ${expiry} ${hex(8)} ${hex(8)}\n`
  execFileSync(
    'flock',
    ['-w', '20', lock, 'sh', '-c', 'cat > "$1.new" && chmod 644 "$1.new" && mv -f "$1.new" "$1"', 'sh', join(folder, 'lease')],
    {
      input: record
    }
  )
  return record
}
