// The test environment of every project: node's, plus a check that each test file leaves the Jest
// worker with no more open handles (processes, sockets, servers…) than it found, and no ref'd
// timer of its own still pending.
// A handle left behind keeps the worker alive after the run, and Jest then force-exits it with
// "A worker process has failed to exit gracefully"; here the file that left it fails instead,
// naming what it left.
// It also keeps every connection a test file makes from its Jest worker on loopback (or a Unix
// socket): one to any other address is refused before it is made, and fails the file, naming it.
// An AWS client without a loopback endpoint, say, would otherwise reach for AWS or for the
// instance metadata address.
import { TestEnvironment } from 'jest-environment-node'
import { Socket } from 'node:net'
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment'
import { promisify } from 'node:util'
import { waitUntil } from './wait'

type Tally = Record<string, number>

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|::1|::ffff:127(\.\d{1,3}){3})$/i
/** Every refused connection in this worker: `host:port`. */
export const refusedConnections: string[] = []

/** Where a Socket#connect call would go: a Unix socket path, or host and port (node's defaults). */
export function connectTarget(args: unknown[]): { path: string } | { host: string; port: unknown } {
  // net.connect() hands over its arguments already normalised, as [options, callback].
  const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0]
  if (typeof first === 'string' && !/^\d+$/.test(first)) return { path: first }
  if (first && typeof first === 'object') {
    const o = first as { path?: string; host?: string; port?: unknown }
    if (typeof o.path === 'string') return { path: o.path }
    return { host: o.host ?? 'localhost', port: o.port }
  }
  return { host: typeof args[1] === 'string' ? args[1] : 'localhost', port: first }
}

/** Installs the loopback guard on this worker's sockets (once per process). */
function guardConnections(): void {
  const proto = Socket.prototype as unknown as { __rchGuarded?: boolean; connect: (this: Socket, ...args: unknown[]) => Socket }
  if (proto.__rchGuarded) return
  proto.__rchGuarded = true
  const connect = proto.connect
  proto.connect = function (this: Socket, ...args: unknown[]): Socket {
    const t = connectTarget(args)
    if ('host' in t && !LOOPBACK.test(t.host)) {
      const where = `${t.host}:${String(t.port)}`
      refusedConnections.push(where)
      process.nextTick(() => this.destroy(new Error(`test guard: a connection to ${where} was refused; tests reach loopback only`)))
      return this
    }
    return connect.apply(this, args)
  }
}

// Timers are told apart by who made them, not counted: Jest's own come and go in the same process.
function tally(): Tally {
  const t: Tally = {}
  for (const r of process.getActiveResourcesInfo()) if (r !== 'Timeout') t[r] = (t[r] ?? 0) + 1
  return t
}

/**
 * Wraps the test context's timer functions (which the code under test uses too) so that the
 * returned set holds every timer made through them that has neither fired nor been cleared.
 */
export function trackTimers(
  g: Pick<typeof globalThis, 'setTimeout' | 'setInterval' | 'clearTimeout' | 'clearInterval'>
): Set<NodeJS.Timeout> {
  const pending = new Set<NodeJS.Timeout>()
  const { setTimeout: set, setInterval: every, clearTimeout: clear } = g
  const wrapSet = ((fn: (this: NodeJS.Timeout, ...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t: NodeJS.Timeout = set(
      function (this: NodeJS.Timeout, ...a: unknown[]) {
        pending.delete(t)
        fn.apply(this, a)
      },
      ms,
      ...args
    )
    pending.add(t)
    return t
  }) as typeof setTimeout
  const wrapEvery = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t: NodeJS.Timeout = every(fn, ms, ...args)
    pending.add(t)
    return t
  }) as typeof setInterval
  // Either clear ends either kind, as in node.
  const wrapClear = (t?: NodeJS.Timeout | string | number): void => {
    if (t && typeof t === 'object') pending.delete(t)
    clear(t)
  }
  // util.promisify(setTimeout) finds node's own promise version under this symbol.
  Object.defineProperty(wrapSet, promisify.custom, { value: (set as unknown as Record<symbol, unknown>)[promisify.custom] })
  g.setTimeout = wrapSet
  g.setInterval = wrapEvery
  g.clearTimeout = wrapClear
  g.clearInterval = wrapClear
  return pending
}

/** Resource kinds of which there are more now than in `before`, with how many more. */
export function excess(before: Tally, now: Tally): Tally {
  const more: Tally = {}
  for (const [kind, n] of Object.entries(now)) if (n > (before[kind] ?? 0)) more[kind] = n - (before[kind] ?? 0)
  return more
}

// A child that has exited keeps its handle until node closes it a moment later, and a destroyed
// socket its shutdown request: both are gone within milliseconds, so this is ample.
const SETTLE_MS = 5_000

export default class HandleCheckEnvironment extends TestEnvironment {
  private readonly testPath: string
  private before: Tally = {}
  private timers = new Set<NodeJS.Timeout>()
  private failed = false
  private refusedBefore = 0

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context)
    this.testPath = context.testPath
  }

  override async setup(): Promise<void> {
    await super.setup()
    guardConnections()
    this.refusedBefore = refusedConnections.length
    this.before = tally()
    this.timers = trackTimers(this.global)
  }

  // jest-circus reports each test's end here: a file with a failed test may well leave its awaits
  // behind (a timed-out test's hook is still running), so its leak is not the finding.
  handleTestEvent(event: { name: string; test?: { errors: unknown[] } }): void {
    if ((event.name === 'test_done' && event.test!.errors.length > 0) || event.name === 'hook_failure') this.failed = true
  }

  override async teardown(): Promise<void> {
    await super.teardown()
    const refused = refusedConnections.slice(this.refusedBefore)
    if (refused.length)
      throw new Error(`${this.testPath} tried to connect beyond loopback (refused, never made): ${[...new Set(refused)].join(', ')}`)
    const left = (): Tally => {
      const more = excess(this.before, tally())
      const timers = [...this.timers].filter((t) => t.hasRef()).length
      if (timers) more.Timeout = timers
      return more
    }
    if (await waitUntil(() => Object.keys(left()).length === 0, SETTLE_MS, 20)) return
    const kids = ((process as any)._getActiveHandles() as Array<{ spawnargs?: string[]; pid?: number; kill?: () => void }>).filter((h) =>
      Array.isArray(h.spawnargs)
    )
    const message =
      `${this.testPath} left open handles ${SETTLE_MS / 1000} s after its last test: ${JSON.stringify(left())}` +
      (kids.length ? `; child processes: ${kids.map((h) => `pid ${h.pid}: ${h.spawnargs!.join(' ').slice(0, 200)}`).join(' | ')}` : '')
    // Throwing here replaces the file's results with this error, which would hide the failed test.
    if (!this.failed) throw new Error(message)
    process.stderr.write(`${message} (after a failed test; its child processes are stopped and its timers cleared)\n`)
    for (const k of kids) k.kill?.()
    for (const t of this.timers) clearTimeout(t)
  }
}
