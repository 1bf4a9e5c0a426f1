// remote.dockerSocket for the docker CLI on the machine: every connection that runs docker commands
// (the hook's, the agent's, doctor's and reap's) goes through here, so none of them talks to another
// daemon than the Engine API calls do (rootless Docker, or a machine with two daemons).
import { DEFAULT_DOCKER_SOCKET } from '../config'
import { shq } from './quote'
import type { Remote } from './remote'

/** Shell put before each command: DOCKER_HOST for a socket other than the default, else nothing. */
export function dockerHostPrefix(socket: string): string {
  return socket === DEFAULT_DOCKER_SOCKET ? '' : `DOCKER_HOST=${shq(`unix://${socket}`)}; export DOCKER_HOST; `
}

/** `remote` with every command run under dockerHostPrefix(socket); `close` closes it (by default the remote). */
export function withDockerHost(remote: Remote, socket: string, close = (): void => remote.close()): Remote {
  const prefix = dockerHostPrefix(socket)
  return { openExec: (c) => remote.openExec(prefix + c), openSocket: (p) => remote.openSocket(p), close }
}
