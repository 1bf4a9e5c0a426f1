import { isRetryableDynamoError } from '../../src/fleet/dynamodb-ledger'
import { billedSeconds, budgetDay, costMicro, toMicro, usd } from '../../src/fleet/money'

test('integer micro-dollars: no float drift where a sum meets a limit', () => {
  // as floats, 0.1 + 0.2 > 0.3: a budget of 0.30 would refuse the third 0.10 reservation
  expect(0.1 + 0.2 > 0.3).toBe(true)
  expect(toMicro(0.1) + toMicro(0.2) <= toMicro(0.3)).toBe(true)
  expect(toMicro(0.0416)).toBe(41_600)
})

test('cost and billed seconds: per second, 60 s minimum, rounded up', () => {
  expect(billedSeconds(0, 0)).toBe(60)
  expect(billedSeconds(0, 59_999)).toBe(60)
  expect(billedSeconds(0, 60_001)).toBe(61)
  expect(billedSeconds(1000, 3_601_000)).toBe(3600)
  expect(costMicro(41_600, 3600)).toBe(41_600)
  expect(costMicro(41_600, 60)).toBe(694) // 693.33 up
  expect(costMicro(41_600, 6 * 3600)).toBe(249_600)
})

test('usd shows cents rounded up, so a spent budget never prints as less', () => {
  expect(usd(48_100_000)).toBe('48.10')
  expect(usd(1)).toBe('0.01')
  expect(usd(0)).toBe('0.00')
  expect(usd(49_999_999)).toBe('50.00')
})

test('budget day in a time zone', () => {
  const t = Date.UTC(2026, 11, 31, 23, 30)
  expect(budgetDay(t, 'UTC')).toBe('2026-12-31')
  expect(budgetDay(t, 'Europe/Berlin')).toBe('2027-01-01')
  expect(budgetDay(t, 'America/New_York')).toBe('2026-12-31')
})

test('DynamoDB errors: conflicts, throttling, server and network retried; a failed condition never', () => {
  const cancelled = (...codes: string[]) => ({ name: 'TransactionCanceledException', CancellationReasons: codes.map((Code) => ({ Code })) })
  expect(isRetryableDynamoError(cancelled('None', 'TransactionConflict'))).toBe(true)
  expect(isRetryableDynamoError(cancelled('ThrottlingError', 'None'))).toBe(true)
  expect(isRetryableDynamoError(cancelled('ConditionalCheckFailed', 'TransactionConflict'))).toBe(false)
  expect(isRetryableDynamoError(cancelled('ValidationError'))).toBe(false)
  expect(isRetryableDynamoError({ name: 'ProvisionedThroughputExceededException' })).toBe(true)
  expect(isRetryableDynamoError({ name: 'X', $metadata: { httpStatusCode: 503 } })).toBe(true)
  expect(isRetryableDynamoError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(true)
  expect(isRetryableDynamoError({ name: 'ResourceNotFoundException', $metadata: { httpStatusCode: 400 } })).toBe(false)
  expect(isRetryableDynamoError({ name: 'AccessDeniedException', $metadata: { httpStatusCode: 400 } })).toBe(false)
})
