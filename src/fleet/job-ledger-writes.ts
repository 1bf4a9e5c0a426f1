// What the hook writes to the ledger about a job at the end of prepare_job and of cleanup_job: the
// job record (every provider kind), and on the reservation its phase times and a heartbeat. The
// job is past its launch by then, so a ledger that cannot be written is a warning, never a failure.
import { formatError } from '../errors'
import type { JobFleet } from './job-fleet'
import type { LossCause } from './ledger'

type Warn = (m: string) => void

export interface Prepared {
  provider: string
  machine: string
  pool?: string
  reservation?: string
  /** When prepare_job began, by the ledger's clock. */
  startedAt: number
  timings: Record<string, number>
}

export async function recordPrepared(fleet: JobFleet, warn: Warn, p: Prepared): Promise<void> {
  try {
    const ledger = await fleet.ledger()
    const r = p.reservation
    await Promise.all([
      ledger.recordJob({
        ...fleet.facts,
        jobId: fleet.facts.jobId!,
        runnerHost: fleet.facts.runnerHost ?? '',
        provider: p.provider,
        pool: p.pool,
        machine: p.machine,
        reservationId: r,
        startedAt: p.startedAt,
        timings: p.timings
      }),
      r ? ledger.recordTimings(r, p.timings) : undefined,
      r ? ledger.beat(r) : undefined
    ])
  } catch (e) {
    warn(`fleet.ledger: could not record the job: ${formatError(e)}`)
  }
}

export async function recordCleanedUp(
  fleet: JobFleet,
  warn: Warn,
  c: { reservation?: string; timings: Record<string, number> }
): Promise<void> {
  try {
    const ledger = await fleet.ledger()
    await Promise.all([
      ledger.recordJob({ jobId: fleet.facts.jobId!, endedAt: fleet.clock.now(), timings: c.timings }),
      c.reservation ? ledger.recordTimings(c.reservation, c.timings) : undefined
    ])
  } catch (e) {
    warn(`fleet.ledger: could not record the job's cleanup: ${formatError(e)}`)
  }
}

/**
 * Why the job's machine went away under a step, on the job's record (the first cause stays); a
 * failure is only a warning. The job's facts go with it, so a record prepare_job could not write is
 * not left without them.
 */
export async function recordLost(fleet: JobFleet, warn: Warn, cause: LossCause, provider: string): Promise<void> {
  try {
    await (
      await fleet.ledger()
    ).recordJob({
      ...fleet.facts,
      jobId: fleet.facts.jobId!,
      runnerHost: fleet.facts.runnerHost ?? '',
      provider,
      lost: cause
    })
  } catch (e) {
    warn(`fleet.ledger: could not record the lost machine: ${formatError(e)}`)
  }
}

/** A sign of life of the job's reservation (cleanup_job's start); a failure is only a warning. */
export async function beatQuietly(fleet: JobFleet, warn: Warn, reservation: string | undefined): Promise<void> {
  if (!reservation) return
  await fleet.gate.beat(reservation).catch((e: unknown) => warn(`fleet.ledger: could not record a heartbeat: ${formatError(e)}`))
}
