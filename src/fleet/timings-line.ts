// The one `timings:` line prepare_job and cleanup_job end with: each phase in seconds, in a fixed
// order, the total last. The same numbers (in ms) go into the ledger's job record.

const LABELS: [phase: string, label: string][] = [
  ['acquire', 'acquire'],
  ['boot', 'boot'],
  ['ssh', 'ssh ready'],
  ['sync', 'first sync'],
  ['containers', 'containers'],
  ['health', 'health'],
  ['scrub', 'scrub'],
  ['terminate', 'terminate'],
  ['release', 'release']
]

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/** e.g. `timings: acquire 0.4 s, boot 31.2 s, ssh ready 3.1 s, first sync 0.8 s, containers 2.2 s, health 0.0 s (total 37.7 s)`. */
export function timingsLine(t: Record<string, number>, total: number): string {
  const known = LABELS.filter(([p]) => t[p] !== undefined).map(([p, label]) => `${label} ${secs(t[p])}`)
  const others = Object.keys(t)
    .filter((p) => !LABELS.some(([k]) => k === p) && p !== 'total' && p !== 'cleanup')
    .map((p) => `${p} ${secs(t[p])}`)
  return `timings: ${[...known, ...others].join(', ')} (total ${secs(total)})`
}
