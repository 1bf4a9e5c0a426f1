// Job records as both ledger kinds keep them: one merge rule, one check of what a record may hold.
import { HookError } from '../errors'
import { checkTimings } from './check-timings'
import { LOSS_CAUSES, type JobRecord, type JobUpdate } from './ledger'

/** Rejects what would corrupt a report: a bad job id, phase timings checkTimings refuses, or a time that is not a number. */
export function checkJobUpdate(u: JobUpdate): void {
  if (typeof u.jobId !== 'string' || !/^[A-Za-z0-9_-]{1,80}$/.test(u.jobId))
    throw new HookError(`fleet ledger: bad job id ${JSON.stringify(u.jobId)}`)
  checkTimings(u.timings ?? {})
  if (u.lost !== undefined && !(LOSS_CAUSES as readonly string[]).includes(u.lost))
    throw new HookError(`fleet ledger: job ${u.jobId}: unknown cause of a lost machine ${JSON.stringify(u.lost)}`)
  for (const k of ['startedAt', 'endedAt'] as const)
    if (u[k] !== undefined && !Number.isFinite(u[k])) throw new HookError(`fleet ledger: job ${k} is not a time`)
}

/** How many characters of a name the job gives (workflow, job, …) the ledger keeps: as many as an EC2 tag. */
export const NAME_MAX = 256

/**
 * A name as the ledger keeps it: its first NAME_MAX characters. A workflow chooses its names and
 * the environment allows 128 KiB each: written whole into every reservation and job line, they
 * would make every read of the ledger (reap's, report's) that much slower and larger.
 */
export const nameField = (s: string | undefined): string =>
  Array.from(s ?? '')
    .slice(0, NAME_MAX)
    .join('')

/** A job's record with nothing known yet but its id and start. */
export function blankJob(jobId: string, startedAt: number): JobRecord {
  return { jobId, repository: '', workflow: '', runId: '', job: '', runner: '', runnerHost: '', provider: '', startedAt, timings: {} }
}

/** The record after `u`: named fields replace (but `lost`), timings merge; a job first seen in an update starts at `now`. */
export function mergeJob(old: JobRecord | undefined, u: JobUpdate, now: number): JobRecord {
  const base: JobRecord = old ?? blankJob(u.jobId, now)
  const defined = Object.fromEntries(Object.entries(u).filter(([k, v]) => v !== undefined && k !== 'timings'))
  const merged = { ...base, ...defined, timings: { ...base.timings, ...(u.timings ?? {}) } }
  // The first cause of a lost machine stays: a later step's lookup must not move a job from one
  // cause to another (report's counters would go down).
  if (old?.lost !== undefined) merged.lost = old.lost
  return merged
}
