// The build id of a built hook (what names its agent sockets), read from its --version line: code
// under test that computes a socket name from src/ gets "src", not the id of dist/index.js.
import { execFileSync } from 'node:child_process'
import { agentSocket } from '../../src/agent-client'
import { HOOK } from './fake-runner'

const ids = new Map<string, string>()

export function builtId(hook = HOOK): string {
  let id = ids.get(hook)
  if (!id) {
    const out = execFileSync(process.execPath, [hook, '--version'], { encoding: 'utf8' })
    id = /\(build ([0-9a-f]{12})\)$/m.exec(out)?.[1]
    if (!id) throw new Error(`no build id in ${hook} --version: ${out}`)
    ids.set(hook, id)
  }
  return id
}

/** The agent socket a built hook uses for this job folder and host. */
export const builtAgentSocket = (localDir: string, host: { user: string; host: string; port: number }, hook = HOOK): string =>
  agentSocket(localDir, host, builtId(hook))
