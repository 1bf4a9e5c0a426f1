// Running the user's processes through the Engine API: `docker exec` for run steps and JS actions,
// a fresh container for container actions. Output is streamed as it arrives with backpressure; the
// exit code comes from the engine, so a dropped connection can never read as success; cancellation
// stops the remote process, not just the local stream.
import { CALL_TIMEOUT_MS, Engine, EngineError, idFrom, type Output } from './engine'
import { check, type Remote } from '../remote/remote'
import { TransportError, type StepStop } from '../errors'
import { UnexpectedAnswer } from '../remote/answer'
import { shownValue } from '../protocol'
import { retry, settlesWithin, waitUntil, whenAborted } from '../retry'
import { newStepMarker, STEP_MARKER, stopMarked } from './step-stop'
import type { WarmShell } from './warm-shell'
import { asMount, bindOf, mountBody, type MountSpec } from './mounts'
import { nameOnly } from './image'
import { outputStreaming } from '../gc-policy'

export interface ExecSpec {
  container: string
  cmd: string[]
  env: Record<string, string>
  workdir: string
  /** Set by createExec/execStep (pass the same spec to both): the env marker of the step's processes. */
  marker?: string
}

function markerOf(spec: ExecSpec): string {
  return (spec.marker ??= newStepMarker())
}

function envList(env: Record<string, string>): string[] {
  return Object.entries(env).map(([k, v]) => `${k}=${v}`)
}

/**
 * The exit code of an exec whose output has ended. Docker records a plain exit a moment after the
 * stream's end, and the output can end long before the process does: a step that sends its output
 * to a file (`exec >f 2>&1`) closes the stream and may run for hours. So it is asked for as long as
 * the process runs, quickly at first and less often as time goes on; only a cancel (or a failed
 * call) ends the wait. The pull-back starts only once this has answered, so it sees what the
 * process wrote up to its exit.
 */
async function exitOfExec(engine: Engine, execId: string, signal: AbortSignal): Promise<number> {
  return waitUntil(
    async () => {
      // With the signal: a cancel need not wait for an answer the VM's docker holds back.
      const { data } = await engine.call<unknown>('GET', `/exec/${execId}/json`, undefined, 'exec inspect', { signal })
      if (!isObject(data) || typeof data.Running !== 'boolean')
        throw new UnexpectedAnswer('docker API exec inspect: Running is missing or not a boolean')
      return data.Running || data.ExitCode === null ? undefined : exitStatus(data.ExitCode, 'exec inspect')
    },
    {
      attempts: Infinity,
      // The pull-back waits on the answer: ask again soon when docker has not recorded the exit yet.
      minDelayMs: 5,
      factor: 1.5,
      maxDelayMs: 2_000,
      jitter: false,
      signal,
      onTimeout: () => new TransportError("the step's output ended but docker still reports it running", 'lost')
    }
  )
}

/** An exit status from the VM's docker, where the job is root: an integer from 0 to 255, or a failure (never a wrapped 256 = 0). */
function exitStatus(v: unknown, what: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 255) return v
  throw new UnexpectedAnswer(`docker API ${what}: the exit status ${shownValue(v).slice(0, 40)} is not an integer from 0 to 255`)
}

/** Creates the exec without starting it, so it can overlap with the sync before the step. */
export async function createExec(engine: Engine, spec: ExecSpec): Promise<string> {
  const { data } = await engine.call<{ Id: string }>(
    'POST',
    `/containers/${spec.container}/exec`,
    {
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      Cmd: spec.cmd,
      Env: envList({ ...spec.env, [STEP_MARKER]: markerOf(spec) }),
      WorkingDir: spec.workdir
    },
    'exec create'
  )
  return idFrom(data, 'exec create')
}

export async function execStep(
  _remote: Remote,
  engine: Engine,
  spec: ExecSpec,
  out: Output,
  signal: AbortSignal,
  graceMs: number,
  created?: Promise<string>
): Promise<StepEnd> {
  const id = await (created ?? createExec(engine, spec))
  if (signal.aborted) return { exitCode: 130, cancelled: true, stop: 'stopped' }
  let started: Awaited<ReturnType<Engine['hijack']>>
  // A start whose answer failed may still have reached docker, and a step whose stream or exit
  // status failed may still run: whatever it started is stopped before the failure is told (the
  // handler then pulls back what it wrote), as shellStep does. A cancel's stop keeps its grace.
  const stopped = (grace: number): Promise<boolean> => stopMarked(engine, spec.container, markerOf(spec), grace).catch(() => false)
  try {
    started = await engine.hijack(`/exec/${id}/start`, { Detach: false, Tty: false }, out, signal)
  } catch (e) {
    const stop = await stopped(signal.aborted ? graceMs : 0)
    if (!signal.aborted) throw e
    return { exitCode: 130, cancelled: true, stop: stop ? 'stopped' : 'unconfirmed' }
  }
  const { ended, close } = started
  try {
    // A cancel whose stops all failed (the VM's docker, steerable by the job, keeps the stream open):
    // the stream is cut, so the step ends as cancelled instead of waiting for ever.
    return await follow({ ended, exitCode: () => exitOfExec(engine, id, signal) }, engine, spec, signal, graceMs, close)
  } catch (e) {
    await stopped(0)
    throw e
  }
}

/**
 * The same through the job's step shell (warm-shell.ts), which the caller has claimed. A cancelled
 * step retires the shell (what it was left doing is not worth finding out), and so does a cancel
 * the shell does not answer (a step that stopped it). A shell that fails mid-step leaves no process
 * of the step running: they are stopped as on a cancel.
 */
export async function shellStep(
  shell: WarmShell,
  engine: Engine,
  spec: ExecSpec,
  out: Output,
  signal: AbortSignal,
  graceMs: number
): Promise<StepEnd> {
  if (signal.aborted) {
    shell.release()
    return { exitCode: 130, cancelled: true, stop: 'stopped' }
  }
  const marker = markerOf(spec)
  try {
    const res = await follow(shell.run({ ...spec, marker }, out), engine, spec, signal, graceMs, () =>
      shell.close('the step shell did not answer the cancel')
    )
    if (res.cancelled) shell.close()
    return res
  } catch (e) {
    await stopMarked(engine, spec.container, marker, 0).catch(() => undefined)
    throw e
  }
}

/** How a step ended: on the exec paths, once its process has exited. */
export interface StepEnd {
  exitCode: number
  cancelled: boolean
  /** A cancelled step's: whether its processes were seen to stop (or never started). */
  stop?: StepStop
}

/** A started step to its end: its output complete, then its exit status; a cancel stops its processes. */
async function follow(
  started: { ended: Promise<void>; exitCode: () => Promise<number> },
  engine: Engine,
  spec: ExecSpec,
  signal: AbortSignal,
  graceMs: number,
  /** A cancel whose stop passes all failed to end the output: the step's source is to be cut off. */
  onStuck?: () => void
): Promise<StepEnd> {
  const { ended } = started
  const marker = markerOf(spec)
  const onAbort = async (): Promise<StepStop> => {
    // Told 'stopped' only when a stop pass saw none of the step's processes left: the output's end
    // alone proves nothing (a stream the VM drops, or one that ended before the processes did).
    let confirmed = false
    // Every process the step started, not just its first: children, grandchildren and orphans.
    // Another pass if the output has not ended: a process may have been forked during the first.
    await retry(
      async (pass) => {
        if (await stopMarked(engine, spec.container, marker, pass === 1 ? graceMs : 0)) confirmed = true
        if (!(await settlesWithin(ended, 1000))) throw new Error('the step is still running')
      },
      { attempts: 3, minDelayMs: 0, jitter: false }
    ).catch(() => onStuck?.())
    return confirmed ? 'stopped' : 'unconfirmed'
  }
  // Set by the abort listener (a field, so the check below is not narrowed to its initial null).
  const stopping: { done: Promise<StepStop> | null } = { done: null }
  const listener = (): void => void (stopping.done = onAbort())
  if (signal.aborted) listener()
  else signal.addEventListener('abort', listener, { once: true })
  const streamed = outputStreaming()
  try {
    await ended
  } catch (e) {
    // The output cut off by the cancel (onStuck) is the cancel.
    if (!stopping.done) throw e
  } finally {
    streamed()
    signal.removeEventListener('abort', listener)
  }
  if (stopping.done) return { exitCode: 130, cancelled: true, stop: await stopping.done }
  try {
    return { exitCode: await started.exitCode(), cancelled: false }
  } catch (e) {
    // A cancel while the process outlives its output: stopped as above.
    if (!signal.aborted) throw e
    return { exitCode: 130, cancelled: true, stop: await onAbort() }
  }
}

export interface RunSpec {
  image: string
  name: string
  cmd: string[]
  entrypoint: string | null
  env: Record<string, string>
  workdir: string
  mounts: MountSpec[]
  network: string | null
  labels: Record<string, string>
}

/**
 * Runs a container action to completion and removes it. A cancelled one's processes are stopped
 * once its container has exited, or (not started, or cut off) once it was removed.
 */
export async function runContainer(
  engine: Engine,
  spec: RunSpec,
  out: Output,
  signal: AbortSignal,
  /** Called as the start is asked for: from then on the container may have run and written files. */
  starting: () => void = () => undefined
): Promise<StepEnd> {
  const body: Record<string, unknown> = {
    Image: nameOnly(spec.image),
    Env: envList(spec.env),
    WorkingDir: spec.workdir,
    Labels: spec.labels,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    HostConfig: {
      Binds: spec.mounts.filter((m) => !asMount(m)).map(bindOf),
      Mounts: spec.mounts.filter(asMount).map((m) => mountBody(m, spec.labels)),
      NetworkMode: spec.network ?? undefined,
      AutoRemove: false
    }
  }
  if (spec.cmd.length) body.Cmd = spec.cmd
  if (spec.entrypoint) body.Entrypoint = [spec.entrypoint]
  const { data } = await engine.call<{ Id: string }>(
    'POST',
    `/containers/create?name=${encodeURIComponent(spec.name)}`,
    body,
    'container create'
  )
  const id = idFrom(data, 'container create')
  let cancelled = false
  // After a cancel every call is bounded like the cut-off below: the engine may hold any of them.
  const afterCancelCall = { timeoutMs: CUT_AFTER_CANCEL_MS, reply: 'ignore' } as const
  const listener = (): void => {
    cancelled = true
    engine.call('POST', `/containers/${id}/kill`, undefined, 'container kill', afterCancelCall).catch(() => undefined)
  }
  let attached: Awaited<ReturnType<Engine['hijack']>> | null = null
  // A cancelled end that only the container's removal can make 'stopped' (the finally's).
  let end: StepEnd | null = null
  try {
    // Not yet started: a cancel here ends the step, and the finally removes the container.
    attached = await engine.hijack(`/containers/${id}/attach?stream=1&stdout=1&stderr=1`, {}, out, signal).catch((e: unknown) => {
      if (signal.aborted) return null
      throw e
    })
    if (!attached) return (end = { exitCode: 130, cancelled: true, stop: 'unconfirmed' })
    const { ended } = attached
    // Awaited below, unless the step ends before: a stream that fails meanwhile is no unhandled rejection.
    ended.catch(() => undefined)
    let registered!: () => void
    const answered = new Promise<void>((r) => (registered = r))
    const waited = engine.call<{ StatusCode?: unknown } | null>(
      'POST',
      `/containers/${id}/wait?condition=next-exit`,
      undefined,
      'container wait',
      { timeoutMs: null, answered: registered }
    )
    waited.catch(() => undefined)
    // docker's next-exit misses an exit that came before the wait was registered (a container that
    // ends at once, on a busy VM): the step would wait for ever. docker answers the wait's head once
    // it is registered, so the start waits for that, as docker's own CLI does.
    if (!(await headOf(answered, waited, signal, WAIT_HEAD_MS))) return (end = { exitCode: 130, cancelled: true, stop: 'unconfirmed' })
    // A cancel that came before the start stops the container as soon as it runs.
    signal.addEventListener('abort', listener, { once: true })
    if (signal.aborted) return (end = { exitCode: 130, cancelled: true, stop: 'unconfirmed' })
    starting()
    const start = await engine
      .call('POST', `/containers/${id}/start`, undefined, 'container start', { signal, reply: 'ignore' })
      .catch((e: unknown) => {
        if (signal.aborted) return null
        throw e
      })
    // Cancelled while docker held the start: it may have run it, and the removal below ends it.
    if (!start) return (end = { exitCode: 130, cancelled: true, stop: 'unconfirmed' })
    // A cancel during the start sent its kill before anything ran (docker refuses it: not running),
    // and the container would run to its end: killed again, now that it runs.
    if (cancelled) await engine.call('POST', `/containers/${id}/kill`, undefined, 'container kill', afterCancelCall).catch(() => undefined)
    const streamed = outputStreaming()
    // The kill ends a container at once; an engine that holds its wait or stream open after it (the
    // job is root on the VM) is cut off, as the exec path cuts a stream its stops did not end.
    const cut = afterCancel(signal, CUT_AFTER_CANCEL_MS)
    try {
      const r = await Promise.race([Promise.all([waited, ended]), cut.done])
      if (r === null) return (end = { exitCode: 130, cancelled: true, stop: 'unconfirmed' })
      if (cancelled) return { exitCode: 130, cancelled, stop: 'stopped' }
      return { exitCode: exitStatus(r[0].data?.StatusCode, 'container wait'), cancelled }
    } finally {
      cut.clear()
      streamed()
    }
  } finally {
    signal.removeEventListener('abort', listener)
    const removed = await engine
      .call(
        'DELETE',
        `/containers/${id}?force=1&v=1`,
        undefined,
        'remove container',
        signal.aborted ? afterCancelCall : { reply: 'ignore' }
      )
      .then(
        () => true,
        () => false
      )
    if (end && removed) end.stop = 'stopped'
    attached?.close()
  }
}

/** How long a container action's wait and stream may go on after its cancel's kill. */
export const CUT_AFTER_CANCEL_MS = 5_000

/** How long docker may take to register a container's wait, as any call it answers. */
const WAIT_HEAD_MS = CALL_TIMEOUT_MS

/**
 * true once the wait's head (or its whole answer) came; false once the step is cancelled first; the
 * wait's own failure, or a timeout after `ms` with neither.
 */
async function headOf(head: Promise<void>, waited: Promise<unknown>, signal: AbortSignal, ms: number): Promise<boolean> {
  const first = Promise.race([head.then(() => true), waited.then(() => true), whenAborted(signal).catch(() => false)])
  if (!(await settlesWithin(first, ms))) throw new TransportError(`docker API container wait: no answer within ${ms / 1000} s`, 'timeout')
  return first
}

/** A signal that aborts `ms` after `signal` does (at once counts): what a call may still take after a cancel. */
export function graceAfter(signal: AbortSignal, ms = CUT_AFTER_CANCEL_MS): { signal: AbortSignal; clear: () => void } {
  const ctl = new AbortController()
  const a = afterCancel(signal, ms)
  void a.done.then(() => ctl.abort(signal.reason))
  return { signal: ctl.signal, clear: a.clear }
}

/** Resolves with null `ms` after `signal` aborts (at once counts), until cleared. */
function afterCancel(signal: AbortSignal, ms: number): { done: Promise<null>; clear: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined
  let fire!: (v: null) => void
  const done = new Promise<null>((r) => (fire = r))
  const arm = (): void => void (timer = setTimeout(() => fire(null), ms))
  if (signal.aborted) arm()
  else signal.addEventListener('abort', arm, { once: true })
  return {
    done,
    clear: () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', arm)
    }
  }
}

export interface Inspect {
  Id: string
  Config: { Env: string[] | null; Image: string; Labels?: Record<string, string> | null }
  State: { Running: boolean; Status: string; ExitCode: number; Health?: { Status: string } }
  NetworkSettings: { Ports: Record<string, { HostIp: string; HostPort: string }[] | null> | null }
}

export async function inspect(engine: Engine, id: string): Promise<Inspect> {
  return inspectShape((await engine.call<unknown>('GET', `/containers/${id}/json`, undefined, 'container inspect')).data)
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/** The fields the hook reads, of the types it reads them as: the VM's docker answers, and the job is root there. */
export function inspectShape(x: unknown): Inspect {
  const bad = (what: string): never => {
    throw new UnexpectedAnswer(`docker API container inspect: ${what} is missing or not of the expected type`)
  }
  if (!isObject(x)) return bad('the reply')
  const { State: st, Config: cfg, NetworkSettings: net } = x
  if (!isObject(st) || typeof st.Running !== 'boolean' || typeof st.ExitCode !== 'number') bad('State')
  if (isObject(st) && st.Health !== undefined && st.Health !== null && (!isObject(st.Health) || typeof st.Health.Status !== 'string'))
    bad('State.Health')
  if (
    !isObject(cfg) ||
    !(cfg.Env === null || cfg.Env === undefined || (Array.isArray(cfg.Env) && cfg.Env.every((e) => typeof e === 'string')))
  )
    bad('Config')
  const labels = isObject(cfg) ? cfg.Labels : undefined
  if (labels !== undefined && labels !== null && (!isObject(labels) || !Object.values(labels).every((v) => typeof v === 'string')))
    bad('Config.Labels')
  if (!isObject(net)) return bad('NetworkSettings')
  const ports = net.Ports
  if (ports !== null && ports !== undefined) {
    if (!isObject(ports)) bad('NetworkSettings.Ports')
    // Ports reach the runner's `job.services.<id>.ports`, which a services-only job's steps use in
    // commands on the runner host: numbers only, whatever the VM's docker says.
    for (const [key, binds] of Object.entries(ports as Record<string, unknown>)) {
      if (!isPortKey(key)) bad('NetworkSettings.Ports')
      if (binds === null) continue
      if (
        !Array.isArray(binds) ||
        !binds.every((b) => isObject(b) && (b.HostPort === undefined || b.HostPort === '' || isPort(b.HostPort)))
      )
        bad('NetworkSettings.Ports')
    }
  }
  return x as unknown as Inspect
}

/** A port number as docker writes it: 1–65535, no sign, no leading zero. */
const isPort = (p: unknown): boolean => typeof p === 'string' && /^[1-9][0-9]{0,4}$/.test(p) && Number(p) <= 65535
/** A container port as docker keys it: `80/tcp`. */
const isPortKey = (k: string): boolean => {
  const [port, proto, ...rest] = k.split('/')
  return rest.length === 0 && isPort(port) && (proto === 'tcp' || proto === 'udp' || proto === 'sctp')
}

/** container port → host port, as the runner expects `job.services.<id>.ports`. */
export function portMap(info: Inspect): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, binds] of Object.entries(info.NetworkSettings.Ports ?? {})) {
    const b = binds?.find((x) => x.HostPort)
    if (b) out[key.split('/')[0]] = b.HostPort
  }
  return out
}

/**
 * Alpine if /etc/alpine-release exists; read through the archive API, so the image needs no shell.
 * Only the engine's "no such path" (404) means not Alpine: any other failure is the command's, as
 * a wrong answer would have the runner start the glibc node in a musl container, failing far from here.
 */
export async function isAlpine(engine: Engine, id: string): Promise<boolean> {
  try {
    await engine.call('HEAD', `/containers/${id}/archive?path=${encodeURIComponent('/etc/alpine-release')}`)
    return true
  } catch (e) {
    if (e instanceof EngineError && e.status === 404) return false
    throw e
  }
}

export { check }
