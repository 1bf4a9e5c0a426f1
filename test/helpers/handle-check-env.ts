// The test environment of every project: node's, plus a check that each test file leaves the Jest
// worker with no more open handles (processes, sockets, servers, ref'd timers…) than it found.
// A handle left behind keeps the worker alive after the run, and Jest then force-exits it with
// "A worker process has failed to exit gracefully"; here the file that left it fails instead,
// naming what it left.
import { TestEnvironment } from 'jest-environment-node'
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment'
import { waitUntil } from './wait'

type Tally = Record<string, number>

function tally(): Tally {
  const t: Tally = {}
  for (const r of process.getActiveResourcesInfo()) t[r] = (t[r] ?? 0) + 1
  return t
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

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context)
    this.testPath = context.testPath
  }

  override async setup(): Promise<void> {
    await super.setup()
    this.before = tally()
  }

  override async teardown(): Promise<void> {
    await super.teardown()
    if (await waitUntil(() => Object.keys(excess(this.before, tally())).length === 0, SETTLE_MS, 20)) return
    const left = excess(this.before, tally())
    const children = ((process as any)._getActiveHandles() as Array<{ spawnargs?: string[]; pid?: number }>)
      .filter((h) => Array.isArray(h.spawnargs))
      .map((h) => `pid ${h.pid}: ${h.spawnargs!.join(' ').slice(0, 200)}`)
    throw new Error(
      `${this.testPath} left open handles ${SETTLE_MS / 1000} s after its last test: ${JSON.stringify(left)}` +
        (children.length ? `; child processes: ${children.join(' | ')}` : '')
    )
  }
}
