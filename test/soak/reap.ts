// One reap cycle as an operator runs it: `node dist/index.js reap --json` with the soak's config
// for each provider kind it used (a runner host's config names one provider), pass 1 marks, then
// after fleet.reap.graceMinutes pass 2 removes.
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EC2_HOOK_ENV } from '../helpers/fake-instance'
import { HOOK, type FakeRunner } from '../helpers/fake-runner'

export interface ReapPass {
  config: string
  code: number
  /** the rows of --json, as printed */
  rows: Record<string, unknown>[]
  /** stdout and stderr when the output was not the JSON expected */
  raw?: string
}

/** A runner's config file, reused as the operator's: reap needs the same provider and fleet. */
export function reapConfig(runner: FakeRunner, dir: string, kind: string): string {
  const file = join(dir, `reap-${kind}.json`)
  writeFileSync(file, JSON.stringify(JSON.parse(readFileSync(runner.configFile, 'utf8')), null, 2))
  return file
}

export async function reapPass(config: string, tmp: string): Promise<ReapPass> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    TMPDIR: tmp,
    AWS_ACCESS_KEY_ID: EC2_HOOK_ENV.AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: EC2_HOOK_ENV.AWS_SECRET_ACCESS_KEY,
    AWS_EC2_METADATA_DISABLED: 'true'
  }
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const c = execFile(
      process.execPath,
      [HOOK, 'reap', '--config', config, '--json'],
      { env, maxBuffer: 64 << 20, timeout: 300_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr })
    )
    c.stdin?.end()
  })
  try {
    const parsed = JSON.parse(r.stdout) as unknown
    const rows = Array.isArray(parsed) ? parsed : ((parsed as { rows?: unknown[] }).rows ?? [])
    return { config, code: r.code, rows: rows as Record<string, unknown>[] }
  } catch {
    return { config, code: r.code, rows: [], raw: `${r.stdout}\n${r.stderr}`.trim().slice(0, 2000) }
  }
}
