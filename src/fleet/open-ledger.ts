// The ledger the configuration names.
import type { FleetConfig } from '../config'
import { systemLedgerClock, type Ledger, type LedgerClock } from './ledger'
import { newLocalLedger } from './local-ledger'

export interface OpenLedgerOptions {
  /** The hook's private local root: the local ledger's default folder is `ledger` under it. */
  localRoot: string
  clock?: LedgerClock
}

export async function openLedger(fleet: FleetConfig, opts: OpenLedgerOptions): Promise<Ledger> {
  const clock = opts.clock ?? systemLedgerClock
  if (fleet.ledger.kind === 'local') return newLocalLedger(fleet, opts.localRoot, clock)
  const { DynamoLedger } = await import('./dynamodb-ledger')
  return new DynamoLedger(fleet, fleet.ledger, { clock })
}
