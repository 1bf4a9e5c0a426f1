/**
 * Runs `reap` as an operator would (`node dist/index.js reap --config FILE --json`) with the EC2
 * test environment's dummy credentials and a TMPDIR of the test's own (reap's local marks and the
 * default local ledger live under it), and reads its JSON answer.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { EC2_HOOK_ENV } from '../helpers/fake-instance'
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
