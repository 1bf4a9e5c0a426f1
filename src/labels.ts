// Ownership labels put on every container, network and volume at creation, so cleanup and pruning
// work from labels alone when state is lost.
import { hostname } from 'node:os'
import { sha256Hex } from './sha256'

export const LABEL_PREFIX = 'dev.remote-container-hooks'
export const LABEL_OWNER = `${LABEL_PREFIX}.owner`
export const LABEL_JOB = `${LABEL_PREFIX}.job`
export const LABEL_RUNNER = `${LABEL_PREFIX}.runner`
/** The instance a job's objects are on (EC2 kinds): tells apart the members of a pool that share one engine. */
export const LABEL_MACHINE = `${LABEL_PREFIX}.machine`

/**
 * A runner's owner id: its name, its runner host and its `_work` folder. Names alone collide: GitHub
 * refuses a second name only within one repository or organisation, and `config.sh` names every
 * runner after its host, so runners of one host (or of hosts made from one image) sharing a VM
 * would prune each other's containers, folders and leases. Hex, as labels and paths need.
 */
export function ownerId(runnerName: string, workDir: string, host: string = hostname()): string {
  return sha256Hex(`runner\0${runnerName}\0${host}\0${workDir}`).slice(0, 16)
}

/**
 * An owner id from a name alone: `reap`'s own, and a runner's before it was per runner host and
 * `_work` (a job started under such a build keeps it in its state until its cleanup_job).
 */
export function nameOwnerId(name: string): string {
  return sha256Hex(name).slice(0, 16)
}

/** The owner ids a job's state may carry for this runner: its own, and the name-only one of older builds. */
export function statedOwners(runnerName: string, workDir: string): string[] {
  return [ownerId(runnerName, workDir), nameOwnerId(runnerName)]
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
