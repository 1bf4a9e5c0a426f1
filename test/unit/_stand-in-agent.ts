// A job agent for tests of its socket side: on a temporary socket, its SSH connection the stand-in
// of _ssh-stand-in.ts (the test mocks src/remote/ssh with it). Resolves once the agent is ready,
// with what the agent has logged so far (and logs later).
import { join } from 'node:path'
import { runAgent, type AgentKeep, type RunHandler } from '../../src/remote/agent'
import { tempDir } from './_helpers'

export async function standInAgent(
  onRun: RunHandler,
  keep?: AgentKeep
): Promise<{ socketPath: string; agent: Promise<number>; logged: string[] }> {
  const socketPath = join(tempDir(), 'agent.sock')
  const logged: string[] = []
  let agent!: Promise<number>
  await new Promise<void>((ready) => {
    agent = runAgent(
      {
        socketPath,
        connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
        connectTimeoutMs: 1000,
        idleMs: 300,
        ...(keep ? { keep } : {})
      },
      (m) => void (logged.push(m), m.startsWith('agent ready') && ready()),
      onRun
    )
  })
  return { socketPath, agent, logged }
}
