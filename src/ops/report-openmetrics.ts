// `report --openmetrics`: the rows as OpenMetrics text for a node-exporter textfile collector.
// Counters hold only what can never go down: jobs, launches, and the time and cost of SETTLED
// launches (a settlement is final). Running launches are gauges: their estimate grows until
// settlement replaces it with the billed figure, which a counter must not show as a reset.
import type { Phase, Report, Totals } from './report-data'
import { GROUP_FIELDS } from './report-data'
import { LOSS_CAUSES } from '../fleet/ledger'

/** A label value as OpenMetrics writes it: backslash, double quote and line feed escaped. */
export const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

interface Family {
  name: string
  type: 'counter' | 'gauge' | 'summary'
  unit?: string
  help: string
  samples: (t: Totals) => [suffix: string, extra: string, value: number][]
}

const usdOf = (micro: number): number => Number((micro / 1e6).toFixed(6))
const count = (value: (t: Totals) => number) => (t: Totals) => [['_total', '', value(t)] as [string, string, number]]
const gauge = (value: (t: Totals) => number) => (t: Totals) => [['', '', value(t)] as [string, string, number]]
const summary = (pick: (t: Totals) => Phase) => (t: Totals) => {
  const p = pick(t)
  const out: [string, string, number][] = []
  if (p.p50 !== null) out.push(['', 'quantile="0.5"', p.p50 / 1000])
  if (p.p95 !== null) out.push(['', 'quantile="0.95"', p.p95 / 1000])
  out.push(['_sum', '', p.sum / 1000], ['_count', '', p.samples])
  return out
}

const FAMILIES: Family[] = [
  { name: 'rch_jobs', type: 'counter', help: 'Jobs started, any provider.', samples: count((t) => t.jobs) },
  // A reservation with no instance attached yet may still be settled as never launched (a failed
  // launch, a scale-out no member came for): counted then, the counter would drop, read as a reset.
  {
    name: 'rch_launches',
    type: 'counter',
    help: 'Instances launched for jobs or pools (once attached to their reservation).',
    samples: count((t) => t.launches - t.unattached)
  },
  {
    name: 'rch_instance_seconds',
    type: 'counter',
    unit: 'seconds',
    help: 'Billed instance time of settled launches.',
    samples: count((t) => t.instanceSeconds - t.runningInstanceSeconds)
  },
  {
    name: 'rch_cost_usd',
    type: 'counter',
    unit: 'usd',
    help: 'Cost of settled launches at the configured prices.',
    samples: count((t) => usdOf(t.costMicro - t.runningCostMicro))
  },
  { name: 'rch_running_instances', type: 'gauge', help: 'Launches not settled yet.', samples: gauge((t) => t.running) },
  {
    name: 'rch_running_instance_seconds',
    type: 'gauge',
    unit: 'seconds',
    help: 'Instance time of launches not settled yet, up to now.',
    samples: gauge((t) => t.runningInstanceSeconds)
  },
  {
    name: 'rch_running_cost_usd',
    type: 'gauge',
    unit: 'usd',
    help: 'Estimated cost of launches not settled yet: price times elapsed time.',
    samples: gauge((t) => usdOf(t.runningCostMicro))
  },
  {
    name: 'rch_acquire_seconds',
    type: 'summary',
    unit: 'seconds',
    help: "prepare_job's acquire phase: getting the job's machine (a launch, a pool lease, a static host). Quantiles: the jobs of the last 8 days.",
    samples: summary((t) => t.acquire)
  },
  {
    name: 'rch_machines_lost',
    type: 'counter',
    help: 'Jobs whose machine went away under a step, by cause (EC2 state reason: spot, inside, lifetime, api, other; gone: unknown to EC2), and (running) whose connection failed while EC2 still ran the machine.',
    samples: (t) => LOSS_CAUSES.map((c) => ['_total', `cause="${c}"`, t.lost[c]] as [string, string, number])
  },
  {
    name: 'rch_boot_seconds',
    type: 'summary',
    unit: 'seconds',
    help: "prepare_job's boot phase: a launched or started instance coming up. Quantiles: the jobs of the last 8 days.",
    samples: summary((t) => t.boot)
  }
]

export function reportOpenMetrics(r: Report): string {
  const fields = GROUP_FIELDS[r.by]
  const out: string[] = []
  for (const f of FAMILIES) {
    out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`)
    if (f.unit) out.push(`# UNIT ${f.name} ${f.unit}`)
    for (const row of r.rows) {
      const labels = fields.map((name, i) => `${name}="${escapeLabel(row.key[i])}"`)
      for (const [suffix, extra, value] of f.samples(row)) {
        const all = extra ? [...labels, extra] : labels
        out.push(`${f.name}${suffix}{${all.join(',')}} ${value}`)
      }
    }
  }
  out.push('# EOF')
  return out.join('\n') + '\n'
}
