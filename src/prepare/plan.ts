// prepare_job's plan: from the runner's input to what will be created on the remote (containers
// with their names, aliases, mounts, env and ports; the network; named volumes; the externals copy;
// the remote layout). Pure: every input check happens here, before anything is started, and it is
// unit tested without a remote. Reading the externals' content is passed in.
import { posix } from 'node:path'
import { HookError, InputError } from '../errors'
import type { ContainerArgs, Mount, PrepareJobArgs, Registry } from '../protocol'
import { rejoinArgs, shlexScan } from '../shlex'
import { jobFolder } from '../docker/job-folder'
import type { CreateSpec } from '../docker/cli'
import type { MountSpec } from '../docker/mounts'
import { validateEnvNames } from '../docker/env-script'
import { JOB_ALIAS, serviceAliases } from '../docker/image'
import { labelMap } from '../labels'
import { isNormalAbsolute } from '../input-rules'
import { remotePath, repoRootOf, type Layout } from '../paths'
import { firstCopyRoots } from '../job'

export interface PlanFacts {
  /** The runner's `_work` and workspace. */
  hostWork: string
  workspace: string
  runnerName: string
  workRoot: string
  dockerSocket: string
  /** sync.toolCache: `_tool` is part of the first copy. */
  toolCache: boolean
  owner: string
  jobId: string
  /** Content version of the runner's externals folder (same files → same version). */
  externalsVersion: (dir: string) => string
}

export interface ContainerPlan {
  role: 'service' | 'job'
  /** How logs and errors name it: the service's first alias, or "job container". */
  what: string
  image: string
  registry: Registry
  /** The input field it came from, for error messages. */
  field: string
  spec: CreateSpec
  /**
   * Whether it binds a folder the first copy fills (the job folder or the externals): then it starts
   * only after the copy, since docker would create a missing bind source itself, owned by root.
   */
  needsCopy: boolean
  /** Its binds of folders under the job's copy of `_work`: host path and remote path. */
  workBinds: { host: string; remote: string }[]
  bindsExternals: boolean
  /** The job container idles (no entrypoint of the runner's): its start needs nothing else running. */
  idle: boolean
}

export interface JobPlan {
  jobId: string
  owner: string
  jobRoot: string
  layout: Layout
  /** The repository folder under `_work` the steps sync, if any. */
  repoRel: string | null
  /** Folders under `_work` the first copy sends (those that exist on the host when it runs). */
  copyRoots: string[]
  externals: { host: string; remote: string } | null
  network: string
  /** Docker labels of everything the job creates. */
  labels: Record<string, string>
  /** Named volumes mounted by any container, created unless they exist. */
  volumes: string[]
  /** Started first, in this order; then the job container. */
  services: ContainerPlan[]
  job: ContainerPlan | null
}

/** What a job container runs when the runner gives no entrypoint: nothing, until a step execs. */
const IDLE = { entrypoint: 'tail', args: ['-f', '/dev/null'] }

/** A job, service or action container's env: the runner's, plus what GitHub's own containers get. */
export function baseEnv(env: Record<string, string>): Record<string, string> {
  return { ...env, GITHUB_ACTIONS: 'true', ...('CI' in env ? {} : { CI: 'true' }) }
}

function createOptionsOf(args: ContainerArgs, field: string): string[] {
  const options = args.createOptions ? shlexScan(args.createOptions) : []
  // Where, never what: the options may hold a secret (`--env TOKEN=…`), and hook.log is not masked for it.
  if (!Array.isArray(options))
    throw new InputError(
      `${field}.createOptions: unterminated quote: the ${args.createOptions![options.unterminatedAt]} at character ${options.unterminatedAt + 1} is never closed`
    )
  return options
}

interface Mounted {
  mounts: MountSpec[]
  needsCopy: boolean
  workBinds: { host: string; remote: string }[]
  bindsExternals: boolean
}

/**
 * One mount of the runner's input as the VM sees it. The externals copy there is shared by the jobs
 * on the VM and reused: never writable, and a bind docker must not make (see mounts.ts).
 */
function mountSpecOf(m: Mount, at: string, layout: Layout): MountSpec {
  const src = m.sourceVolumePath
  if (!src || !src.startsWith('/')) return { source: src || null, target: m.targetVolumePath, readOnly: m.readOnly }
  const remote = remotePath(layout, src, `${at}.sourceVolumePath`)
  return under(remote, layout.remoteExternals)
    ? { source: remote, target: m.targetVolumePath, readOnly: true, existing: true }
    : { source: remote, target: m.targetVolumePath, readOnly: m.readOnly }
}

const under = (p: string, root: string | null): boolean => !!root && (p === root || p.startsWith(`${root}/`))

/** A container's mounts as the VM sees them (`named` collects its named volumes), checked as docker would. */
export function mountsOf(args: ContainerArgs, field: string, layout: Layout, named: Set<string>): Mounted {
  const workBinds: { host: string; remote: string }[] = []
  let bindsExternals = false
  const toSpec =
    (kind: 'user' | 'system') =>
    (m: Mount, i: number): [MountSpec, string] => {
      const at = `${field}.${kind}MountVolumes.${i}`
      const spec = mountSpecOf(m, at, layout)
      if (spec.source && !spec.source.startsWith('/')) named.add(spec.source)
      else if (spec.source && under(spec.source, layout.remoteWork)) workBinds.push({ host: m.sourceVolumePath!, remote: spec.source })
      if (spec.existing) bindsExternals = true
      return [spec, at]
    }
  const mounts = distinctMounts([...args.userMountVolumes.map(toSpec('user')), ...args.systemMountVolumes.map(toSpec('system'))])
  return { mounts, needsCopy: workBinds.length > 0 || bindsExternals, workBinds, bindsExternals }
}

/**
 * A container's mounts (each with its field), checked as docker checks them only at create, after
 * a host was got and the files copied: none over `/`, no two at one path. A mount the runner
 * already makes, given again as it is (`volumes: /var/run/docker.sock:/var/run/docker.sock`), is
 * one mount. Shared by prepare_job and run_container_step.
 */
export function distinctMounts(specs: [MountSpec, string][]): MountSpec[] {
  const mounts: MountSpec[] = []
  const targets = new Map<string, { spec: MountSpec; at: string }>()
  for (const [spec, at] of specs) {
    const target = posix.normalize(spec.target).replace(/(?<=.)\/+$/, '')
    if (target === '/') throw new InputError(`${at}.targetVolumePath: a volume cannot be mounted over the container's root /`)
    const twin = targets.get(target)
    if (twin && twin.spec.source !== null && twin.spec.source === spec.source && twin.spec.readOnly === spec.readOnly) continue
    if (twin)
      throw new InputError(
        `${at}.targetVolumePath: ${target} is already the target of ${twin.at}.targetVolumePath with another source or mode (docker would refuse a duplicate mount point)`
      )
    targets.set(target, { spec, at })
    mounts.push(spec)
  }
  return mounts
}

/** The plan, or null when there is nothing to start (no job container and no services). */
export function planJob(args: PrepareJobArgs, facts: PlanFacts): JobPlan | null {
  if (!args.container && args.services.length === 0) return null
  const { hostWork, workRoot, owner, jobId } = facts

  const all: [ContainerArgs, string][] = [
    ...(args.container ? [[args.container, 'args.container'] as [ContainerArgs, string]] : []),
    ...args.services.map((s, i): [ContainerArgs, string] => [s, `args.services.${i}`])
  ]
  const options = new Map<ContainerArgs, string[]>()
  for (const [c, field] of all) {
    if (!c.image) throw new InputError(`${field}.image: missing (a Dockerfile is not supported for job or service containers)`)
    validateEnvNames(c.environmentVariables, `${field}.environmentVariables`)
    options.set(c, createOptionsOf(c, field))
  }

  const sys = args.container?.systemMountVolumes ?? []
  const workIndex = sys.findIndex((m) => m.targetVolumePath === '/__w')
  // Only the runner's own `_work` is ever copied up and written back into.
  if (workIndex >= 0 && sys[workIndex].sourceVolumePath !== hostWork) {
    throw new InputError(
      `args.container.systemMountVolumes.${workIndex}.sourceVolumePath: the /__w mount must be the runner's work folder ${hostWork}`
    )
  }
  const extIndex = sys.findIndex((m) => m.targetVolumePath === '/__e')
  const hostExternals = extIndex >= 0 ? sys[extIndex].sourceVolumePath : null
  if (hostExternals !== null && (!isNormalAbsolute(hostExternals) || hostExternals === '/')) {
    throw new InputError(
      `args.container.systemMountVolumes.${extIndex}.sourceVolumePath: the /__e mount must be a normalised absolute folder other than /`
    )
  }
  const repoRel = repoRootOf(hostWork, facts.workspace)
  const jobRoot = jobFolder(workRoot, owner, jobId)
  const extVersion = hostExternals ? facts.externalsVersion(hostExternals) : null
  if (extVersion !== null && !/^[0-9a-f]{16}$/.test(extVersion))
    throw new HookError(`externals version ${JSON.stringify(extVersion)} is not 16 hex digits`)
  const layout: Layout = {
    hostWork,
    remoteWork: `${jobRoot}/w`,
    hostExternals,
    remoteExternals: extVersion ? `${workRoot}/externals/${extVersion}` : null,
    dockerSocket: facts.dockerSocket
  }

  const network = `rch-${jobId}`
  const labels = labelMap(owner, jobId, facts.runnerName)
  const named = new Set<string>()
  const spec = (
    c: ContainerArgs,
    field: string,
    name: string,
    over: Partial<CreateSpec>
  ): Omit<Mounted, 'mounts'> & { spec: CreateSpec } => {
    const { mounts, ...m } = mountsOf(c, field, layout, named)
    return {
      ...m,
      spec: {
        name,
        image: c.image!,
        labels,
        network,
        aliases: [],
        ports: c.portMappings,
        mounts,
        env: baseEnv(c.environmentVariables),
        createOptions: options.get(c)!,
        optionsField: `${field}.createOptions`,
        entrypoint: c.entryPoint || null,
        args: rejoinArgs(c.entryPointArgs),
        workdir: null,
        ...over
      }
    }
  }

  const c = args.container
  const job: ContainerPlan | null = c
    ? {
        role: 'job',
        what: 'job container',
        idle: !c.entryPoint,
        image: c.image!,
        registry: c.registry,
        field: 'args.container',
        ...spec(c, 'args.container', `rch-${jobId}-${JOB_ALIAS}`, {
          aliases: [JOB_ALIAS],
          ...(c.entryPoint ? { entrypoint: c.entryPoint, args: rejoinArgs(c.entryPointArgs) } : IDLE)
        })
      }
    : null

  const aliases = serviceAliases(args.services.map((s) => s.image!))
  // A contextName (the runner sends none today) is one more alias, unless a container has that name
  // already: no name may answer for two containers.
  const taken = new Set([JOB_ALIAS, ...aliases.flat()].map((a) => a.toLowerCase()))
  const services = args.services.map((s, i): ContainerPlan => {
    const own = s.contextName && !taken.has(s.contextName.toLowerCase()) ? [s.contextName] : []
    own.forEach((a) => taken.add(a.toLowerCase()))
    const al = [...aliases[i], ...own]
    const field = `args.services.${i}`
    return {
      role: 'service',
      what: al[0],
      idle: false,
      image: s.image!,
      registry: s.registry,
      field,
      ...spec(s, field, `rch-${jobId}-${al[0]}`, { aliases: al })
    }
  })
  return {
    jobId,
    owner,
    jobRoot,
    layout,
    repoRel,
    copyRoots: firstCopyRoots(repoRel, facts.toolCache),
    externals: hostExternals && layout.remoteExternals ? { host: hostExternals, remote: layout.remoteExternals } : null,
    network,
    labels,
    volumes: [...named],
    services,
    job
  }
}

/** The plan with the machine it got: its label goes on everything the job creates there. */
export function onMachine(plan: JobPlan, machine: string | null, runnerName: string): JobPlan {
  if (!machine) return plan
  const labels = labelMap(plan.owner, plan.jobId, runnerName, machine)
  const relabel = (c: ContainerPlan): ContainerPlan => ({ ...c, spec: { ...c.spec, labels } })
  return { ...plan, labels, services: plan.services.map(relabel), job: plan.job && relabel(plan.job) }
}

/** Every container of the plan, in start order. */
export const containersOf = (plan: JobPlan): ContainerPlan[] => [...plan.services, ...(plan.job ? [plan.job] : [])]
