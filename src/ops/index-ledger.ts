// `index-ledger`: puts the history of a DynamoDB fleet ledger into its time index, once, so that
// `report` reads only its range (a Query per month) instead of the whole table (a Scan, billed for
// every item the table ever held). Tables made by this version's hooks need it too: the meta item
// it writes is what tells `report` that no item is missing from the index.
import type { DynamoLedger } from '../fleet/dynamodb-ledger'
import { loadConfig, systemConfigIo, type Config } from '../config'
import { ConfigError } from '../errors'
import { openLedger } from '../fleet/open-ledger'
import { hookLocalRoot } from '../paths'
import type { OpArgs, OpCommand, OpIo } from './command'
import { opFile } from './config-file'
import { EX_CONFIG } from './check-config'
import { json } from './output'
import { TIME_INDEX } from '../fleet/ledger-table'

export const indexLedgerCommand: OpCommand = {
  name: 'index-ledger',
  summary: "puts a DynamoDB fleet ledger's history into its time index, so report reads only its range",
  maxPositional: 1,
  help: `usage: remote-hooks index-ledger [FILE | --config FILE] [--json]

For fleet.ledger kind dynamodb: gives every reservation and job record in the table the time
index's attributes (from its reservation or start time), then marks the table as indexed. From
then on \`report\` reads only the months of its range through the index ${TIME_INDEX}, instead of
the whole table. Run it once after the table has the index (terraform/modules/ledger adds it) and
every runner host runs this version; running it again is harmless. It reads the whole table once,
and writes only the items that lack the attributes. With --json, one JSON document:
{"ledger": "dynamodb", "table", "items", "indexed"} (items read, items given the attributes), or
{"ledger": "local", "items": 0, "indexed": 0} (nothing to do).

Exit status: 0 done (or nothing to do: a local ledger), 78 bad configuration or a table without
the index, 70 the table could not be read or written.
`,
  run: (args, io) => runIndexLedger(args, io)
}

export async function runIndexLedger(args: OpArgs, io: OpIo, open = openLedger): Promise<number> {
  let config: Config
  try {
    config = loadConfig({ REMOTE_HOOKS_CONFIG: opFile(args.file ?? io.env.REMOTE_HOOKS_CONFIG) }, systemConfigIo)
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    for (const issue of e.issues) io.stderr.write(`index-ledger: invalid configuration: ${issue}\n`)
    return EX_CONFIG
  }
  const cfg = config.fleet.ledger
  if (cfg.kind !== 'dynamodb') {
    io.stdout.write(
      args.json
        ? json({ ledger: 'local', items: 0, indexed: 0 })
        : 'index-ledger: nothing to do: fleet.ledger is local (report reads its files by range already)\n'
    )
    return 0
  }
  const ledger = (await open(config.fleet, { localRoot: hookLocalRoot() })) as DynamoLedger
  try {
    const status = await ledger.timeIndexStatus()
    if (status !== 'ACTIVE') {
      io.stderr.write(
        `index-ledger: DynamoDB ${cfg.table} (${cfg.region}) ${status ? `has its index ${TIME_INDEX} ${status}: wait until it is ACTIVE` : `has no index ${TIME_INDEX}: apply terraform/modules/ledger of this version (it adds it)`}, then run this again\n`
      )
      return EX_CONFIG
    }
    let shown = 0
    const r = await ledger.indexTime((n) => {
      if (n - shown >= 100_000) io.stderr.write(`index-ledger: ${(shown = n)} items read\n`)
    })
    io.stdout.write(
      args.json
        ? json({ ledger: 'dynamodb', table: cfg.table, items: r.items, indexed: r.indexed })
        : `index-ledger: DynamoDB ${cfg.table}: ${r.items} reservations and job records, ${r.indexed} given the index's attributes; report reads through ${TIME_INDEX} from now on\n`
    )
    return 0
  } finally {
    ledger.close()
  }
}
