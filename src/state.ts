// The state the runner stores between hook commands: identifiers and paths only, never secrets.
import { z } from 'zod'
import { InputError } from './errors'
import { describeIssues } from './protocol'
import type { Lease } from './providers/provider'

export const StateSchema = z.object({
  v: z.literal(1),
  jobId: z.string().regex(/^[a-f0-9]{16}$/),
  owner: z.string(),
  host: z.object({
    index: z.number().int(),
    slot: z.number().int(),
    host: z.string(),
    port: z.number().int(),
    user: z.string(),
    identityFile: z.string(),
    knownHostsFile: z.string(),
    instanceId: z.string().optional()
  }),
  /** Remote per-job folder; host `_work` lives at `<jobRoot>/w`. */
  jobRoot: z.string(),
  /** Host `_work` this job's mounts came from. */
  hostWork: z.string(),
  externals: z.object({ host: z.string(), remote: z.string() }).nullable(),
  /** Workspace roots synced each step, relative to `_work`. */
  pullRoots: z.array(z.string()),
  network: z.string().nullable(),
  container: z.object({ id: z.string(), image: z.string(), path: z.string() }).nullable(),
  services: z.array(z.object({ id: z.string(), image: z.string() })),
  volumes: z.array(z.string()),
  /** Local folder with the agent socket and sync manifests. */
  localDir: z.string()
})
export type HookState = z.infer<typeof StateSchema>

export function decodeState(raw: Record<string, unknown> | null): HookState | null {
  if (raw === null || Object.keys(raw).length === 0) return null
  const r = StateSchema.safeParse(raw)
  if (!r.success) throw new InputError(`invalid state from the runner: ${describeIssues(r.error, 'state').join('; ')}`)
  return r.data
}

/** A job's state as soon as it has a machine; prepare_job fills in network and containers. */
export function initialState(j: { jobId: string; owner: string; lease: Lease; jobRoot: string; hostWork: string; repoRel: string | null; localDir: string }): HookState {
  const { lease } = j
  return {
    v: 1,
    jobId: j.jobId,
    owner: j.owner,
    host: { index: lease.index, slot: lease.slot, ...lease.connect, ...(lease.instanceId ? { instanceId: lease.instanceId } : {}) },
    jobRoot: j.jobRoot,
    hostWork: j.hostWork,
    externals: null,
    pullRoots: ['_temp', ...(j.repoRel ? [j.repoRel] : [])],
    network: null,
    container: null,
    services: [],
    volumes: [],
    localDir: j.localDir
  }
}
