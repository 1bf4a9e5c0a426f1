// `reap [--dry-run]`: finds what dead jobs left (instances, pool leases, host slots, unsettled
// reservations) and removes it in two phases: a pass marks candidates, a later pass removes those
// marked at least fleet.reap.graceMinutes ago that a last check still finds unowned.
import type { Config } from '../config'
import { hookLocalRoot } from '../paths'
import type { LedgerClock } from '../fleet/ledger'
import { ledgerClockFrom } from '../fleet/ledger-clock'
import { openLedger } from '../fleet/open-ledger'
import type { OpCommand } from './command'
import { EX_CONFIG } from './check-config'
import { readConfig } from './config-file'
import { sha256Hex } from '../sha256'
import { json, table } from './output'
import type { ReapContext } from './reap-context'
import { fileMarks, WATCH } from './reap-marks'
import { lastSign, watchedFor, type ReapRow } from './reap-plan'
import { opsFor } from './provider-ops'

export const reapCommand: OpCommand = {
  name: 'reap',
  summary: 'remove what dead jobs left (instances, pool leases, host slots) and settle their reservations, in two phases',
  maxPositional: 1,
  options: { 'dry-run': 'flag' },
  help: `usage: remote-hooks reap [FILE | --config FILE] [--dry-run] [--json]

Finds what jobs that died left behind, for the provider in the configuration FILE (default:
$REMOTE_HOOKS_CONFIG), and the fleet ledger's unsettled reservations:
  ec2        instances with the hook's owner tag that are past their expires-at tag and past EC2's
             launch time plus the lifetime their tags give (whichever is later), or whose job
             is dead (its reservation settled, or no heartbeat for fleet.reap.deadAfterMinutes,
             by its timestamp and by this host's own watch of it: keep this host's TMPDIR)
  ec2-pool   members whose lease lapsed (taken back, scrubbed, given back), members marked for
             replacement that nobody holds, members unreachable in two passes that their group
             does not protect from scale-in (a job may hold a protected one), members older than
             reuse.maxVmAgeMinutes + fleet.reap.maxJobMinutes whatever their lease says, members
             running an hour without their host key tag (setup never finished) that their group
             does not protect (replaced)
  static     host slots leased from this runner host whose runner worker process is gone (the
             job's containers, job folder and slot are removed)
  ledger     reservations whose instance ended or whose pool member stopped in Standby (settled
             with its real time), or for which no instance came within fleet.reap.deadAfterMinutes (settled at
             zero cost); a pool reservation whose member ended is attached to the untagged member
             its group launched in its place, and settled (two phases) only when none came within
             5 minutes

Two phases: a pass marks each candidate (tag remote-container-hooks:reap-candidate=<time>, or a mark
on the host or in this runner host's local folder); a later pass removes a candidate marked at least
fleet.reap.graceMinutes ago after reading everything again. A candidate that came back to life is
unmarked. An instance tagged remote-container-hooks:keep is never touched. Run it every few minutes
on every runner host (a systemd timer or cron: docs/operations.md).

Time: for ec2 and ec2-pool a pass goes by AWS's clock (the Date of EC2's answers) when this host's
is more than 2 s off it, so that one host's clock cannot end live jobs early fleet-wide; more than
30 s off, it says so on stderr.

--dry-run  says what this pass would do and changes nothing (not even marks); it keeps only its
           watch of heartbeats (what it saw).

Output: a table (KIND, WHAT, ACTION, WHY), or with --json
  {"ok": true|false, "dryRun": bool, "at": "<ISO time>", "provider": "static"|"ec2"|"ec2-pool",
   "awsClockOffsetSeconds": <AWS's clock minus this host's; ec2 and ec2-pool, once EC2 answered>,
   "rows": [{"kind": "instance"|"reservation"|"member"|"slot", "what", "action", "why"}]}
  action: marked, removed, settled, attached, unmarked, unprotected (a free pool member's scale-in
  protection lifted), kept (marked, grace not over), left alone, failed.

Exit status: 0 done (or nothing to do), 1 some action failed (see its row), 64 usage error,
78 configuration not valid.
`,
  async run(args, io) {
    const file = args.file ?? io.env.REMOTE_HOOKS_CONFIG
    const { config, problems } = readConfig(file)
    if (!config) {
      io.stderr.write(`reap: ${file ?? '(REMOTE_HOOKS_CONFIG not set)'}: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}\n`)
      return EX_CONFIG
    }
    const dryRun = args.options['dry-run'] === true
    const clock = ledgerClockFrom(io.env)
    const at = clock.now()
    const { rows, awsOffsetMs } = await reap(config, { dryRun, clock, signal: io.signal })
    const ok = !rows.some((r) => r.action === 'failed')
    const offset = awsOffsetMs === undefined ? {} : { awsClockOffsetSeconds: Math.round(awsOffsetMs / 1000) }
    if (args.json) io.stdout.write(json({ ok, dryRun, at: new Date(at).toISOString(), provider: config.provider.kind, ...offset, rows }))
    else io.stdout.write(reapTable(rows, dryRun))
    const off = offset.awsClockOffsetSeconds ?? 0
    if (Math.abs(off) > MAX_SKEW_SECONDS)
      io.stderr.write(
        `reap: this runner host's clock is ${Math.abs(off)} s ${off > 0 ? 'behind' : 'ahead of'} AWS's: this pass judged by AWS's; run time synchronisation (chrony or systemd-timesyncd) on this host\n`
      )
    return ok ? 0 : 1
  }
}

const WOULD: Partial<Record<ReapRow['action'], string>> = {
  marked: 'would mark',
  removed: 'would remove',
  settled: 'would settle',
  attached: 'would attach',
  unmarked: 'would unmark',
  unprotected: 'would unprotect'
}

export function reapTable(rows: ReapRow[], dryRun: boolean): string {
  const word = (a: ReapRow['action']): string => (dryRun ? (WOULD[a] ?? a) : a)
  const count = (a: ReapRow['action']): number => rows.filter((r) => r.action === a).length
  const sum = (['removed', 'settled', 'marked', 'kept', 'unmarked', 'unprotected', 'attached', 'failed'] as const)
    .filter((a) => count(a))
    .map((a) => `${count(a)} ${word(a)}`)
  const head = dryRun ? 'dry run, nothing changed: ' : ''
  if (!rows.length) return `${head}nothing found\n`
  return (
    table(
      ['KIND', 'WHAT', 'ACTION', 'WHY'],
      rows.map((r) => [r.kind, r.what, word(r.action), r.why])
    ) + `${head}${sum.join(', ') || 'nothing to do'}; ${count('left alone')} left alone\n`
  )
}

/** Past this, reap says this host's clock is off (it judges by AWS's then, see alignToAws). */
const MAX_SKEW_SECONDS = 30

export interface ReapOptions {
  dryRun: boolean
  clock: LedgerClock
  signal: AbortSignal
}

/** One reap pass over what the configuration names; the rows say what was done. */
export async function reap(config: Config, opts: ReapOptions): Promise<{ rows: ReapRow[]; awsOffsetMs?: number }> {
  // The hook's own private local folder: the local ledger's default place, and reap's marks.
  const localRoot = hookLocalRoot()
  const ledger = await openLedger(config.fleet, { localRoot, clock: opts.clock })
  const seenMarks = new Set<string>()
  const marks = fileMarks(`${localRoot}/reap`, marksName(config), opts.dryRun)
  const now = opts.clock.now()
  /** How long this host has seen `sign` unchanged under `key` (watchedFor), the observation kept. */
  const watch = (key: string, sign: number): number => {
    const w = watchedFor(marks.get(key), sign, ctx.times.now)
    marks.set(key, w.keep)
    seenMarks.add(key)
    return w.ms
  }
  const ctx: ReapContext = {
    times: {
      now,
      deadAfterMs: config.fleet.reap.deadAfterMinutes * 60_000,
      graceMs: config.fleet.reap.graceMinutes * 60_000,
      // By the pass's clock: AWS's once aligned (alignToAws), and the kept observations with it.
      watched: (r) => watch(`${WATCH}${r.id}`, lastSign(r)),
      unlisted: (r) => watch(`${WATCH}unlisted:${r.id}`, 0)
    },
    dryRun: opts.dryRun,
    ledger,
    clock: opts.clock,
    marks,
    seenMarks,
    rows: [],
    signal: opts.signal,
    connectMs: config.timeouts.connectSeconds * 1000
  }
  try {
    await opsFor(config.provider).reap(config.provider, config, ctx)
    marks.save(seenMarks)
  } finally {
    ledger.close()
  }
  return { rows: ctx.rows, awsOffsetMs: ctx.awsOffsetMs }
}

/**
 * Whose marks a pass keeps: one file per ledger and provider scope. A pass drops the marks it did
 * not see, so two configurations on one ledger (static hosts and EC2, say) must not share a file:
 * each would drop the other's marks and its candidates would never reach their second pass. Only
 * what names the ledger and the machines counts: a changed setting keeps the marks.
 */
export function marksName(config: Config): string {
  const l = config.fleet.ledger
  const ledger = l.kind === 'dynamodb' ? `dynamodb ${l.region} ${l.endpoint ?? ''} ${l.table}` : `local ${l.path ?? ''}`
  return sha256Hex(`${ledger}\n${opsFor(config.provider).reapScope(config.provider, config)}`).slice(0, 16)
}
