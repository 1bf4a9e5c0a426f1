// Ownership labels put on every container, network and volume at creation, so cleanup and pruning
// work from labels alone when state is lost.
import { sha256Hex } from './sha256'

export const LABEL_PREFIX = 'dev.remote-container-hooks'
export const LABEL_OWNER = `${LABEL_PREFIX}.owner`
export const LABEL_JOB = `${LABEL_PREFIX}.job`
export const LABEL_RUNNER = `${LABEL_PREFIX}.runner`
/** The instance a job's objects are on (EC2 kinds): tells apart the members of a pool that share one engine. */
export const LABEL_MACHINE = `${LABEL_PREFIX}.machine`

/** Stable per-runner owner id (runner names may hold characters labels and paths dislike). */
export function ownerId(runnerName: string): string {
  return sha256Hex(runnerName).slice(0, 16)
}

/** A runner host's id for lease records on machines (hex, so it needs no quoting there). */
export function runnerHostId(hostName: string): string {
  return sha256Hex(`host ${hostName}`).slice(0, 16)
}

export function newJobId(): string {
  // Web Crypto's global, loaded on first use: the step fast path imports this file too.
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(8))).toString('hex')
}

export function labelMap(owner: string, jobId: string, runnerName: string, machine?: string | null): Record<string, string> {
  return { [LABEL_OWNER]: owner, [LABEL_JOB]: jobId, [LABEL_RUNNER]: runnerName, ...(machine ? { [LABEL_MACHINE]: machine } : {}) }
}

/** The same labels as docker CLI flags. */
export function labelFlagsOf(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])
}

/** The machine label's value for a lease: its instance, if it has one. */
export function machineOf(lease: object): string | null {
  const id = (lease as { instanceId?: unknown }).instanceId
  return typeof id === 'string' ? id : null
}
