// Secret-safe environment for docker CLI commands run over SSH (job and service containers): values
// travel on the remote shell's stdin, never on a command line. Single-line values go into a 0600
// --env-file written from a quoted heredoc and removed right after `docker create`; multi-line
// values, which an env file cannot hold, are exported in that shell and passed as `-e NAME`.
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
    // docker's env-file reader would misread these (a leading # is a comment, whitespace is trimmed).
    if (!k || /[=\0\s]/.test(k) || k.startsWith('#')) throw new InputError(`${field}: invalid variable name ${JSON.stringify(k)}`)
    if (/[\r\n]/.test(v) && (!IDENT.test(k) || CLI_NAMES.test(k))) {
      throw new InputError(`${field}.${k}: a multi-line value needs a variable name made of letters, digits and _ (and not PATH, HOME, DOCKER_* or BUILDKIT_*)`)
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
