// A HookContext for running a handler in a unit test: a private local root and a runner `_work`
// (with `_temp`) in a temp dir, the config parsed as the hook parses it. Apart from _helpers.ts,
// which most tests load: this one loads the config schema.
import { chmodSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigSchema } from '../../src/config'
import type { HookContext } from '../../src/context'
import type { Log } from '../../src/log'
import { tempDir } from './_helpers'

export function unitHookContext(o: { provider: object; log: Log; debug?: boolean; signal?: AbortSignal }): HookContext {
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
    log: o.log,
    signal: o.signal ?? new AbortController().signal,
    hookPath: '/nonexistent/hook.js',
    nodePath: '/nonexistent/node',
    stdout: process.stdout,
    stderr: process.stderr,
    localRoot
  }
}
