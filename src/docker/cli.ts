// Docker operations run as docker CLI commands over SSH: the ones that take the user's raw
// `options:` string (create), registry logins, pulls and builds. argv is built as arrays and quoted
// once by shq; secrets arrive on stdin only.
import { StringDecoder } from 'node:string_decoder'
import { check, OutputLimitError, run, type Remote } from '../remote/remote'
import { shjoin, shq } from '../remote/quote'
import { Cancelled, HookError, RemoteCommandError } from '../errors'
import { CALL_TIMEOUT_MS } from './engine'
import { graceAfter } from './steps'
import { cliShell, envDelivery } from './env-script'
import type { Registry } from '../protocol'
import { CONTAINER_ID } from '../input-rules'
import { wholeLine } from '../line-tail'
import { labelFlagsOf } from '../labels'
import { asMount, bindOf, mountFlag, type MountSpec } from './mounts'
import { nameOnly } from './image'
import { retry } from '../retry'

export type PullPolicy = 'missing' | 'always' | 'never'

export interface CreateSpec {
  name: string
  image: string
  labels: Record<string, string>
  network: string | null
  aliases: string[]
  ports: string[]
  mounts: MountSpec[]
  env: Record<string, string>
  createOptions: string[]
  /** Where createOptions came from in the request, for a refusal's message (`args.container.createOptions`). */
  optionsField?: string
  entrypoint: string | null
  args: string[]
  workdir: string | null
}

export function createArgv(spec: CreateSpec, envFlags: string[]): string[] {
  // The name before the workflow's options, as the runner puts it: `options: --name db` is honoured.
  // The image is present (prepare_job checked or pulled it). A word of the options docker takes for
  // the image (`--env NAME value`: the value, maybe a secret) must not be asked of a registry: before
  // the options, as docker reads no flag after that word.
  const argv = ['docker', 'create', '--name', spec.name, '--pull', 'never']
  if (spec.network) argv.push('--network', spec.network)
  for (const a of spec.aliases) argv.push('--network-alias', a)
  for (const p of spec.ports) argv.push('-p', p)
  for (const m of spec.mounts) argv.push(...(asMount(m) ? ['--mount', mountFlag(m, spec.labels)] : ['-v', bindOf(m)]))
  argv.push(...envFlags)
  if (spec.workdir) argv.push('--workdir', spec.workdir)
  argv.push(...spec.createOptions)
  // After the workflow's options: the docker CLI keeps the last value of a label, so `options:
  // --label dev.remote-container-hooks.job=…` cannot take the container out of its job's cleanup.
  // Options ending in a flag that waits for a value (`--label`) take the hook's first `--label`,
  // and the `k=v` after it then stands where the image goes: docker refuses that name.
  argv.push(...labelFlagsOf(spec.labels))
  if (spec.entrypoint) argv.push('--entrypoint', spec.entrypoint)
  argv.push(nameOnly(spec.image), ...spec.args)
  return argv
}

/** Creates a container; env values reach docker through stdin, never argv. Returns the id. */
export async function createContainer(remote: Remote, spec: CreateSpec, scratchDir: string, timeoutMs = CALL_TIMEOUT_MS): Promise<string> {
  const env = envDelivery(spec.env, scratchDir)
  const argv = createArgv(spec, env.flags)
  const cmd = cliShell(`eval "$(cat)"; ${shjoin(argv)}; rc=$?; ${env.after || ':'}; exit $rc`)
  // An id and maybe a warning line: the VM's `docker` must not fill the hook's memory (several creates run at once).
  const r = await check(remote, cmd, {
    input: env.stdin,
    collect: true,
    maxCollect: CREATE_OUTPUT_MAX,
    label: `docker create ${spec.image}`,
    // Bounded as the Engine API's create is: a VM's docker that never answers must not hold prepare_job.
    timeoutMs
  })
  const id = r.stdout.toString().trim().split('\n').pop() ?? ''
  if (!CONTAINER_ID.test(id)) throw new HookError(`docker create ${spec.image} printed no container id`)
  return id
}

const CREATE_OUTPUT_MAX = 64 * 1024

/**
 * Shell: defines `watched CMD…`, which runs CMD and stops it once the hook's channel is gone. sshd
 * does not stop a command whose channel closed until it writes, and a hung pull or a quiet build
 * writes nothing: a watcher writes a newline to stdout each second and, once that fails, kills CMD.
 */
const WATCHED =
  `exec 3<&0; trap '' PIPE; watched() { "$@" <&3 3<&- & p=$!; ` +
  `(while sleep 1; do printf '\\n' 2>/dev/null || { kill $p 2>/dev/null; exit 0; }; done) 3<&- & w=$!; ` +
  `wait $p; rc=$?; kill $w 2>/dev/null; return $rc; }; `

/** The longest line of a pull's or build's output shown in the log. */
const MAX_LINE = 4096

/** Docker Hub's key in a docker config, as `docker login` writes it. */
const HUB_KEY = 'https://index.docker.io/v1/'

/** The names the docker CLI takes for Docker Hub, whose credentials it looks up under HUB_KEY only. */
const HUB_HOSTS = new Set(['', 'docker.io', 'index.docker.io'])

/** What docker sends the registry (and a docker config holds): the base64 of `user:password`. */
const authOf = (registry: Pick<NonNullable<Registry>, 'username' | 'password'>): string =>
  Buffer.from(`${registry.username}:${registry.password}`).toString('base64')

/**
 * The values to mask before a pull with `registry`: the password and, when docker gets to send
 * them (a user name too), the exact auth, which a registry may quote back whole. Masking the
 * password's own base64 runs leaves a byte or two at its edges encoded, and finds nothing of a
 * password under 8 bytes (log.ts, secret-forms.ts).
 */
export function registrySecrets(registry: Registry | null | undefined): string[] {
  if (!registry?.password) return []
  return registry.username ? [registry.password, authOf(registry)] : [registry.password]
}

/**
 * A docker config holding the registry's credentials, as `docker login` stores them: under the
 * registry's host (its scheme and path dropped), or Docker Hub's own key for Docker Hub.
 */
export function dockerConfig(registry: Pick<NonNullable<Registry>, 'username' | 'password' | 'serverUrl'>): string {
  const host = (registry.serverUrl ?? '').replace(/^https?:\/\//, '').split('/')[0]
  const auth = authOf(registry)
  // Other keys are matched as written, so only the test for Hub ignores case.
  return JSON.stringify({ auths: { [HUB_HOSTS.has(host.toLowerCase()) ? HUB_KEY : host]: { auth } } })
}

/** A pull docker failed; `final` when the registry's answer will not change on a retry (no such image or tag, no access). */
export class PullFailed extends RemoteCommandError {
  constructor(
    e: RemoteCommandError,
    readonly final: boolean
  ) {
    super(e.command, e.exitCode, e.stderrTail, e.signal)
  }
}

/**
 * docker's words for the registry's answers that a retry cannot change: no such image or tag
 * (MANIFEST_UNKNOWN, NAME_UNKNOWN, a reference that resolves to nothing), no access (UNAUTHORIZED,
 * DENIED, no credentials), a name docker cannot take, no image for the platform. Each is anchored to
 * its own words: a bare "not found" also ends a passing failure (a layer's content missing during an
 * unpack, a mirror's 404 for a blob), which a retry may pass.
 */
const FINAL_PULL = new RegExp(
  [
    'manifest unknown',
    'name unknown',
    'manifest for \\S+ not found',
    'failed to resolve reference [^\\n]*: not found',
    'pull access denied',
    'repository does not exist',
    'unauthorized',
    'denied: ',
    'no basic auth credentials',
    'invalid reference format',
    'invalid repository name',
    'no matching manifest',
    'does not match the specified platform'
  ].join('|'),
  'i'
)

/** How many times a pull is tried, as the runner's own docker support tries it. */
export const PULL_ATTEMPTS = 3

export interface PullLimits {
  /** The step's or prepare_job's cancel. */
  signal?: AbortSignal
  /** images.pullTimeoutSeconds in ms, for each attempt. */
  timeoutMs?: number
  /** A line for the step log before a failed pull is tried again. */
  onRetry?: (line: string) => void
}

/**
 * Pulls `image` on the remote (the pull policy is RemoteDocker.ensureImage's). With registry
 * credentials, a per-job docker config is written from stdin (no `docker login`: nothing on a command
 * line), the pull reads it, and it is removed after. A failure the registry may not repeat is tried
 * again (PULL_ATTEMPTS in all); a timeout is not (it already took images.pullTimeoutSeconds).
 */
export async function pullImage(
  remote: Remote,
  image: string,
  registry: Registry,
  configDir: string,
  onLine?: (line: string) => void,
  limits: PullLimits = {}
): Promise<'pulled'> {
  try {
    await retry(() => pullOnce(remote, image, registry, configDir, onLine, limits), {
      attempts: PULL_ATTEMPTS,
      minDelayMs: 2_000,
      maxDelayMs: 10_000,
      signal: limits.signal,
      retryable: (e) => e instanceof PullFailed && !e.final,
      onRetry: (e, n, delayMs) =>
        limits.onRetry?.(`${(e as Error).message}; trying again in ${Math.ceil(delayMs / 1000)} s (attempt ${n + 1} of ${PULL_ATTEMPTS})`)
    })
  } catch (e) {
    // A cancel during the pause between attempts ends the wait with the signal's reason.
    if (limits.signal?.aborted && !(e instanceof PullFailed)) throw Cancelled.by(limits.signal)
    throw e
  }
  return 'pulled'
}

async function pullOnce(
  remote: Remote,
  image: string,
  registry: Registry,
  configDir: string,
  onLine: ((line: string) => void) | undefined,
  limits: PullLimits
): Promise<void> {
  const hasAuth = !!(registry?.username && registry.password)
  let cmd = `${WATCHED}watched docker pull ${shq(image)}`
  if (hasAuth) {
    // The credentials go into a private docker config from stdin, as `docker login` would store
    // them, so that neither the user name (often kept as a secret too) nor the password is on a
    // command line; `cat` reads stdin before the pull starts.
    cmd =
      `${WATCHED}d=${shq(configDir)}; rm -rf "$d"; (umask 077; mkdir -p "$d" && cat > "$d/config.json") && ` +
      `watched docker --config "$d" pull ${shq(image)}; rc=$?; rm -rf "$d"; exit $rc`
  }
  const lines = linesOf(onLine ?? (() => undefined))
  try {
    await check(remote, cmd, {
      input: hasAuth ? dockerConfig(registry) : undefined,
      label: `docker pull ${image}`,
      signal: limits.signal,
      timeoutMs: limits.timeoutMs,
      onStdout: (c) => lines.push(c)
    })
  } catch (e) {
    throw e instanceof RemoteCommandError ? new PullFailed(e, FINAL_PULL.test(e.stderrTail)) : e
  } finally {
    lines.end()
  }
}

/** How much of a build's or a pull's output goes to the log: its lines are logged faster than a slow reader takes them. */
export const LOGGED_OUTPUT_MAX = 1024 * 1024

/**
 * Lines of what the VM's docker prints, for the log. The VM's docker is the job's to replace: a
 * line without end is held only to MAX_LINE + 1 characters, never whole, and one over MAX_LINE is
 * shown as a note, never in part (line-tail.ts). A line (or a character) split across chunks stays
 * whole, and a last line without a newline still arrives. Past LOGGED_OUTPUT_MAX the lines are only
 * counted (the log's writer does not wait for its reader: a VM printing for ever would fill memory).
 */
function linesOf(onLine: (l: string) => void): { push(c: Buffer): void; end(): void } {
  const text = new StringDecoder('utf8')
  let partial = ''
  let logged = 0
  let dropped = 0
  const line = (l: string): void => {
    if (logged >= LOGGED_OUTPUT_MAX) return void dropped++
    const w = wholeLine(l, MAX_LINE)
    logged += w.length
    onLine(w)
  }
  // One character over the bound is enough to know the line is too long to show.
  const cut = (l: string): string => l.slice(0, MAX_LINE + 1)
  return {
    push(c) {
      const lines = (partial + text.write(c)).split('\n')
      partial = cut(lines.pop() ?? '')
      for (const l of lines) if (l) line(l)
    },
    end() {
      const last = partial + text.end()
      partial = ''
      if (last) line(last)
      if (dropped) onLine(`(${dropped} more lines not shown: over ${LOGGED_OUTPUT_MAX} characters of output)`)
      dropped = 0
    }
  }
}

export async function buildImage(
  remote: Remote,
  tag: string,
  dockerfile: string,
  context: string,
  labels: string[],
  onLine: (l: string) => void,
  /** The step's cancel: the channel is closed at once and the watcher stops the build's client. */
  signal?: AbortSignal
): Promise<void> {
  // --force-rm: the legacy builder keeps a failed step's intermediate container otherwise, which
  // carries none of the labels (they go on the image only) and so no cleanup would find. BuildKit
  // accepts the flag and ignores it (it makes no containers). The daemon ends a build whose client
  // went away, so stopping the client stops the build's RUN steps too.
  const argv = ['docker', 'build', '-q', '--force-rm', ...labels, '-t', tag, '-f', dockerfile, context]
  const lines = linesOf(onLine)
  try {
    await check(remote, `${WATCHED}watched ${shjoin(argv)}`, {
      label: `docker build ${dockerfile}`,
      signal,
      onStderr: (c) => lines.push(c)
    })
  } finally {
    lines.end()
  }
}

/**
 * Removes an image the job built; one that is gone or still in use stays as it is. Bounded as an
 * Engine API call, and to CUT_AFTER_CANCEL_MS once the step is cancelled: the job, root on the VM,
 * can make `docker image rm` hang.
 */
export async function removeImage(remote: Remote, image: string, signal: AbortSignal): Promise<void> {
  const grace = graceAfter(signal)
  try {
    await run(remote, `${shjoin(['docker', 'image', 'rm', image])} >/dev/null 2>&1`, {
      label: 'docker image rm',
      signal: grace.signal,
      timeoutMs: CALL_TIMEOUT_MS
    })
  } finally {
    grace.clear()
  }
}

/** What a failed container printed last: `lines` lines, and never more than LOG_BYTES whatever the VM sends. */
export async function containerLogs(remote: Remote, id: string, lines = 100, timeoutMs = CALL_TIMEOUT_MS): Promise<string> {
  try {
    const r = await run(remote, `docker logs --tail ${lines} ${shq(id)} 2>&1`, {
      collect: true,
      maxCollect: LOG_BYTES,
      label: 'docker logs',
      timeoutMs
    })
    return r.stdout.toString('utf8')
  } catch (e) {
    if (e instanceof OutputLimitError) return `(the last ${lines} lines of its log are over ${LOG_BYTES} bytes: not shown)`
    throw e
  }
}

const LOG_BYTES = 1024 * 1024
