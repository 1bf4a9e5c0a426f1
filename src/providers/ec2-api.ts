// Thin EC2 calls and the one classifier of AWS errors. The SDK is loaded on first use only, so
// commands that never talk to EC2 (every step) do not pay for it.
import { monoMs } from '../mono-clock'
import type * as Ec2 from '@aws-sdk/client-ec2'
import type * as Asg from '@aws-sdk/client-auto-scaling'
import type { Ec2Config } from '../config'
import { errorNameOf, httpStatusOf, isNoAnswer } from '../aws-error'

export type Ec2Sdk = typeof Ec2
export type AsgSdk = typeof Asg
/** Where an AWS provider's API is. */
type AwsApi = Pick<Ec2Config, 'region' | 'endpoint'>

let sdk: Ec2Sdk | null = null
export function loadSdk(): Promise<Ec2Sdk> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sdk ??= require('@aws-sdk/client-ec2') as Ec2Sdk
  return Promise.resolve(sdk)
}

/**
 * Every EC2 and Auto Scaling request: a connection within 10 s, the whole answer within 30 s, else
 * a TimeoutError (retried like any lost answer). Without them a call the network swallowed held
 * prepare_job, its undo or a cleanup until the runner killed the hook.
 */
export const AWS_HTTP = { connectionTimeout: 10_000, requestTimeout: 30_000, throwOnRequestTimeout: true }

export async function ec2Client(cfg: AwsApi, http = AWS_HTTP): Promise<{ sdk: Ec2Sdk; client: Ec2.EC2Client }> {
  const s = await loadSdk()
  // Retries are ours (retry.ts with the classifier below), so the SDK makes one attempt per call.
  const client = new s.EC2Client({ region: cfg.region, endpoint: cfg.endpoint, maxAttempts: 1, requestHandler: http })
  return { sdk: s, client }
}

/** What reading the Date of an SDK client's answers needs of it. */
interface Stacked {
  middlewareStack?: {
    add(mw: (next: (a: unknown) => Promise<{ response?: unknown }>) => (a: unknown) => Promise<unknown>, o: object): void
  }
}

/**
 * Calls `seen` with AWS's clock against this host's for each of the client's answers that carries a
 * Date: milliseconds AWS is ahead (negative: behind), to about a second (the Date has whole
 * seconds, taken here as the middle of its second, against the middle of the call). Reservations,
 * heartbeats and tags are stamped with runner hosts' clocks, and compared with EC2's times.
 */
export function watchAwsClock(client: object, seen: (offsetMs: number) => void): void {
  ;(client as Stacked).middlewareStack?.add(
    (next) => async (args) => {
      // The call's middle: the wall clock read once, the call's length on the monotonic clock.
      const t0 = Date.now()
      const m0 = monoMs()
      const r = await next(args)
      const date = Date.parse(String((r.response as { headers?: Record<string, string> } | undefined)?.headers?.date ?? ''))
      if (Number.isFinite(date)) seen(date + 500 - (t0 + (monoMs() - m0) / 2))
      return r
    },
    // Inside the deserializer: the raw answer, an error's too (a DryRun call always is one).
    { step: 'deserialize', name: 'rchAwsClock', priority: 'low' }
  )
}

let asgSdk: AsgSdk | null = null
/** The Auto Scaling API, loaded on first use like EC2's. */
export function autoScalingClient(cfg: AwsApi, http = AWS_HTTP): { sdk: AsgSdk; client: Asg.AutoScalingClient } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  asgSdk ??= require('@aws-sdk/client-auto-scaling') as AsgSdk
  return {
    sdk: asgSdk,
    client: new asgSdk.AutoScalingClient({ region: cfg.region, endpoint: cfg.endpoint, maxAttempts: 1, requestHandler: http })
  }
}

const THROTTLING = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestThrottled'])
const SERVER = new Set([
  // Auto Scaling: another update to the same group is under way (hooks of other jobs, reap).
  'ResourceContention',
  'ResourceContentionFault',
  'InternalError',
  'InternalFailure',
  'ServiceUnavailable',
  'Unavailable',
  'RequestTimeout',
  'RequestTimeoutException'
])
const CAPACITY = new Set([
  'InsufficientInstanceCapacity',
  'InsufficientHostCapacity',
  'InsufficientReservedInstanceCapacity',
  'InsufficientCapacity',
  'InsufficientFreeAddressesInSubnet',
  'SpotMaxPriceTooLow',
  'MaxSpotInstanceCountExceeded',
  'InsufficientSpotCapacity',
  'Unsupported',
  'InstanceLimitExceeded',
  'VcpuLimitExceeded'
])

/** Worth retrying the same request (with the same idempotency token): throttling, server-side trouble, network. */
export function isRetryableAwsError(err: unknown): boolean {
  const name = errorNameOf(err)
  if (THROTTLING.has(name) || SERVER.has(name)) return true
  const status = httpStatusOf(err)
  if (status !== undefined && status >= 500 && !CAPACITY.has(name)) return true
  return isNoAnswer(err)
}

/**
 * What a failed request says of whether it was carried out: `refused` (EC2 answered no: nothing was
 * done), `throttled` (turned away before it was looked at: says nothing of an earlier attempt), or
 * `unknown` (a server error, or no answer at all: a RunInstances may have launched its instance).
 */
export function requestOutcome(err: unknown): 'refused' | 'throttled' | 'unknown' {
  const name = errorNameOf(err)
  if (THROTTLING.has(name)) return 'throttled'
  if (CAPACITY.has(name)) return 'refused'
  const status = httpStatusOf(err)
  return status !== undefined && status < 500 && !isRetryableAwsError(err) ? 'refused' : 'unknown'
}

/**
 * Whether a write given up on may have been carried out: some attempt's answer was lost (a server
 * error, no answer) and no later attempt was refused outright (requestOutcome; a throttled attempt
 * says nothing of the earlier ones).
 */
export function lostAnswers(): { note: (e: unknown) => void; unsure: () => boolean } {
  let unsure = false
  return {
    note: (e) => {
      const outcome = requestOutcome(e)
      if (outcome !== 'throttled') unsure = outcome === 'unknown'
    },
    unsure: () => unsure
  }
}

/** This request cannot be served now; another instance type, subnet or market may be. */
export function isCapacityError(err: unknown): boolean {
  return CAPACITY.has(errorNameOf(err))
}

/**
 * What a failed RunInstances means: `retry` the same request (same token), try the `next`
 * candidate of the launch plan, or `fail` at once (credentials, permissions, a bad parameter:
 * no other type or subnet will fix those). Read from the error's name and status, never its text.
 */
export function launchErrorAction(err: unknown): 'retry' | 'next' | 'fail' {
  if (isCapacityError(err)) return 'next'
  return isRetryableAwsError(err) ? 'retry' : 'fail'
}

export function awsErrorName(err: unknown): string {
  return errorNameOf(err) || 'Error'
}
