// Secret-safe environment for docker CLI commands run over SSH: values travel on the remote shell's
// stdin, are exported there, and docker reads them by name (`-e NAME`), so no value is ever on a
// command line. Names that are not shell identifiers (INPUT_node-version) go through a 0600
// --env-file instead, which cannot hold multi-line values.
import { randomBytes } from 'node:crypto'
import { InputError } from '../errors'
import { shq } from '../remote/quote'

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
const CLI_NAMES = /^(PATH|HOME|DOCKER_.*|BUILDKIT_.*)$/

export interface EnvDelivery {
  /** Flags for docker: `-e NAME` for each variable, plus `--env-file F` when needed. */
  flags: string[]
  /** Shell text to send on stdin; the command must `eval "$(cat)"` it first. */
  stdin: string
  /** Shell snippet to run after docker (removes the env file). */
  after: string
}

export function validateEnvNames(env: Record<string, string>, field: string): void {
  for (const [k, v] of Object.entries(env)) {
    if (!k || k.includes('=') || k.includes('\0')) throw new InputError(`${field}: invalid variable name ${JSON.stringify(k)}`)
    if (/[\r\n]/.test(v) && (!IDENT.test(k) || CLI_NAMES.test(k))) {
      throw new InputError(`${field}.${k}: a multi-line value needs a variable name made of letters, digits and _ (and not PATH, HOME or DOCKER_*)`)
    }
    if (v.includes('\0')) throw new InputError(`${field}.${k}: value contains a NUL byte`)
  }
}

export function envDelivery(env: Record<string, string>, envFileDir: string): EnvDelivery {
  const flags: string[] = []
  const lines: string[] = []
  const fileLines: string[] = []
  for (const [k, v] of Object.entries(env)) {
    // The env file keeps values away from the docker CLI's own environment (DOCKER_HOST, PATH,
    // HOME of the job must not steer docker itself); only multi-line values, which an env file
    // cannot hold, are exported, and never under a name the CLI itself reads.
    if (/[\r\n]/.test(v)) {
      lines.push(`export ${k}=${shq(v)}`)
      flags.push('-e', k)
    } else fileLines.push(`${k}=${v}`)
  }
  let after = ''
  if (fileLines.length) {
    const file = `${envFileDir}/.env-${randomBytes(6).toString('hex')}`
    const delim = `RCH_EOF_${randomBytes(8).toString('hex')}`
    lines.push(`(umask 077; cat > ${shq(file)}) <<'${delim}'`, ...fileLines, delim)
    flags.push('--env-file', file)
    after = `rm -f ${shq(file)}`
  }
  return { flags, stdin: lines.join('\n') + '\n', after }
}
