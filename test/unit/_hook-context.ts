// A HookContext for running a handler in a unit test: a private local root and a runner `_work`
// (with `_temp`) in a temp dir, the config parsed as the hook parses it. Apart from _helpers.ts,
// which most tests load: this one loads the config schema.
import { chmodSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigSchema } from '../../src/config'
import type { HookContext } from '../../src/context'
import type { Log } from '../../src/log'
import { tempDir } from './_helpers'

/** A log that says nothing and runs a group's work inside it. */
export function quietLog(): Log {
  const quiet = (): void => undefined
  return {
    progress: quiet,
    warn: quiet,
    debug: quiet,
    failure: quiet,
    addSecret: quiet,
    group: (_t: string, fn: () => unknown) => fn()
  } as unknown as Log
}

/** The ec2 provider block the handler tests use (no call reaches EC2 in them). */
export const UNIT_EC2 = { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-0123' }

export function unitHookContext(o: {
  provider: object
  log?: Log
  debug?: boolean
  signal?: AbortSignal
  respond?: HookContext['respond']
}): HookContext {
  const dir = tempDir()
  const localRoot = join(dir, 'local')
  mkdirSync(localRoot)
  chmodSync(localRoot, 0o700)
  const work = join(dir, '_work')
  mkdirSync(join(work, '_temp'), { recursive: true })
  return {
    config: ConfigSchema.parse({ provider: o.provider, remote: { workRoot: '/srv/rch' }, agent: { enabled: false } }),
    runner: {
      runnerName: 'runner-1',
      runnerTemp: join(work, '_temp'),
      workDir: work,
      workspace: join(work, 'r', 'r'),
      trackingId: undefined,
      debug: o.debug ?? false,
      home: undefined,
      github: {}
    },
    log: o.log ?? quietLog(),
    signal: o.signal ?? new AbortController().signal,
    hookPath: '/nonexistent/hook.js',
    nodePath: '/nonexistent/node',
    stdout: process.stdout,
    stderr: process.stderr,
    localRoot,
    respond: o.respond ?? (async () => undefined)
  }
}
