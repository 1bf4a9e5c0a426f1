// The job's Docker on the remote host, as operations with structured results: networks, volumes,
// image presence, container create, start, inspect and removal by label go through the Engine API
// over the forwarded socket (JSON answers, no CLI start-up on the VM per call). A create with the
// user's `options:` (CLI flags), logs and pulls go through the docker CLI (cli.ts); registry
// credentials reach the VM on stdin only (as a docker config), and env values never reach a command line.
import { Engine, EngineError, MAX_LISTING, type CallReply } from './engine'
import { InputError, TransportError } from '../errors'
import { containerLogs, createContainer, pullImage, type CreateSpec, type PullLimits, type PullPolicy } from './cli'
import { nameOnly } from './image'
import { asMount, bindOf, mountBody } from './mounts'
import { inspect, type Inspect } from './steps'
import type { Remote } from '../remote/remote'
import { shownValue, type Registry } from '../protocol'
import { LABEL_JOB, type LABEL_OWNER } from '../labels'
import { CONTAINER_ID, isVolumeName } from '../input-rules'
import { UnexpectedAnswer } from '../remote/answer'

/** Answers nobody reads (a removal's, a start's): never parsed, and only an error's start kept (engine.ts). */
const IGNORE: CallReply = { reply: 'ignore' }
/** A listing by the job's or runner's label. */
const LISTING: CallReply = { maxBytes: MAX_LISTING }

/** What a removal by label took away. */
export interface Counts {
  containers: number
  networks: number
  volumes: number
  /** Images a container action built (the only images the hook labels). */
  images: number
  /** Volumes left because a container that is not the job's uses them (409): the next removal by the same labels takes them. */
  keptInUse?: string[]
}

export const countsTotal = (c: Counts): number => c.containers + c.networks + c.volumes + c.images
export const describeCounts = (c: Counts): string =>
  `${c.containers} containers, ${c.networks} networks, ${c.volumes} volumes${c.images ? `, ${c.images} images` : ''}` +
  (c.keptInUse?.length ? `; kept, in use by a container that is not the job's: volume ${c.keptInUse.join(', ')}` : '')

/** The warning for volumes removeOwned kept, or null. */
export const keptWarning = (c: Counts, where: string): string | null =>
  c.keptInUse?.length
    ? `volume ${c.keptInUse.join(', ')} stays on ${where}: a container that is not the job's uses it (another job's, or one the job started); the next prepare_job of this runner there removes it once it is free`
    : null

/** What removing an earlier job's leftovers says in the step log: what went, and a volume kept. */
export function sayLeftovers(c: Counts, log: { progress(m: string): void; warn(m: string): void }): void {
  if (countsTotal(c)) log.progress(`removed leftovers of an earlier job: ${describeCounts(c)}`)
  const kept = keptWarning(c, 'this machine')
  if (kept) log.warn(`an earlier job's ${kept}`)
}

/** An image id as the engine lists it. */
const IMAGE_ID = /^sha256:[0-9a-f]{64}$/

/** An image reference as an Engine API path: its slashes stay, everything else is escaped. */
/** An image reference as a request path: each segment encoded, and `.`/`..` too (a path must not climb out of /images/). */
const imagePath = (s: string): string =>
  s
    .split('/')
    .map((part) => (part === '.' || part === '..' ? part.replace(/\./g, '%2E') : encodeURIComponent(part)))
    .join('/')
const seg = encodeURIComponent

/**
 * What the engine lists becomes part of a request path: only ids and names of the expected form,
 * from an answer that is a list of objects (anything else is docker's answer gone wrong, not a crash).
 * Each once: the listing is the VM's word, and one name repeated would be one removal per repeat.
 */
function expectNames(list: unknown, key: string, pattern: RegExp | ((s: string) => boolean), what: string): string[] {
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'object' || x === null))
    throw new UnexpectedAnswer(`docker listed ${what} as something other than a list of objects`)
  const values = list.map((x: Record<string, unknown>) => x[key])
  const ok = typeof pattern === 'function' ? pattern : (s: string) => pattern.test(s)
  const bad = values.find((v) => typeof v !== 'string' || !ok(v))
  if (bad !== undefined)
    throw new UnexpectedAnswer(
      `docker listed ${what} with an unexpected name: ${typeof bad === 'string' ? JSON.stringify(bad.slice(0, 100)) : shownValue(bad)}`
    )
  return [...new Set(values as string[])]
}

/** A listing without the entries labelled as job `jobId`'s (anything that is not such an entry stays, for expectNames to judge). */
function withoutJob(list: unknown, jobId: string): unknown {
  if (!Array.isArray(list)) return list
  return list.filter((x: unknown) => {
    const labels = x !== null && typeof x === 'object' && Object.hasOwn(x, 'Labels') ? (x as { Labels: unknown }).Labels : null
    return !(
      labels !== null &&
      typeof labels === 'object' &&
      Object.hasOwn(labels, LABEL_JOB) &&
      (labels as Record<string, unknown>)[LABEL_JOB] === jobId
    )
  })
}

const labelFilter = (key: string, value: string): string => encodeURIComponent(JSON.stringify({ label: [`${key}=${value}`] }))

/** 404: gone already (removed meanwhile, or an auto-removed container). */
const unlessGone = (e: unknown): void => {
  if (!(e instanceof EngineError && e.status === 404)) throw e
}

/** `[hostPort:]containerPort[/proto]`: what the API takes as one binding, exactly as `-p` reads it. */
const SIMPLE_PORT = /^(?:(\d{1,5}):)?(\d{1,5})(?:\/(tcp|udp|sctp))?$/

/**
 * The Engine API body `docker create` would send for `spec`, or null when the spec holds something
 * only the CLI parses (the user's options, port ranges or addresses, a read-only anonymous volume).
 */
export function createBody(spec: CreateSpec): Record<string, unknown> | null {
  if (spec.createOptions.length) return null
  if (spec.ports.some((p) => !SIMPLE_PORT.test(p))) return null
  if (spec.mounts.some((m) => !m.source && m.readOnly)) return null
  const exposed: Record<string, object> = {}
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {}
  for (const p of spec.ports) {
    const [, host, container, proto] = SIMPLE_PORT.exec(p)!
    const key = `${container}/${proto ?? 'tcp'}`
    exposed[key] = {}
    ;(bindings[key] ??= []).push({ HostIp: '', HostPort: host ?? '' })
  }
  const volumes: Record<string, object> = {}
  const binds: string[] = []
  const mounts: object[] = []
  for (const m of spec.mounts) {
    if (asMount(m)) mounts.push(mountBody(m, spec.labels))
    else if (m.source) binds.push(bindOf(m))
    else volumes[m.target] = {}
  }
  return {
    Image: nameOnly(spec.image),
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    Labels: spec.labels,
    ...(spec.entrypoint ? { Entrypoint: [spec.entrypoint] } : {}),
    ...(spec.args.length ? { Cmd: spec.args } : {}),
    ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
    ...(spec.ports.length ? { ExposedPorts: exposed } : {}),
    ...(Object.keys(volumes).length ? { Volumes: volumes } : {}),
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      Binds: binds,
      ...(mounts.length ? { Mounts: mounts } : {}),
      ...(spec.network ? { NetworkMode: spec.network } : {}),
      ...(spec.ports.length ? { PortBindings: bindings } : {})
    },
    ...(spec.network ? { NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases } } } } : {})
  }
}

export class RemoteDocker {
  readonly engine: Engine

  constructor(
    readonly remote: Remote,
    dockerSocket: string
  ) {
    this.engine = new Engine(remote, dockerSocket)
  }

  async createNetwork(name: string, labels: Record<string, string>): Promise<string> {
    const { data } = await this.engine.call<{ Id: string }>(
      'POST',
      '/networks/create',
      { Name: name, Labels: labels, CheckDuplicate: true },
      `network create ${name}`
    )
    return data.Id
  }

  /** Creates a named volume with the job's labels, unless one of that name exists (then it is used as it is). */
  async ensureVolume(name: string, labels: Record<string, string>): Promise<'created' | 'existing'> {
    try {
      await this.engine.call('GET', `/volumes/${seg(name)}`, undefined, `volume inspect ${name}`, IGNORE)
      return 'existing'
    } catch (e) {
      unlessGone(e)
    }
    await this.engine.call('POST', '/volumes/create', { Name: name, Labels: labels }, `volume create ${name}`, IGNORE)
    return 'created'
  }

  async imagePresent(image: string): Promise<boolean> {
    try {
      // Only whether it answers: an image's inspect (its config, its layers) is never parsed.
      await this.engine.call('GET', `/images/${imagePath(nameOnly(image))}/json`, undefined, `image inspect ${image}`, IGNORE)
      return true
    } catch (e) {
      unlessGone(e)
      return false
    }
  }

  /** Makes `image` present by policy: a present image is known from the engine, a pull goes through the CLI. */
  async ensureImage(
    image: string,
    policy: PullPolicy,
    registry: Registry,
    configDir: string,
    onLine: (l: string) => void,
    limits: PullLimits,
    present?: boolean
  ): Promise<'present' | 'pulled'> {
    if (policy !== 'always') {
      if (present ?? (await this.imagePresent(image))) return 'present'
      if (policy === 'never') throw new InputError(`image ${image} is not on the remote host and images.pullPolicy is "never"`)
    }
    return pullImage(this.remote, image, registry, configDir, onLine, limits)
  }

  /**
   * Creates a container. Through the Engine API when the spec has nothing only the CLI reads
   * exactly (createOptions, port ranges or addresses, read-only anonymous volumes); else through the
   * CLI, with env values on stdin.
   */
  async create(spec: CreateSpec, scratchDir: string): Promise<string> {
    const body = createBody(spec)
    if (!body) {
      const id = await createContainer(this.remote, spec, scratchDir)
      await this.createdAsAsked(id, spec)
      return id
    }
    const { data } = await this.engine.call<{ Id: string }>(
      'POST',
      `/containers/create?name=${seg(spec.name)}`,
      body,
      `create ${spec.image}`
    )
    if (typeof data?.Id !== 'string' || !CONTAINER_ID.test(data.Id))
      throw new UnexpectedAnswer(`docker create ${spec.image} returned no container id`)
    return data.Id
  }

  /**
   * What the CLI made of the workflow's options. docker stops reading flags at the first word that
   * is none, takes it for the image and the rest (the hook's labels too) for the command, so
   * `options: --entrypoint sh busybox -c …` made a container outside the job's labels, which no
   * cleanup would find. Such a container is removed, and the options refused. (A named volume the
   * options mount, `-v cache:/cache`, is not the job's: kept across jobs, as a cache on a static host.)
   */
  private async createdAsAsked(id: string, spec: CreateSpec): Promise<void> {
    const { Config: made } = await this.inspect(id)
    const problems: string[] = []
    const image: unknown = made.Image
    if (image !== nameOnly(spec.image))
      problems.push(
        `docker took ${JSON.stringify(typeof image === 'string' ? image : '')} for the image, not ${spec.image} (a word that is no flag stands where the image goes)`
      )
    const labels = made.Labels ?? {}
    const lost = Object.entries(spec.labels).filter(([k, v]) => labels[k] !== v)
    if (lost.length) problems.push(`the container lacks the job's labels (${lost.map(([k]) => k).join(', ')})`)
    if (!problems.length) return
    await this.engine.call('DELETE', `/containers/${seg(id)}?force=1&v=1`, undefined, 'remove container', IGNORE).catch(() => undefined)
    throw new InputError(`${spec.optionsField ?? 'createOptions'}: ${problems.join('; ')}; the container was removed`)
  }

  async start(id: string, what: string): Promise<void> {
    await this.engine.call('POST', `/containers/${seg(id)}/start`, undefined, `start (${what})`, IGNORE)
  }

  inspect(id: string): Promise<Inspect> {
    return inspect(this.engine, id)
  }

  logs(id: string, lines = 100): Promise<string> {
    return containerLogs(this.remote, id, lines)
  }

  /**
   * Removes the containers (with their anonymous volumes), then networks, volumes and images labelled
   * `key=value`. The images are those a container action built (`docker build --label`): a step
   * killed between its build and the image's removal leaves one, which only its labels find. An
   * image still used by a container that is not ours stays, as after the step. So does a named
   * volume: a volume a job created is the host's, and a job of another runner on the same host that
   * names the same volume uses it (found existing, it is not labelled again); its containers keep it
   * in use (409) until that job ends, and the next removal by these labels takes it.
   */
  async removeOwned(key: typeof LABEL_OWNER | typeof LABEL_JOB, value: string, sparing?: string): Promise<Counts> {
    const f = labelFilter(key, value)
    const e = this.engine
    // `sparing`: the job being prepared while its runner's leftovers go, whose network and containers
    // are made alongside. Its id is new to this machine, so nothing an earlier job left carries it.
    const spared = (list: unknown): unknown => (sparing === undefined ? list : withoutJob(list, sparing))
    const listRest = (): Promise<[string[], string[], string[]]> =>
      Promise.all([
        e
          .call('GET', `/networks?filters=${f}`, undefined, 'list networks', LISTING)
          .then((r) => expectNames(spared(r.data), 'Id', CONTAINER_ID, 'networks')),
        e
          .call<{ Volumes?: unknown } | null>('GET', `/volumes?filters=${f}`, undefined, 'list volumes', LISTING)
          .then((r) => expectNames(spared(r.data?.Volumes ?? []), 'Name', isVolumeName, 'volumes')),
        e
          .call('GET', `/images/json?filters=${f}`, undefined, 'list images', LISTING)
          .then((r) => expectNames(spared(r.data), 'Id', IMAGE_ID, 'images'))
      ])
    // Listed beside the containers: where there are none (a prepare_job's usual prune), that listing
    // stands; else the rest is listed again once they are gone (a network, volume or image is
    // removable only then).
    const beside = listRest()
    beside.catch(() => undefined)
    const containers = expectNames(
      spared((await e.call('GET', `/containers/json?all=1&filters=${f}`, undefined, 'list containers', LISTING)).data),
      'Id',
      CONTAINER_ID,
      'containers'
    )
    // Every removal is tried, the first failure reported after: a network or volume that cannot go
    // (one a container that is not ours holds) does not keep the others.
    // A lost or stalled connection (a TransportError) ends it at once: nothing later could work.
    let firstFailure: Error | undefined
    const settle = async <I, T>(items: I[], remove: (item: I) => Promise<T>): Promise<T[]> => {
      // A lost or stalled connection stops the removals not yet begun: each would wait its bound.
      const r = await settledInTurn(items, REMOVALS_AT_ONCE, remove, (x) => x instanceof TransportError)
      if (firstFailure === undefined) firstFailure = r.first
      if (r.stopped !== undefined) throw r.stopped
      return r.values
    }
    const sum = (ns: number[]): number => ns.reduce((a, b) => a + b, 0)
    await settle(containers, (id) =>
      e.call('DELETE', `/containers/${seg(id)}?force=1&v=1`, undefined, 'remove container', IGNORE).catch(unlessGone)
    )
    const [networks, volumes, images] = await (containers.length ? listRest() : beside).catch((listing: unknown) => {
      throw firstFailure ?? listing
    })
    await settle(networks, (id) => this.removeNetwork(id))
    // One in use by a container that is not ours (409; ours are gone by now) stays: a named volume
    // another runner's job also mounts, an image it runs (as removeImage leaves it).
    const keptInUse: string[] = []
    const removeUnlessInUse = async (what: string, path: string, name?: string): Promise<number> =>
      e.call('DELETE', path, undefined, what, IGNORE).then(
        () => 1,
        (err: unknown) => {
          if (!(err instanceof EngineError && err.status === 409)) unlessGone(err)
          if (name) keptInUse.push(name)
          return 0
        }
      )
    const removedVolumes = sum(await settle(volumes, (name) => removeUnlessInUse('remove volume', `/volumes/${seg(name)}?force=1`, name)))
    // force: every tag of the job's image goes with it (one the job added, `node:20`, included).
    const removedImages = sum(await settle(images, (id) => removeUnlessInUse('remove image', `/images/${seg(id)}?force=1`)))
    if (firstFailure !== undefined) throw firstFailure
    return {
      containers: containers.length,
      networks: networks.length,
      volumes: removedVolumes,
      images: removedImages,
      ...(keptInUse.length ? { keptInUse } : {})
    }
  }

  /**
   * Removes a network of ours even when containers that are not ours joined it (a job's
   * `options: --network` naming another job's network, or any container the job started through
   * the Docker socket): they are disconnected first, else the engine refuses and the job's
   * network, and whatever its cleanup does after, would stay.
   */
  private async removeNetwork(id: string): Promise<void> {
    const e = this.engine
    const remove = (): Promise<void> =>
      e.call('DELETE', `/networks/${seg(id)}`, undefined, 'remove network', IGNORE).then(() => undefined, unlessGone)
    try {
      return await remove()
    } catch (err) {
      if (!(err instanceof EngineError && err.status === 403)) throw err
    }
    let joined: string[]
    try {
      const r = await e.call<{ Containers?: unknown } | null>('GET', `/networks/${seg(id)}`, undefined, 'inspect network')
      const c = r.data?.Containers
      if (c === null || c === undefined) joined = []
      else if (typeof c !== 'object' || Array.isArray(c)) throw new UnexpectedAnswer('docker inspect network: Containers is not a map')
      // One container can come back twice (by id, and by name for a stale endpoint): disconnected once.
      else joined = [...new Set(Object.entries(c as Record<string, unknown>).map(([k, v]) => endpointOwner(k, v)))]
    } catch (err) {
      unlessGone(err)
      return
    }
    // In turn, as the removals: the listing is the VM's word, and it may name any number.
    const disconnected = await settledInTurn(
      joined,
      REMOVALS_AT_ONCE,
      (c) =>
        e
          .call('POST', `/networks/${seg(id)}/disconnect`, { Container: c, Force: true }, 'disconnect from network', IGNORE)
          .catch(unlessGone),
      (x) => x instanceof TransportError
    )
    // A lost connection first: the caller stops on it rather than going on to the other networks.
    const failed = disconnected.stopped ?? disconnected.first
    if (failed !== undefined) throw failed
    await remove()
  }
}

/** A stale endpoint (its container gone, as after a daemon crash) is listed as `ep-<endpoint id>`. */
const STALE_ENDPOINT = /^ep-[0-9a-f]{64}$/
/** A container name as the engine makes or accepts them. */
const CONTAINER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/

/**
 * What a forced disconnect names for one entry of a network's `Containers`: the container id, or
 * for a stale endpoint the name it was made for (the engine then deletes the endpoint by that
 * name). Anything else (a load balancer endpoint of a swarm network, which ours never are) is an
 * answer the hook does not act on.
 */
export function endpointOwner(key: string, entry: unknown): string {
  if (CONTAINER_ID.test(key)) return key
  const name = (entry as { Name?: unknown } | null)?.Name
  if (STALE_ENDPOINT.test(key) && typeof name === 'string' && CONTAINER_NAME.test(name)) return name
  throw new UnexpectedAnswer(`docker inspect network: a container id that is not one: ${JSON.stringify(key.slice(0, 80))}`)
}

/**
 * How many removals are in flight at once. A listing comes from the VM's docker, where the job is
 * root: one of 200,000 made-up ids must not open 200,000 channels (and descriptors) at once.
 */
export const REMOVALS_AT_ONCE = 16

/** What `settledInTurn` found: the values, in the items' order; how many failed; the first failure, and the one that stopped it. */
export interface InTurn<T> {
  values: T[]
  failed: number
  first?: Error
  stopped?: Error
}

/**
 * `fn` over `items`, at most `limit` at a time, each settled. Once one fails as `stopOn` says, no
 * further item is begun (those under way still settle). Of the failures only the first and the
 * stopping one are kept: a VM's engine can fail each of thousands of removals with a long error.
 */
export async function settledInTurn<I, T>(
  items: readonly I[],
  limit: number,
  fn: (item: I) => Promise<T>,
  stopOn: (reason: unknown) => boolean = () => false
): Promise<InTurn<T>> {
  const values: (T | typeof NONE)[] = []
  const found: InTurn<T> = { values: [], failed: 0 }
  let next = 0
  const worker = async (): Promise<void> => {
    while (found.stopped === undefined && next < items.length) {
      const i = next++
      try {
        values[i] = await fn(items[i])
      } catch (reason) {
        values[i] = NONE
        found.failed++
        if (found.first === undefined) found.first = reason as Error
        if (found.stopped === undefined && stopOn(reason)) found.stopped = reason as Error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  found.values = values.filter((v): v is T => v !== NONE)
  return found
}
const NONE = Symbol('failed')
