// The heartbeat period a test may shorten (RCH_LEDGER_BEAT_MS): only 100 ms to the minute it
// shortens. A larger value (or Infinity) was taken as it was, and node runs a timer over 2^31-1 ms
// after 1 ms: the heartbeats went back to back, each a write of the ledger.
import { BEAT_MS, beatPeriodFrom } from '../../src/fleet/beat-period'

test.each([
  ['400', 400],
  ['100', 100],
  ['60000', 60_000],
  [undefined, BEAT_MS],
  ['99', BEAT_MS],
  ['60001', BEAT_MS],
  ['4294967296', BEAT_MS],
  ['Infinity', BEAT_MS],
  ['1e400', BEAT_MS],
  ['NaN', BEAT_MS]
])('RCH_LEDGER_BEAT_MS=%s: %s ms', (value, ms) => {
  expect(beatPeriodFrom({ RCH_LEDGER_BEAT_MS: value })).toBe(ms)
})
