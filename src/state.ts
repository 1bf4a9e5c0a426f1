// The state the runner stores between hook commands: identifiers and paths only, never secrets.
// It comes back through the runner, so it is input like any other: every field must be exactly what
// this hook could have written for this runner under today's config. Local paths are never taken
// from it; they are derived from the owner and job id.
import { z } from 'zod'
import type { Config } from './config'
import type { HookContext } from './context'
import { InputError } from './errors'
import {
  CONTAINER_ID,
  escapeRe,
  HEX16,
  hasControl,
  isHomeWorkRoot,
  isImageRef,
  isNormalAbsolute,
  isSafeName,
  isVolumeName
} from './input-rules'
import { statedOwners } from './labels'
import { jobFolder } from './docker/job-folder'
import { localDirOf, repoRootOf } from './paths'
import { describeIssues } from './protocol'
import { leaseFields, leaseRulesFor, workRootOf, type Lease } from './providers/factory'
import type { ConnectInfo } from './remote/remote'

const hex16 = z.string().regex(HEX16, 'must be 16 hex digits')
const containerId = z.string().regex(CONTAINER_ID, 'must be a container id (12-64 hex digits)')
const imageRef = z.string().refine(isImageRef, 'must be an image reference')
const normalFolder = z.string().refine((p) => isNormalAbsolute(p) && p !== '/', 'must be a normalised absolute path other than /')

const connectShape = {
  host: z.string(),
  port: z.number().int().min(1).max(65535),
  user: z.string(),
  identityFile: z.string(),
  knownHostsFile: z.string()
}

/** Any kind's lease may carry the fleet ledger reservation its machine was launched under. */
const reservationShape = {
  reservation: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be a ledger reservation id')
    .optional()
}

/** The job's lease as stored: its connect fields beside the configured kind's own fields. */
function storedHostSchema(kind: string) {
  const rules = leaseFields().find((k) => k.kind === kind)
  return z
    .object({
      kind: z.literal(kind, { errorMap: () => ({ message: `is not provider.kind (${kind})` }) }),
      ...connectShape,
      ...reservationShape,
      ...rules?.fields
    })
    .strict()
}

type Flat<L> = L extends { connect: ConnectInfo } ? Omit<L, 'connect'> & ConnectInfo : never
/** A lease as the state keeps it (flat, so `state.host` is also the machine's ConnectInfo). */
export type StoredHost = Flat<Lease>

export function storedHost(lease: Lease): StoredHost {
  const { connect, ...rest } = lease
  return { ...rest, ...connect }
}

export function leaseOf(h: StoredHost): Lease {
  const { host, port, user, identityFile, knownHostsFile, ...rest } = h
  return { ...rest, connect: { host, port, user, identityFile, knownHostsFile } }
}

function stateSchema(kind: string) {
  return z
    .object({
      v: z.literal(2),
      jobId: hex16,
      owner: hex16,
      host: storedHostSchema(kind),
      /** Remote per-job folder; host `_work` lives at `<jobRoot>/w`. */
      jobRoot: z.string(),
      /** Host `_work` this job's mounts came from. */
      hostWork: normalFolder,
      externals: z.object({ host: normalFolder, remote: z.string() }).strict().nullable(),
      /** Workspace roots synced each step, relative to `_work`. */
      pullRoots: z.array(z.string().refine(isSafeName, 'must be a single folder name')).max(2),
      network: z.string().nullable(),
      container: z
        .object({
          id: containerId,
          image: imageRef,
          path: z
            .string()
            .max(65536)
            .refine((p) => !hasControl(p), 'must not contain control characters')
        })
        .strict()
        .nullable(),
      services: z.array(z.object({ id: containerId, image: imageRef }).strict()),
      volumes: z.array(z.string().refine(isVolumeName, 'must be a volume name')),
      /** Written by older builds; never read (the local folder is derived from owner and job id). */
      localDir: z.unknown().optional()
    })
    .strict()
}

export type StoredState = Omit<z.infer<ReturnType<typeof stateSchema>>, 'localDir' | 'host'> & { host: StoredHost }
/** The state as handlers use it: the stored fields plus the job's derived local folder. */
export type HookState = StoredState & {
  /** Local folder with the agent socket and sync manifests (derived, never from the runner). */
  localDir: string
}

/** What the state is checked against: this runner and today's config. */
export interface StateFacts {
  config: Config
  runnerName: string
  /** Base of the per-job local folders. */
  localRoot: string
  /** Host `_work` and the workspace, from the runner's environment. */
  workDir: string
  workspace: string
}

/** What the runner's state is checked against, from the command's context. */
export function stateFacts(ctx: HookContext): StateFacts {
  return {
    config: ctx.config,
    runnerName: ctx.runner.runnerName,
    localRoot: ctx.localRoot,
    workDir: ctx.runner.workDir,
    workspace: ctx.runner.workspace
  }
}

/** The context with remote.workRoot as it is on the job's machine (the same context when nothing differs). */
export function onJobMachine(ctx: HookContext, workRoot: string): HookContext {
  if (workRoot === ctx.config.remote.workRoot) return ctx
  return { ...ctx, config: Object.freeze({ ...ctx.config, remote: Object.freeze({ ...ctx.config.remote, workRoot }) }) }
}

/** Fields whose value is not one this hook could have written for this runner (field → problem). */
function mismatches(s: StoredState, f: StateFacts): string[] {
  const issues: string[] = []
  const bad = (field: string, why: string): void => void issues.push(`state.${field}: ${why}`)
  const configured = f.config.remote.workRoot
  const workRoot = workRootOf(f.config, s.host)
  if (workRoot !== configured && !(isHomeWorkRoot(configured) && workRoot.endsWith(configured.slice(1))))
    bad('host.workRoot', 'is not remote.workRoot on this machine')
  if (!statedOwners(f.runnerName, f.workDir).includes(s.owner)) bad('owner', "is not this runner's owner id")
  if (s.jobRoot !== jobFolder(workRoot, s.owner, s.jobId)) bad('jobRoot', 'is not the job folder under remote.workRoot')
  if (s.hostWork !== f.workDir) bad('hostWork', "is not the runner's work folder")
  const repo = repoRootOf(f.workDir, f.workspace)
  s.pullRoots.forEach((r, i) => {
    if (r !== '_temp' && r !== repo) bad(`pullRoots.${i}`, 'is not _temp or the repository folder')
  })
  if (s.externals && !new RegExp(`^${escapeRe(workRoot)}/externals/[0-9a-f]{16}$`).test(s.externals.remote))
    bad('externals.remote', 'is not a versioned externals folder under remote.workRoot')
  if (s.network !== null && s.network !== `rch-${s.jobId}`) bad('network', "is not the job's network")
  const p = f.config.provider
  for (const [field, why] of leaseRulesFor(p).issues(leaseOf(s.host), p, localDirOf(f.localRoot, s.owner, s.jobId)))
    bad(`host.${field}`, why)
  return issues
}

/** The runner's state, checked; null when there is none. Throws InputError naming every bad field. */
export function decodeState(raw: Record<string, unknown> | null, facts: StateFacts): HookState | null {
  if (raw === null || Object.keys(raw).length === 0) return null
  const r = stateSchema(facts.config.provider.kind).safeParse(raw)
  if (!r.success) throw new InputError(`invalid state from the runner: ${describeIssues(r.error, 'state').join('; ')}`)
  const { localDir: _ignored, ...rest } = r.data
  const stored = rest as StoredState
  const issues = mismatches(stored, facts)
  if (issues.length) throw new InputError(`invalid state from the runner: ${issues.join('; ')}`)
  return { ...stored, localDir: localDirOf(facts.localRoot, stored.owner, stored.jobId) }
}

/**
 * What the next command's decodeState would refuse in a state this hook is about to hand the
 * runner (an empty list when nothing): parts of it come from the machine's answers (a pool
 * member's work root, the job container's PATH), and a state refused later fails every step with
 * a line that blames the runner.
 */
export function ownStateIssues(state: StoredState, facts: StateFacts): string[] {
  const r = stateSchema(facts.config.provider.kind).safeParse(state)
  if (!r.success) return describeIssues(r.error, 'state')
  return mismatches(r.data as StoredState, facts)
}

/** What goes back to the runner: everything but the derived local folder. */
export function storedState(state: HookState): StoredState {
  const { localDir: _derived, ...stored } = state
  return stored
}

/** A job's state as soon as it has a machine; prepare_job fills in network and containers. */
export function initialState(j: {
  jobId: string
  owner: string
  lease: Lease
  jobRoot: string
  hostWork: string
  repoRel: string | null
  localDir: string
}): HookState {
  const { lease } = j
  return {
    v: 2,
    jobId: j.jobId,
    owner: j.owner,
    host: storedHost(lease),
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
