// A RemoteDocker.ensureImage stand-in for the masking tests: what a VM's docker (the job's) prints
// about a pull with credentials, the password plainly and as a registry quoting back the
// Authorization header docker sent it, and then a failure that names it.
import { RemoteCommandError } from '../../src/errors'

export async function echoingPull(
  _image: string,
  _policy: string,
  reg: { username: string; password: string },
  _configDir: string,
  onLine: (l: string) => void
): Promise<never> {
  onLine(`login as octo with ${reg.password}`)
  onLine(`unauthorized: basic ${Buffer.from(`${reg.username}:${reg.password}`).toString('base64')} refused`)
  throw new RemoteCommandError('docker pull ghcr.io/o/a:1', 1, `denied: ${reg.password}`)
}
