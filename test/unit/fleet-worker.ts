// A "runner host" for the ledger race tests: opens the configured ledger, waits for a common start
// time, fires `count` reserves at once and prints their results as one JSON line.
// Bundled by fleet-procs.ts and run as a separate node process.
import type { FleetConfig } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import type { ReserveRequest, ReserveResult } from '../../src/fleet/ledger'
import { newLocalLedger } from '../../src/fleet/local-ledger'

interface Job {
  fleet: FleetConfig
  localRoot: string
  count: number
  req: ReserveRequest
  now: number
  startAt: number
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job
  const clock = { now: () => job.now }
  const ledger =
    job.fleet.ledger.kind === 'local'
      ? newLocalLedger(job.fleet, job.localRoot, clock)
      : new DynamoLedger(job.fleet, job.fleet.ledger, {
          clock,
          client: { credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }
        })
  await new Promise((r) => setTimeout(r, Math.max(0, job.startAt - Date.now())))
  const results: ReserveResult[] = await Promise.all(Array.from({ length: job.count }, () => ledger.reserve(job.req, job.now)))
  ledger.close()
  process.stdout.write(JSON.stringify(results) + '\n')
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
