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
import { execFileSync } from 'node:child_process'
import { readdirSync, readlinkSync, readFileSync } from 'node:fs'
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

/**
 * The handles and requests this process has open, timers aside (they are told apart by who made
 * them: see trackTimers). Objects, not counts: a handle of Jest's own that closes during the file
 * (a worker it spawned for its cache, say) must not hide one the file left.
 */
function openNow(): object[] {
  const p = process as unknown as { _getActiveHandles(): object[]; _getActiveRequests(): object[] }
  return [...p._getActiveHandles(), ...p._getActiveRequests()]
}

/** A handle's kind as node's resource list names it (ProcessWrap, TCPServerWrap, PipeWrap…). */
export function kindOf(h: object): string {
  const o = h as { spawnargs?: unknown; _handle?: { constructor?: { name?: string } } | null; listen?: unknown }
  if (Array.isArray(o.spawnargs)) return 'ProcessWrap'
  const inner = o._handle?.constructor?.name
  if (inner) return typeof o.listen === 'function' && !(h instanceof Socket) ? `${inner}ServerWrap` : `${inner}Wrap`
  return h.constructor?.name ?? 'unknown'
}

/**
 * For a pipe this process still has open (node makes a child's stdio pipes as socket pairs): the
 * other processes that hold its far end, so a pipe whose child has exited names the grandchild that
 * keeps it open. Empty for anything else, or when `ss` cannot tell.
 */
export function pipeHolders(h: object): string[] {
  const fd = (h as { _handle?: { fd?: number } | null })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) return []
  let ends: string[]
  try {
    const target = readlinkSync(`/proc/self/fd/${fd}`)
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    if (inode) {
      // `ss -x` lists each Unix socket's inode and its peer's.
      const row = execFileSync('ss', ['-xan'], { encoding: 'utf8' })
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[5] === inode)
      ends = row && /^\d+$/.test(row[7] ?? '') ? [`socket:[${row[7]}]`] : []
    } else ends = target.startsWith('pipe:') ? [target] : []
  } catch {
    return []
  }
  if (!ends.length) return []
  const out: string[] = []
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)) {
    try {
      const holds = (f: string): boolean => {
        try {
          return ends.includes(readlinkSync(`/proc/${pid}/fd/${f}`))
        } catch {
          return false // closed meanwhile
        }
      }
      if (!readdirSync(`/proc/${pid}/fd`).some(holds)) continue
      out.push(`pid ${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 200)}`)
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out
}

/** What is open now that was not in `before`, counted by kind. */
export function openedSince(before: ReadonlySet<object>, now: readonly object[]): Tally {
  const t: Tally = {}
  for (const h of now) {
    if (before.has(h)) continue
    const kind = kindOf(h)
    t[kind] = (t[kind] ?? 0) + 1
  }
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

// A child that has exited keeps its handle until node closes it a moment later, and a destroyed
// socket its shutdown request: both are gone within milliseconds, so this is ample.
const SETTLE_MS = 5_000

export default class HandleCheckEnvironment extends TestEnvironment {
  private readonly testPath: string
  private before = new Set<object>()
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
    // A worker's stdin, stdout and stderr are pipes to Jest that node makes on their first use, by
    // whichever file touches one first: they are the worker's, not that file's, so they are made
    // before the count.
    for (const stream of ['stdin', 'stdout', 'stderr'] as const) void process[stream]
    this.before = new Set(openNow())
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
      const more = openedSince(this.before, openNow())
      const timers = [...this.timers].filter((t) => t.hasRef()).length
      if (timers) more.Timeout = timers
      return more
    }
    if (await waitUntil(() => Object.keys(left()).length === 0, SETTLE_MS, 20)) return
    const fresh = openNow().filter((h) => !this.before.has(h))
    const kids = (fresh as Array<{ spawnargs?: string[]; pid?: number; kill?: () => void }>).filter((h) => Array.isArray(h.spawnargs))
    const held = fresh.flatMap(pipeHolders)
    const message =
      `${this.testPath} left open handles ${SETTLE_MS / 1000} s after its last test: ${JSON.stringify(left())}` +
      (kids.length ? `; child processes: ${kids.map((h) => `pid ${h.pid}: ${h.spawnargs!.join(' ').slice(0, 200)}`).join(' | ')}` : '') +
      (held.length ? `; its pipes are held open by ${held.join(' | ')}` : '')
    // Throwing here replaces the file's results with this error, which would hide the failed test.
    if (!this.failed) throw new Error(message)
    process.stderr.write(`${message} (after a failed test; its child processes are stopped and its timers cleared)\n`)
    for (const k of kids) k.kill?.()
    for (const t of this.timers) clearTimeout(t)
  }
}
