// Secret-safe environment for docker CLI commands run over SSH (job and service containers): values
// travel on the remote shell's stdin, never on a command line. Single-line values go into a 0600
// --env-file written from a quoted heredoc and removed right after `docker create`; multi-line
// values, which an env file cannot hold, are exported in that shell and passed as `-e NAME`. That
// shell starts from an allow-listed environment (cliShell), so only those exported names reach the
// docker CLI, and names that would steer the loader, the shell or the CLI are refused for them.
import { randomBytes } from 'node:crypto'
import { InputError } from '../errors'
import { shq } from '../remote/quote'

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
/** "=", NUL, and whitespace as JS (\s, with U+FEFF, the BOM docker strips) or Go (unicode.IsSpace, with U+0085) knows it. */
const SPACE_OR_EQ = /[=\0\s\p{White_Space}]/u
/** docker reads --env-file with a line scanner that stops at 64 KiB: longer values are exported too. */
const ENV_FILE_LINE_MAX = 60_000
/** Linux refuses a single environment string over 128 KiB (MAX_ARG_STRLEN) when the CLI is started. */
const EXPORT_MAX = 128 * 1024 - 1

/** Values docker cannot read from the env file: they reach it as `-e NAME` from its environment. */
const exported = (k: string, v: string): boolean => /[\r\n]/.test(v) || Buffer.byteLength(`${k}=${v}`) > ENV_FILE_LINE_MAX
/**
 * Names a multi-line value cannot have: they would be exported into the shell that runs the docker
 * CLI, and these steer the dynamic loader and libc (LD_*, GCONV_PATH, MALLOC_*, resolver files…),
 * the shell (IFS, ENV, PS4…), or the CLI and its Go runtime (DOCKER_*, proxies, OTEL_*, GODEBUG…).
 */
const STEERING =
  /^(LD_\w*|GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|MALLOC_\w*|NLSPATH|LOCPATH|LANG|LANGUAGE|LC_\w*|TZ|TZDIR|HOSTALIASES|RES_OPTIONS|LOCALDOMAIN|TMPDIR|TERMINFO\w*|BASH_ENV|ENV|BASH_FUNC_\w*|IFS|CDPATH|SHELLOPTS|BASHOPTS|POSIXLY_CORRECT|PS[1-4]|OPTIND|SHELL|PATH|HOME|USER|LOGNAME|XDG_\w*|DOCKER_\w*|BUILDKIT_\w*|OTEL_\w*|GODEBUG|GOTRACEBACK|GOGC|GOMEMLIMIT|GOMAXPROCS|GORACE|GOCOVERDIR|SSL_CERT_\w*|(HTTPS?|FTP|ALL|NO)_PROXY|(https?|ftp|all|no)_proxy)$/

/** Shell variables of the SSH session the docker CLI may keep: the operator's, never the job's. */
const CLI_KEEP = ['PATH', 'HOME', 'DOCKER_HOST', 'DOCKER_CONFIG', 'DOCKER_CONTEXT']

/**
 * Wraps `inner` (shell text) to run in /bin/sh started from an empty environment plus CLI_KEEP of
 * the SSH session: nothing the session or the job set elsewhere steers the docker CLI.
 */
export function cliShell(inner: string): string {
  const keep = CLI_KEEP.map((k) => `\${${k}+"${k}=$${k}"}`).join(' ')
  return `exec env -i ${keep} /bin/sh -c ${shq(inner)}`
}

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
    // Its whitespace is Go's unicode.IsSpace, which also holds U+0085 (NEL, not in JS's \s): a name
    // of only that is trimmed away, and docker then refuses the line by quoting it, value and all.
    if (!k || SPACE_OR_EQ.test(k) || k.startsWith('#')) throw new InputError(`${field}: invalid variable name ${JSON.stringify(k)}`)
    if (exported(k, v) && (!IDENT.test(k) || STEERING.test(k))) {
      throw new InputError(
        `${field}.${k}: a ${/[\r\n]/.test(v) ? 'multi-line' : 'very long'} value needs a variable name made of letters, digits and _ that does not steer the loader, shell or docker CLI (not LD_*, IFS, ENV, PATH, HOME, DOCKER_*, *_PROXY and the like)`
      )
    }
    if (Buffer.byteLength(`${k}=${v}`) > EXPORT_MAX)
      throw new InputError(
        `${field}.${k}: the value is longer than the ${EXPORT_MAX + 1} bytes the docker CLI can take for a job or service container`
      )
    if (v.includes('\0')) throw new InputError(`${field}.${k}: value contains a NUL byte`)
  }
}

export function envDelivery(env: Record<string, string>, envFileDir: string, field = 'environmentVariables'): EnvDelivery {
  validateEnvNames(env, field)
  const flags: string[] = []
  const lines: string[] = []
  const fileLines: string[] = []
  for (const [k, v] of Object.entries(env)) {
    // The env file keeps values away from the docker CLI's own environment (DOCKER_HOST, PATH,
    // HOME of the job must not steer docker itself); only multi-line values, which an env file
    // cannot hold, are exported, and never under a name the CLI itself reads.
    if (exported(k, v)) {
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
