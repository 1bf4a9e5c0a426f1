// Ownership labels put on every container, network and volume at creation, so cleanup and pruning
// work from labels alone when state is lost.
import { createHash, randomBytes } from 'node:crypto'

export const LABEL_PREFIX = 'dev.remote-container-hooks'
export const LABEL_OWNER = `${LABEL_PREFIX}.owner`
export const LABEL_JOB = `${LABEL_PREFIX}.job`
export const LABEL_RUNNER = `${LABEL_PREFIX}.runner`

/** Stable per-runner owner id (runner names may hold characters labels and paths dislike). */
export function ownerId(runnerName: string): string {
  return createHash('sha256').update(runnerName).digest('hex').slice(0, 16)
}

export function newJobId(): string {
  return randomBytes(8).toString('hex')
}

export function labelArgs(owner: string, jobId: string, runnerName: string): string[] {
  return ['--label', `${LABEL_OWNER}=${owner}`, '--label', `${LABEL_JOB}=${jobId}`, '--label', `${LABEL_RUNNER}=${runnerName}`]
}

export function labelMap(owner: string, jobId: string, runnerName: string): Record<string, string> {
  return { [LABEL_OWNER]: owner, [LABEL_JOB]: jobId, [LABEL_RUNNER]: runnerName }
}
