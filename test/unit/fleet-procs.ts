// Runs fleet-worker.ts as separate node processes (bundled once with esbuild): the race tests need
// real concurrency between processes, as between runner hosts, not promises in one event loop.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { buildSync } from 'esbuild'
import type { FleetConfig } from '../../src/config'
import type { ReserveRequest, ReserveResult } from '../../src/fleet/ledger'

let bundle: string | null = null
function workerBundle(): string {
  if (bundle) return bundle
  const out = join(mkdtempSync(join(tmpdir(), 'fleet-worker-')), 'worker.js')
  buildSync({
    entryPoints: [join(__dirname, 'fleet-worker.ts')],
    bundle: true,
    platform: 'node',
    target: 'node20',
    outfile: out,
    logLevel: 'error'
  })
  return (bundle = out)
}

/** Removes the bundle's folder (call in afterAll): each test file builds its own. */
export function removeWorkerBundle(): void {
  if (bundle) rmSync(dirname(bundle), { recursive: true, force: true })
  bundle = null
}

export interface HostRun {
  fleet: FleetConfig
  localRoot: string
  count: number
  req: ReserveRequest
  now: number
}

/** Starts one process per run, all reserving at the same moment; resolves with every result of every process. */
export async function raceHosts(runs: HostRun[], startInMs = 1500): Promise<ReserveResult[][]> {
  const file = workerBundle()
  const startAt = Date.now() + startInMs
  return Promise.all(
    runs.map(
      (run) =>
        new Promise<ReserveResult[]>((resolve, reject) => {
          execFile(process.execPath, [file, JSON.stringify({ ...run, startAt })], { timeout: 120_000 }, (err, stdout, stderr) => {
            if (err) return reject(new Error(`fleet worker failed: ${err.message}\n${stderr}`))
            resolve(JSON.parse(stdout) as ReserveResult[])
          })
        })
    )
  )
}
