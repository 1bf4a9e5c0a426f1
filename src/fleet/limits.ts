// Which limit a reservation would break, and the one line that says so with the current use.
import type { FleetConfig } from '../config'
import { HookError } from '../errors'
import { budgetDay, costMicro, priceOf, toMicro, usd } from './money'
import type { ReserveRequest } from './ledger'

export type Limit = 'instances' | 'repository' | 'vcpus' | 'budget'

/** What is counted now: open reservations, and the budget day's reserved-or-settled cost. */
export interface Usage {
  instances: number
  vcpus: number
  repositoryInstances: number
  dayMicro: number
}

export interface Priced {
  day: string
  priceMicroPerHour: number | null
  reservedMicro: number
}

/** The budget day and the reserved cost of a request, or the refusal of a type without a price while a budget is set. */
export function priceRequest(fleet: FleetConfig, req: ReserveRequest, now: number): Priced | { line: string } {
  if (!Number.isInteger(req.vcpus) || req.vcpus < 1 || !Number.isInteger(req.maxLifetimeMinutes) || req.maxLifetimeMinutes < 1)
    throw new HookError(
      `fleet ledger: a reservation needs whole vcpus and maxLifetimeMinutes of at least 1 (got ${req.vcpus}, ${req.maxLifetimeMinutes})`
    )
  if (!Number.isFinite(now)) throw new HookError('fleet ledger: the reservation time is not a time')
  const price = priceOf(fleet, req.instanceType)
  if (fleet.budget && price === null)
    return { line: `fleet budget: no price for instance type ${req.instanceType} (add it to fleet.budget.prices)` }
  return {
    day: budgetDay(now, fleet.budget?.timezone ?? 'UTC'),
    priceMicroPerHour: price,
    reservedMicro: price === null ? 0 : costMicro(price, req.maxLifetimeMinutes * 60)
  }
}

/** The first limit that counting this request on top of `use` would exceed, or null. */
export function exceeded(fleet: FleetConfig, req: ReserveRequest, cost: number, use: Usage): Limit | null {
  const { caps, budget } = fleet
  if (caps.instances !== undefined && use.instances + 1 > caps.instances) return 'instances'
  if (caps.perRepository.instances !== undefined && use.repositoryInstances + 1 > caps.perRepository.instances) return 'repository'
  if (caps.vcpus !== undefined && use.vcpus + req.vcpus > caps.vcpus) return 'vcpus'
  if (budget && use.dayMicro + cost > toMicro(budget.perDayUsd)) return 'budget'
  return null
}

export function refusalLine(fleet: FleetConfig, limit: Limit, req: ReserveRequest, cost: number, use: Usage): string {
  const { caps, budget } = fleet
  const today = budget ? `budget today ${usd(use.dayMicro)} of ${usd(toMicro(budget.perDayUsd))} USD` : null
  const tail = today ? ` (${today})` : ''
  switch (limit) {
    case 'instances':
      return `fleet cap reached: ${use.instances} of ${caps.instances} instances${tail}`
    case 'repository':
      return `fleet cap reached: ${use.repositoryInstances} of ${caps.perRepository.instances} instances of ${req.repository}${tail}`
    case 'vcpus':
      return `fleet cap reached: ${use.vcpus} of ${caps.vcpus} vCPUs, ${req.vcpus} more needed${tail}`
    case 'budget':
      return (
        `fleet budget reached: ${today} (this ${req.instanceType} reserves ${usd(cost)} USD for up to ` +
        `${req.maxLifetimeMinutes} min; ${use.instances} instances running)`
      )
  }
}
