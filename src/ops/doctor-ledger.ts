// doctor's check of the fleet ledger, read-only. Local: the folder is private to the runner user
// and writable, and the ledger in it reads (without its lock, as every reader; a first-format
// ledger is converted under it); a folder not made yet is left to the first launch. DynamoDB: the
// table exists with the key the ledger writes (`pk`, a string) and two items read (the counter,
// and whether report can read through the time index).
import type { FleetConfig } from '../config'
import { formatError } from '../errors'
import { systemLedgerClock } from '../fleet/ledger'
import { localLedgerDir, LocalLedger } from '../fleet/local-ledger'
import { privateFolderState } from './doctor-folder'
import { hookLocalRoot } from '../paths'
import { LEDGER_KEY, OPEN_ATTR, OPEN_INDEX, TIME_INDEX } from '../fleet/ledger-table'
import { AWS_HTTP } from '../providers/ec2-api'
import type { CheckResult } from './output'

const CHECK = 'fleet ledger'
type DynamoConfig = Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>

export async function ledgerChecks(fleet: FleetConfig, localRoot = hookLocalRoot()): Promise<CheckResult[]> {
  return [fleet.ledger.kind === 'local' ? await localCheck(fleet, localRoot) : await dynamoCheck(fleet.ledger)]
}

async function localCheck(fleet: FleetConfig, localRoot: string): Promise<CheckResult> {
  const dir = localLedgerDir(fleet, localRoot)
  const result = (status: 'pass' | 'fail', detail: string, fix?: string): CheckResult => ({
    check: CHECK,
    target: 'runner host',
    status,
    detail: `local ${dir}: ${detail}`,
    ...(fix ? { fix } : {})
  })
  const fix = 'set fleet.ledger.path to a folder only the runner user can open (mode 0700), or correct this one'
  try {
    const folder = privateFolderState(dir, 'set fleet.ledger.path', 'the first launch')
    if (!folder.ok) return result('fail', folder.detail, fix)
    if (!folder.made) return result('pass', folder.detail)
    const ledger = new LocalLedger(fleet, dir, systemLedgerClock)
    const open = await ledger.unsettled()
    return result('pass', `private and writable; ${open.length} reservation${open.length === 1 ? '' : 's'} open`)
  } catch (e) {
    return result('fail', formatError(e), fix)
  }
}

async function dynamoCheck(cfg: DynamoConfig): Promise<CheckResult> {
  const target = `DynamoDB ${cfg.table} (${cfg.region})`
  const fail = (detail: string, fix: string): CheckResult => ({ check: CHECK, target, status: 'fail', detail, fix })
  const { loadSdk, INSTANCES, TIME_INDEX_META } = await import('../fleet/dynamodb-ledger')
  const sdk = loadSdk()
  const client = new sdk.DynamoDBClient({ region: cfg.region, endpoint: cfg.endpoint, maxAttempts: 2, requestHandler: AWS_HTTP })
  const denied = (action: string): string =>
    `allow dynamodb:${action} on the table in the runner host's IAM policy (terraform/modules/runner-iam: ledger_table_arns)`
  try {
    let table
    try {
      table = (await client.send(new sdk.DescribeTableCommand({ TableName: cfg.table }))).Table
    } catch (e) {
      const name = (e as { name?: string }).name ?? ''
      if (name === 'ResourceNotFoundException')
        return fail(
          `no table ${cfg.table} in ${cfg.region}`,
          'create it (terraform/modules/ledger), or correct fleet.ledger.table and region'
        )
      if (/AccessDenied|UnrecognizedClient|InvalidSignature|CredentialsProvider|ExpiredToken/.test(name))
        return fail(`DescribeTable: ${name}: ${formatError(e)}`, denied('DescribeTable'))
      return fail(`DescribeTable: ${name || 'error'}: ${formatError(e)}`, 'see the error; the hook reaches the table the same way')
    }
    const keys = (table?.KeySchema ?? []).map((k) => `${k.AttributeName}/${k.KeyType}`)
    const pkType = table?.AttributeDefinitions?.find((a) => a.AttributeName === LEDGER_KEY)?.AttributeType
    if (keys.join() !== `${LEDGER_KEY}/HASH` || pkType !== 'S')
      return fail(
        `key schema ${keys.join(', ') || '(none)'}${pkType ? ` (pk ${pkType})` : ''}: the ledger needs a string partition key pk and no sort key`,
        'make a table with partition key pk (string) only (terraform/modules/ledger) and name it in fleet.ledger.table'
      )
    const index = table?.GlobalSecondaryIndexes?.find((g) => g.IndexName === OPEN_INDEX)
    const indexKeys = (index?.KeySchema ?? []).map((k) => `${k.AttributeName}/${k.KeyType}`).join()
    const openType = table?.AttributeDefinitions?.find((a) => a.AttributeName === OPEN_ATTR)?.AttributeType
    if (indexKeys !== `${OPEN_ATTR}/HASH` || openType !== 'S' || index?.Projection?.ProjectionType !== 'ALL')
      return fail(
        index
          ? `index ${OPEN_INDEX}: key ${indexKeys || '(none)'}, projection ${index.Projection?.ProjectionType ?? '(none)'}: the ledger needs key ${OPEN_ATTR} (string) and projection ALL`
          : `no index ${OPEN_INDEX}: the ledger lists open reservations from it`,
        `add the global secondary index ${OPEN_INDEX} (partition key ${OPEN_ATTR}, string; projection ALL) — terraform/modules/ledger has it`
      )
    if (table?.TableStatus && table.TableStatus !== 'ACTIVE')
      return fail(`table status ${table.TableStatus}`, 'wait until the table is ACTIVE, then run doctor again')
    let open: number
    let indexed: boolean
    try {
      const get = (pk: string) =>
        client.send(new sdk.GetItemCommand({ TableName: cfg.table, Key: { [LEDGER_KEY]: { S: pk } }, ConsistentRead: true }))
      const [counter, meta] = await Promise.all([get(INSTANCES), get(TIME_INDEX_META)])
      open = Number(counter.Item?.n?.N ?? 0)
      indexed = meta.Item !== undefined
    } catch (e) {
      return fail(`GetItem: ${(e as { name?: string }).name ?? 'error'}: ${formatError(e)}`, denied('GetItem'))
    }
    // Not a failure: the hooks need neither; without them every report reads (and pays for) the whole table.
    const time = table?.GlobalSecondaryIndexes?.some((g) => g.IndexName === TIME_INDEX)
      ? indexed
        ? `, ${TIME_INDEX} in use`
        : `, ${TIME_INDEX} not in use yet: report reads the whole table until \`remote-hooks index-ledger\` has run once`
      : `; no index ${TIME_INDEX}: report reads the whole table (terraform/modules/ledger adds it; then run \`remote-hooks index-ledger\` once)`
    return {
      check: CHECK,
      target,
      status: 'pass',
      detail: `table ACTIVE, key pk (string), index ${OPEN_INDEX}${time}; ${open} instance${open === 1 ? '' : 's'} reserved now`
    }
  } finally {
    client.destroy()
  }
}
