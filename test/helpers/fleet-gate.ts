// A FleetGate for unit tests: allows every launch (or refuses with `refuse`) and records each call.
import { FleetRefused, type FleetGate, type LaunchSpec } from '../../src/fleet/gate'
import type { SettleOptions } from '../../src/fleet/ledger'

export interface FleetCall {
  op: 'reserve' | 'attach' | 'settle' | 'beat'
  id?: string
  spec?: LaunchSpec
  instanceId?: string
  at?: number
  opts?: Partial<SettleOptions>
}

export function recordingFleetGate(o: { refuse?: string } = {}): FleetGate & { calls: FleetCall[] } {
  const calls: FleetCall[] = []
  let n = 0
  return {
    calls,
    async reserve(spec) {
      calls.push({ op: 'reserve', spec })
      if (o.refuse) throw new FleetRefused(o.refuse)
      return `res-${++n}`
    },
    async attach(id, instanceId, at) {
      calls.push({ op: 'attach', id, instanceId, ...(at === undefined ? {} : { at }) })
    },
    async settle(id, opts) {
      calls.push({ op: 'settle', id, opts })
    },
    async beat(id) {
      calls.push({ op: 'beat', id })
    }
  }
}
