// The ledger in a DynamoDB table shared by every runner host. A reservation is ONE
// TransactWriteItems: an increment of each counter item (open instances, open vCPUs, the
// repository's open instances, the budget day's micro-dollars), each conditioned on the room left
// under its cap, plus the Put of the reservation item. DynamoDB applies all or none, serialised
// against every other transaction on those items, so no number of hosts can take one more.
//
// Table: see ledger-table.ts (key `pk`, a sparse index of open reservations, a time index). Items:
// `counter#instances`, `counter#vcpus`, `repo#<owner/name>` (attribute n), `day#<YYYY-MM-DD>`
// (attribute usd, micro-dollars), `res#<id>` (one reservation), `job#<id>` (one job record) and
// `meta#time-index` (since when every reservation and job record is in the time index).
import { createHash, randomUUID } from 'node:crypto'
import type * as Ddb from '@aws-sdk/client-dynamodb'
import type { AttributeValue, TransactWriteItem } from '@aws-sdk/client-dynamodb'
import type { FleetConfig } from '../config'
import { errorNameOf, httpStatusOf, isNoAnswer } from '../aws-error'
import { HookError } from '../errors'
import { retry, type Clock } from '../retry'
import {
  NotAttachable,
  BEAT_STEP_BACK_MS,
  byReservation,
  inTimeRange,
  type JobRecord,
  type JobUpdate,
  type Ledger,
  type LedgerClock,
  type LedgerRecord,
  type ReserveRequest,
  type ReserveResult,
  type SettleOptions
} from './ledger'
import { exceeded, priceRequest, refusalLine, type Limit, type Usage } from './limits'
import { attachTime, settlement, toMicro } from './money'
import { blankJob, checkJobUpdate } from './job-record'
import { checkTimings } from './check-timings'
import { AT_ATTR, LEDGER_KEY, OPEN_ATTR, OPEN_INDEX, SPAN_ATTR, spanOf, spansOf, TIME_INDEX } from './ledger-table'

type DdbSdk = typeof Ddb
type DynamoConfig = Extract<FleetConfig['ledger'], { kind: 'dynamodb' }>

let sdk: DdbSdk | null = null
/** Loaded on first use: only launches and operator commands need it, never a step. */
export function loadSdk(): DdbSdk {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sdk ??= require('@aws-sdk/client-dynamodb') as DdbSdk
  return sdk
}

/** The counter of open instances (attribute n): doctor reads it too. */
export const INSTANCES = 'counter#instances'
const VCPUS = 'counter#vcpus'
const repoKey = (repository: string): string => `repo#${repository}`
const dayKey = (day: string): string => `day#${day}`
const resKey = (id: string): string => `res#${id}`
const jobKey = (id: string): string => `job#${id}`
/** Written by `index-ledger` once every item it found carries the time index's attributes. */
export const TIME_INDEX_META = 'meta#time-index'
/** A job's phase times are top-level attributes `ms_<phase>`: an update sets each without reading the others. */
const PHASE_ATTR = 'ms_'
const JOB_FIELDS = [
  'repository',
  'workflow',
  'runId',
  'job',
  'runner',
  'runnerHost',
  'provider',
  'pool',
  'machine',
  'reservationId',
  'lost'
] as const
const JOB_TIMES = ['startedAt', 'endedAt'] as const

const S = (s: string): AttributeValue => ({ S: s })
const N = (n: number): AttributeValue => ({ N: String(n) })
const key = (pk: string): Record<string, AttributeValue> => ({ [LEDGER_KEY]: S(pk) })

const reasons = (e: unknown): string[] =>
  ((e as { CancellationReasons?: { Code?: string }[] })?.CancellationReasons ?? []).map((r) => r?.Code ?? 'None')

const THROTTLED = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
  'ServiceUnavailable',
  'TransactionInProgressException'
])

/** Worth another attempt: a transaction cancelled by a conflict or throttling (never by a failed condition), throttling, server trouble, network. */
export function isRetryableDynamoError(e: unknown): boolean {
  const name = errorNameOf(e)
  if (name === 'TransactionCanceledException') {
    const rs = reasons(e)
    return (
      !rs.includes('ConditionalCheckFailed') &&
      rs.some((r) => r === 'TransactionConflict' || r === 'ThrottlingError' || r === 'ProvisionedThroughputExceeded')
    )
  }
  if (THROTTLED.has(name)) return true
  const status = httpStatusOf(e)
  return (status !== undefined && status >= 500) || isNoAnswer(e)
}

/** The reservation fields that never change, kept as one JSON attribute. */
type Fixed = Omit<
  LedgerRecord,
  'instanceId' | 'attachedAt' | 'settledAt' | 'endedAt' | 'billedSeconds' | 'actualMicro' | 'heartbeatAt' | 'timings'
>

/** A reservation item as a record; one whose fixed fields cannot be read is named (its key), not a TypeError. */
export function toRecord(item: Record<string, AttributeValue>): LedgerRecord {
  const num = (k: string): number | undefined => (item[k]?.N === undefined ? undefined : Number(item[k].N))
  let fixed: unknown
  try {
    fixed = JSON.parse(item.fixed?.S ?? '')
  } catch {
    fixed = null
  }
  if (!fixed || typeof fixed !== 'object' || Array.isArray(fixed))
    throw new HookError(
      `fleet ledger: item ${JSON.stringify(item[LEDGER_KEY]?.S ?? '?')} has no readable "fixed" attribute (a JSON object of the reservation's fields): repair or delete that item`
    )
  const r: LedgerRecord = { ...(fixed as Fixed), timings: {} }
  for (const [k, v] of Object.entries(item.timings?.M ?? {})) r.timings[k] = Number(v.N)
  if (item.instanceId?.S) r.instanceId = item.instanceId.S
  for (const k of ['attachedAt', 'settledAt', 'endedAt', 'billedSeconds', 'actualMicro', 'heartbeatAt'] as const) {
    const v = num(k)
    if (v !== undefined) r[k] = v
  }
  return r
}

function toJob(item: Record<string, AttributeValue>): JobRecord {
  const j = blankJob(item[LEDGER_KEY].S!.slice(jobKey('').length), Number(item.startedAt?.N ?? 0))
  for (const k of JOB_FIELDS) if (item[k]?.S !== undefined) j[k] = item[k].S
  if (item.endedAt?.N !== undefined) j.endedAt = Number(item.endedAt.N)
  for (const [k, v] of Object.entries(item))
    if (k.startsWith(PHASE_ATTR) && v.N !== undefined) j.timings[k.slice(PHASE_ATTR.length)] = Number(v.N)
  return j
}

export interface DynamoLedgerOptions {
  clock: LedgerClock
  /** For the retries' pauses (tests pass a fake). */
  retryClock?: Clock
  /** Extra client settings (tests: credentials, timeouts). */
  client?: Partial<Ddb.DynamoDBClientConfig>
  /** One request gives up after this (default 10 s), all attempts of one call after `callMs` (default 60 s). */
  attemptMs?: number
  callMs?: number
}

/** A request the ledger stopped waiting for: retried like a network error, and named when the call gives up. */
class LedgerTimeout extends Error {
  override name = 'LedgerTimeout'
}

export class DynamoLedger implements Ledger {
  private readonly sdk = loadSdk()
  private readonly client: Ddb.DynamoDBClient
  private readonly table: string

  constructor(
    private readonly fleet: FleetConfig,
    cfg: DynamoConfig,
    private readonly opts: DynamoLedgerOptions
  ) {
    this.table = cfg.table
    // Retries are ours (retry.ts with the classifier above), so the SDK makes one attempt per call.
    this.client = new this.sdk.DynamoDBClient({ region: cfg.region, endpoint: cfg.endpoint, maxAttempts: 1, ...opts.client })
  }

  /** One call, retried on throttling, conflicts and server or network trouble; a fresh command each attempt. */
  // Every request has a time limit: a ledger endpoint that accepts a connection and never answers
  // would otherwise hold prepare_job (and reap) without end.
  private send<T>(make: () => object): Promise<T> {
    const attemptMs = this.opts.attemptMs ?? 10_000
    return retry(
      async () => {
        const limit = AbortSignal.timeout(attemptMs)
        try {
          return (await this.client.send(make() as never, { abortSignal: limit })) as T
        } catch (e) {
          if (limit.aborted) throw new LedgerTimeout(`DynamoDB did not answer within ${attemptMs / 1000} s`)
          throw e
        }
      },
      {
        attempts: 8,
        minDelayMs: 50,
        maxDelayMs: 2000,
        deadlineMs: this.opts.callMs ?? 60_000,
        retryable: (e) => e instanceof LedgerTimeout || isRetryableDynamoError(e),
        clock: this.opts.retryClock
      }
    )
  }

  private async usage(repository: string, day: string): Promise<Usage> {
    const get = async (pk: string, attr: string): Promise<number> => {
      const out = await this.send<Ddb.GetItemCommandOutput>(
        () => new this.sdk.GetItemCommand({ TableName: this.table, Key: key(pk), ConsistentRead: true })
      )
      return Number(out.Item?.[attr]?.N ?? 0)
    }
    const [instances, vcpus, repositoryInstances, dayMicro] = await Promise.all([
      get(INSTANCES, 'n'),
      get(VCPUS, 'n'),
      get(repoKey(repository), 'n'),
      get(dayKey(day), 'usd')
    ])
    return { instances, vcpus, repositoryInstances, dayMicro }
  }

  private async refuse(limit: Limit, req: ReserveRequest, day: string, cost: number): Promise<ReserveResult> {
    return { ok: false, line: refusalLine(this.fleet, limit, req, cost, await this.usage(req.repository, day)) }
  }

  async reserve(req: ReserveRequest, now = this.opts.clock.now()): Promise<ReserveResult> {
    const priced = priceRequest(this.fleet, req, now)
    if ('line' in priced) return { ok: false, line: priced.line }
    const { caps, budget } = this.fleet
    const cost = priced.reservedMicro
    // A request that fits under no use at all is refused without a write.
    const alone = exceeded(this.fleet, req, cost, { instances: 0, vcpus: 0, repositoryInstances: 0, dayMicro: 0 })
    if (alone) return this.refuse(alone, req, priced.day, cost)

    const id = randomUUID()
    const fixed: Fixed = { ...req, id, reservedAt: now, ...priced }
    const counter = (pk: string, attr: string, add: number, room: number | undefined): TransactWriteItem => ({
      Update: {
        TableName: this.table,
        Key: key(pk),
        UpdateExpression: 'ADD #a :add',
        ExpressionAttributeNames: { '#a': attr },
        ExpressionAttributeValues: { ':add': N(add), ...(room === undefined ? {} : { ':room': N(room) }) },
        ...(room === undefined ? {} : { ConditionExpression: 'attribute_not_exists(#a) OR #a <= :room' })
      }
    })
    const limits: Limit[] = ['instances', 'repository', 'vcpus', 'budget']
    const items: TransactWriteItem[] = [
      counter(INSTANCES, 'n', 1, caps.instances === undefined ? undefined : caps.instances - 1),
      counter(repoKey(req.repository), 'n', 1, caps.perRepository.instances === undefined ? undefined : caps.perRepository.instances - 1),
      counter(VCPUS, 'n', req.vcpus, caps.vcpus === undefined ? undefined : caps.vcpus - req.vcpus),
      counter(dayKey(priced.day), 'usd', cost, budget ? toMicro(budget.perDayUsd) - cost : undefined),
      {
        Put: {
          TableName: this.table,
          Item: {
            ...key(resKey(id)),
            fixed: S(JSON.stringify(fixed)),
            reservedAt: N(now),
            timings: { M: {} },
            [OPEN_ATTR]: S('1'),
            [SPAN_ATTR]: S(spanOf('res', now)),
            [AT_ATTR]: N(now)
          },
          ConditionExpression: 'attribute_not_exists(#k)',
          ExpressionAttributeNames: { '#k': LEDGER_KEY }
        }
      }
    ]
    try {
      await this.send(() => new this.sdk.TransactWriteItemsCommand({ TransactItems: items, ClientRequestToken: id }))
      return { ok: true, id }
    } catch (e) {
      if (errorNameOf(e) !== 'TransactionCanceledException') throw e
      const rs = reasons(e)
      // The reservation item exists: an earlier attempt of this very call went through (its answer
      // was lost), whatever the counters, which now include it, say.
      if (rs[limits.length] === 'ConditionalCheckFailed') return { ok: true, id }
      const failed = rs.indexOf('ConditionalCheckFailed')
      if (failed < 0) throw e
      return this.refuse(limits[failed], req, priced.day, cost)
    }
  }

  private async get(id: string): Promise<LedgerRecord> {
    const out = await this.send<Ddb.GetItemCommandOutput>(
      () => new this.sdk.GetItemCommand({ TableName: this.table, Key: key(resKey(id)), ConsistentRead: true })
    )
    if (!out.Item) throw new HookError(`fleet ledger: no reservation ${id}`)
    return toRecord(out.Item)
  }

  private async update(
    id: string,
    expr: string,
    names: Record<string, string>,
    values: Record<string, AttributeValue>,
    cond = ''
  ): Promise<boolean> {
    try {
      await this.send(
        () =>
          new this.sdk.UpdateItemCommand({
            TableName: this.table,
            Key: key(resKey(id)),
            UpdateExpression: expr,
            ConditionExpression: `attribute_exists(#k)${cond}`,
            ExpressionAttributeNames: { '#k': LEDGER_KEY, ...names },
            ExpressionAttributeValues: values
          })
      )
      return true
    } catch (e) {
      if (errorNameOf(e) === 'ConditionalCheckFailedException') return false
      throw e
    }
  }

  async attach(id: string, instanceId: string, at = this.opts.clock.now()): Promise<void> {
    attachTime(id, at)
    // A settled one keeps its instance, as in the local ledger (reap's move of a pool reservation may
    // race the hook that settles it).
    const done = await this.update(
      id,
      'SET instanceId = :i, attachedAt = :t',
      {},
      { ':i': S(instanceId), ':t': N(at) },
      ' AND (attribute_not_exists(instanceId) OR instanceId <> :i) AND attribute_not_exists(settledAt)'
    )
    if (!done && (await this.get(id)).instanceId !== instanceId) throw new NotAttachable(id)
  }

  async settle(id: string, opts: SettleOptions): Promise<LedgerRecord> {
    const r = await this.get(id)
    if (r.settledAt !== undefined) return r
    const { seconds, actual } = settlement(r, opts)
    const settledAt = this.opts.clock.now()
    const add = (pk: string, attr: string, n: number): TransactWriteItem => ({
      Update: {
        TableName: this.table,
        Key: key(pk),
        UpdateExpression: 'ADD #a :add',
        ExpressionAttributeNames: { '#a': attr },
        ExpressionAttributeValues: { ':add': N(n) }
      }
    })
    const items: TransactWriteItem[] = [
      {
        Update: {
          TableName: this.table,
          Key: key(resKey(id)),
          UpdateExpression: 'SET settledAt = :s, endedAt = :e, billedSeconds = :b, actualMicro = :a REMOVE #o',
          // Unlaunched only while nothing is attached (an attach between the read above and this).
          ConditionExpression: `attribute_exists(#k) AND attribute_not_exists(settledAt)${opts.launched === false ? ' AND attribute_not_exists(attachedAt)' : ''}`,
          ExpressionAttributeNames: { '#k': LEDGER_KEY, '#o': OPEN_ATTR },
          ExpressionAttributeValues: { ':s': N(settledAt), ':e': N(opts.endedAt), ':b': N(seconds), ':a': N(actual) }
        }
      },
      add(INSTANCES, 'n', -1),
      add(repoKey(r.repository), 'n', -1),
      add(VCPUS, 'n', -r.vcpus),
      add(dayKey(r.day), 'usd', actual - r.reservedMicro)
    ]
    // One token per settlement (its items hold its times): retries of this call stay idempotent,
    // while another settlement at once (reap's) fails its condition, not as a token reused with
    // other parameters (IdempotentParameterMismatch), and reads the one that stands.
    const token = createHash('sha256').update(JSON.stringify(items)).digest('hex').slice(0, 36)
    try {
      await this.send(() => new this.sdk.TransactWriteItemsCommand({ TransactItems: items, ClientRequestToken: token }))
    } catch (e) {
      // Settled meanwhile (by reap or a second call): that settlement stands. Or attached meanwhile,
      // for an unlaunched settlement: refused, as settlement() refuses it.
      if (!(errorNameOf(e) === 'TransactionCanceledException' && reasons(e)[0] === 'ConditionalCheckFailed')) throw e
      const now = await this.get(id)
      if (now.settledAt === undefined) settlement(now, opts)
      return now
    }
    return { ...r, settledAt, endedAt: opts.endedAt, billedSeconds: seconds, actualMicro: actual }
  }

  async recordTimings(id: string, timings: Record<string, number>): Promise<void> {
    checkTimings(timings)
    const entries = Object.entries(timings)
    if (entries.length === 0) return
    const names: Record<string, string> = { '#t': 'timings' }
    const values: Record<string, AttributeValue> = {}
    const sets = entries.map(([phase, ms], i) => {
      names[`#p${i}`] = phase
      values[`:v${i}`] = N(ms)
      return `#t.#p${i} = :v${i}`
    })
    if (!(await this.update(id, `SET ${sets.join(', ')}`, names, values))) throw new HookError(`fleet ledger: no reservation ${id}`)
  }

  async beat(id: string, at = this.opts.clock.now()): Promise<void> {
    // Not found, settled, or a later beat already there (not from before a clock step back): nothing to do.
    await this.update(
      id,
      'SET heartbeatAt = :t',
      {},
      { ':t': N(at), ':back': N(at + BEAT_STEP_BACK_MS) },
      ' AND attribute_not_exists(settledAt) AND (attribute_not_exists(heartbeatAt) OR heartbeatAt < :t OR heartbeatAt > :back)'
    )
  }

  async recordJob(u: JobUpdate): Promise<void> {
    checkJobUpdate(u)
    const names: Record<string, string> = {}
    const values: Record<string, AttributeValue> = {}
    const sets: string[] = []
    /** `once`: an attribute that keeps its first value. */
    const set = (attr: string, v: AttributeValue, once = false): void => {
      const i = sets.length
      names[`#a${i}`] = attr
      values[`:v${i}`] = v
      sets.push(once ? `#a${i} = if_not_exists(#a${i}, :v${i})` : `#a${i} = :v${i}`)
    }
    // The first cause of a lost machine stays (see mergeJob).
    for (const k of JOB_FIELDS) if (u[k] !== undefined) set(k, S(u[k]), k === 'lost')
    for (const k of JOB_TIMES) if (u[k] !== undefined) set(k, N(u[k]))
    // The time index follows the start: set with it, or kept with the first one.
    const start = u.startedAt ?? this.opts.clock.now()
    set(SPAN_ATTR, S(spanOf('job', start)), u.startedAt === undefined)
    set(AT_ATTR, N(start), u.startedAt === undefined)
    if (u.startedAt === undefined) {
      values[':now'] = N(start)
      sets.push('startedAt = if_not_exists(startedAt, :now)')
    }
    for (const [phase, ms] of Object.entries(u.timings ?? {})) set(`${PHASE_ATTR}${phase}`, N(ms))
    await this.send(
      () =>
        new this.sdk.UpdateItemCommand({
          TableName: this.table,
          Key: key(jobKey(u.jobId)),
          UpdateExpression: `SET ${sets.join(', ')}`,
          ...(Object.keys(names).length ? { ExpressionAttributeNames: names } : {}),
          ExpressionAttributeValues: values
        })
    )
  }

  /** Every page of a Query or Scan `make` builds from a page's start key, each handed to `onPage` in turn. */
  private async pages(
    make: (start: Record<string, AttributeValue> | undefined) => object,
    onPage: (page: { Items?: Record<string, AttributeValue>[]; ScannedCount?: number }) => void | Promise<void>
  ): Promise<void> {
    let start: Record<string, AttributeValue> | undefined
    do {
      const page = await this.send<Ddb.QueryCommandOutput | Ddb.ScanCommandOutput>(() => make(start))
      await onPage(page)
      start = page.LastEvaluatedKey
    } while (start)
  }

  private async scan<T>(
    prefix: string,
    read: (item: Record<string, AttributeValue>) => T,
    filter: string,
    values: Record<string, AttributeValue>
  ): Promise<T[]> {
    const out: T[] = []
    this.scans++
    await this.pages(
      (start) =>
        new this.sdk.ScanCommand({
          TableName: this.table,
          ConsistentRead: true,
          FilterExpression: `begins_with(#k, :prefix)${filter}`,
          ExpressionAttributeNames: { '#k': LEDGER_KEY },
          ExpressionAttributeValues: { ':prefix': S(prefix), ...values },
          ExclusiveStartKey: start
        }),
      (page) => {
        for (const item of page.Items ?? []) out.push(read(item))
        this.scanned += page.ScannedCount ?? 0
      }
    )
    return out
  }

  /** From the sparse index of open reservations (eventually consistent: one settled a moment ago may still be listed; settle is idempotent). */
  async unsettled(): Promise<LedgerRecord[]> {
    const out: LedgerRecord[] = []
    await this.pages(
      (start) =>
        new this.sdk.QueryCommand({
          TableName: this.table,
          IndexName: OPEN_INDEX,
          KeyConditionExpression: '#o = :one',
          ExpressionAttributeNames: { '#o': OPEN_ATTR },
          ExpressionAttributeValues: { ':one': S('1') },
          ExclusiveStartKey: start
        }),
      (page) => {
        for (const item of page.Items ?? []) if (item.settledAt === undefined) out.push(toRecord(item))
      }
    )
    return byReservation(out)
  }

  async records(range: { since?: number; until?: number } = {}): Promise<LedgerRecord[]> {
    const from = await this.indexed(range)
    const got = from ? await this.timeQuery('res', from, toRecord) : await this.scan(resKey(''), toRecord, ...between('reservedAt', range))
    return byReservation(from ? got.filter((r) => inTimeRange(r.reservedAt, range)) : got)
  }

  async jobs(range: { since?: number; until?: number } = {}): Promise<JobRecord[]> {
    const from = await this.indexed(range)
    const got = from ? await this.timeQuery('job', from, toJob) : await this.scan(jobKey(''), toJob, ...between('startedAt', range))
    const jobs = from ? got.filter((j) => inTimeRange(j.startedAt, range)) : got
    return jobs.sort((a, b) => a.startedAt - b.startedAt || a.jobId.localeCompare(b.jobId))
  }

  /** The time index as DescribeTable tells it: its status, or null when the table has none. */
  async timeIndexStatus(): Promise<string | null> {
    const out = await this.send<Ddb.DescribeTableCommandOutput>(() => new this.sdk.DescribeTableCommand({ TableName: this.table }))
    const index = out.Table?.GlobalSecondaryIndexes?.find((g) => g.IndexName === TIME_INDEX)
    return index ? (index.IndexStatus ?? 'ACTIVE') : null
  }

  /**
   * Puts every reservation and job record into the time index (`span` and `at` from its reservation
   * or start), reading the table once; then records in the meta item that every item is indexed, so
   * records() and jobs() Query from then on. Safe to run again and alongside hooks: an item is
   * changed only while its time is still the one read.
   */
  async indexTime(progress: (done: number) => void = () => undefined): Promise<{ items: number; indexed: number }> {
    let items = 0
    let indexed = 0
    let first = Infinity
    await this.pages(
      (start) =>
        new this.sdk.ScanCommand({
          TableName: this.table,
          ProjectionExpression: '#k, #s, #a, reservedAt, startedAt',
          ExpressionAttributeNames: { '#k': LEDGER_KEY, '#s': SPAN_ATTR, '#a': AT_ATTR },
          ExclusiveStartKey: start
        }),
      async (page) => {
        const todo: { pk: string; time: 'reservedAt' | 'startedAt'; at: number; span: string }[] = []
        for (const item of page.Items ?? []) {
          const pk = item[LEDGER_KEY]?.S ?? ''
          const kind = pk.startsWith(resKey('')) ? 'res' : pk.startsWith(jobKey('')) ? 'job' : null
          const time = kind === 'res' ? 'reservedAt' : 'startedAt'
          const at = Number(item[time]?.N)
          if (!kind || !Number.isFinite(at)) continue
          items++
          first = Math.min(first, at)
          const span = spanOf(kind, at)
          if (item[SPAN_ATTR]?.S !== span || item[AT_ATTR]?.N !== String(at)) todo.push({ pk, time, at, span })
        }
        // A few at once: one at a time, a large table's history takes hours.
        for (let i = 0; i < todo.length; i += 16)
          await Promise.all(
            todo.slice(i, i + 16).map(async (t) => {
              try {
                await this.send(
                  () =>
                    new this.sdk.UpdateItemCommand({
                      TableName: this.table,
                      Key: key(t.pk),
                      UpdateExpression: 'SET #s = :s, #a = :a',
                      ConditionExpression: '#t = :a',
                      ExpressionAttributeNames: { '#s': SPAN_ATTR, '#a': AT_ATTR, '#t': t.time },
                      ExpressionAttributeValues: { ':s': S(t.span), ':a': N(t.at) }
                    })
                )
                indexed++
              } catch (e) {
                // Its time changed meanwhile: whoever changed it indexed it with the new one.
                if (errorNameOf(e) !== 'ConditionalCheckFailedException') throw e
              }
            })
          )
        progress(items)
      }
    )
    const now = this.opts.clock.now()
    await this.send(
      () =>
        new this.sdk.PutItemCommand({
          TableName: this.table,
          // A day of slack: a host whose clock is behind may write an item a little older than any read here.
          Item: { ...key(TIME_INDEX_META), since: N(0), first: N(Math.min(first, now) - 86_400_000), indexedAt: N(now) }
        })
    )
    this.meta = null
    return { items, indexed }
  }

  /** Scans (each reads the whole table) and the items they read, for readNote(). */
  private scans = 0
  private scanned = 0

  readNote(): string | null {
    if (!this.scans) return null
    return (
      `fleet ledger ${this.table}: read the whole table ${this.scans === 1 ? 'once' : `${this.scans} times`} (${this.scanned} items, each billed as read) because its time index is not in use; ` +
      `run \`remote-hooks index-ledger\` once (docs/operations.md) and later reports read only their range`
    )
  }

  private meta: Promise<{ since: number; first: number } | null> | null = null

  /**
   * The range to read through the time index, or null for a Scan: on a ledger whose every item
   * from the range's start on is indexed (`index-ledger` said so in its meta item).
   */
  private async indexed(range: { since?: number; until?: number }): Promise<{ since: number; until: number } | null> {
    this.meta ??= this.send<Ddb.GetItemCommandOutput>(
      () => new this.sdk.GetItemCommand({ TableName: this.table, Key: key(TIME_INDEX_META), ConsistentRead: true })
    ).then((out) =>
      out.Item?.since?.N !== undefined && out.Item.first?.N !== undefined
        ? { since: Number(out.Item.since.N), first: Number(out.Item.first.N) }
        : null
    )
    const meta = await this.meta
    if (!meta || (range.since ?? -Infinity) < meta.since) return null
    // Nothing is older than the oldest item the index was made over: no Query for the months before it.
    // Nothing is reserved or started in the future (a day allows for hosts whose clocks are ahead).
    const until = Math.min(range.until ?? Infinity, this.opts.clock.now() + 86_400_000)
    const since = Math.max(range.since ?? meta.since, Math.min(meta.first, until - 1))
    return since < until ? { since, until } : null
  }

  /** Every item of `kind` whose `at` is in [since, until), one Query per month (eventually consistent, as an index is). */
  private async timeQuery<T>(
    kind: 'res' | 'job',
    { since, until }: { since: number; until: number },
    read: (item: Record<string, AttributeValue>) => T
  ): Promise<T[]> {
    const out: T[] = []
    for (const span of spansOf(kind, since, until))
      await this.pages(
        (start) =>
          new this.sdk.QueryCommand({
            TableName: this.table,
            IndexName: TIME_INDEX,
            KeyConditionExpression: '#s = :s AND #a BETWEEN :since AND :last',
            ExpressionAttributeNames: { '#s': SPAN_ATTR, '#a': AT_ATTR },
            ExpressionAttributeValues: { ':s': S(span), ':since': N(since), ':last': N(until - 1) },
            ExclusiveStartKey: start
          }),
        (page) => {
          for (const item of page.Items ?? []) out.push(read(item))
        }
      )
    return out
  }

  close(): void {
    this.client.destroy()
  }
}

/** A scan filter for `attr` in [since, until). */
function between(
  attr: 'reservedAt' | 'startedAt',
  { since, until }: { since?: number; until?: number }
): [string, Record<string, AttributeValue>] {
  const values: Record<string, AttributeValue> = {}
  let filter = ''
  if (since !== undefined) {
    filter += ` AND ${attr} >= :since`
    values[':since'] = N(since)
  }
  if (until !== undefined) {
    filter += ` AND ${attr} < :until`
    values[':until'] = N(until)
  }
  return [filter, values]
}
