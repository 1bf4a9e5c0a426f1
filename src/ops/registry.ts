// Every operator command, each loaded only when it runs. A new command is its file plus one line
// here and its name in names.ts (the type below makes the two lists agree).
import type { OpCommand } from './command'
import type { OpName } from './names'

export const REGISTRY: Record<OpName, () => Promise<OpCommand>> = {
  'check-config': async () => (await import('./check-config')).checkConfigCommand,
  doctor: async () => (await import('./doctor')).doctorCommand,
  'index-ledger': async () => (await import('./index-ledger')).indexLedgerCommand,
  reap: async () => (await import('./reap')).reapCommand,
  report: async () => (await import('./report')).reportCommand
}
