// The configuration as the hook reads it (config.ts's loadConfig, with the same file access), plus
// the checks of it that need no network: the pinned host keys, the runner-host tools and the work
// root's place. Shared by check-config and doctor.
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { type Config, loadConfig } from '../config'
import { ConfigError, formatError } from '../errors'
import { parseKnownHosts, pinnedKeys } from '../remote/known-hosts'
import { resolveTools } from '../tools'

export interface Problem {
  field: string
  message: string
}

/** loadConfig's file access, as the hook's. */
export const fileIo = {
  readFile: (p: string) => readFileSync(p, 'utf8'),
  canRead: (p: string) => {
    try {
      accessSync(p, constants.R_OK)
      return statSync(p).isFile() ? null : 'not a file'
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? 'unreadable'
    }
  }
}

/** `field: message` (the form of every config issue) as a record. */
export function problemOf(issue: string): Problem {
  const at = issue.indexOf(': ')
  return at < 0 ? { field: '(root)', message: issue } : { field: issue.slice(0, at), message: issue.slice(at + 2) }
}

/** An operator command's FILE: relative to where the operator runs it (the hook itself takes absolute paths only). */
export const opFile = (file: string | undefined): string | undefined => (file ? resolve(file) : file)

/** System folders no job's files belong in: a work root there is a slip of the pen. */
const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/sbin', '/sys', '/usr']

/** The config in `file` and every problem found in it (the hook's own validation first). */
export function readConfig(file: string | undefined): { config: Config | null; problems: Problem[] } {
  let config: Config
  try {
    config = loadConfig({ REMOTE_HOOKS_CONFIG: opFile(file) }, fileIo)
  } catch (e) {
    if (e instanceof ConfigError) {
      const problems = e.issues.map(problemOf)
      return { config: null, problems: [...problems, ...rawKnownHostsProblems(file, problems)] }
    }
    return { config: null, problems: [{ field: 'REMOTE_HOOKS_CONFIG', message: formatError(e) }] }
  }
  const problems: Problem[] = []
  const p = config.provider
  if (p.kind === 'static')
    p.hosts.forEach((h, i) => problems.push(...knownHostsProblems(`provider.hosts.${i}.knownHostsFile`, h.knownHostsFile, h.host, h.port)))
  try {
    // As the hook resolves them; the job's folders are not known here, so only the paths themselves are judged.
    resolveTools(config.tools, { workDir: '/nonexistent', runnerTemp: '/nonexistent' })
  } catch (e) {
    if (e instanceof ConfigError) problems.push(...e.issues.map(problemOf))
    else throw e
  }
  const root = config.remote.workRoot
  const inSystem = SYSTEM_DIRS.find((d) => root === d || root.startsWith(`${d}/`))
  if (inSystem)
    problems.push({ field: 'remote.workRoot', message: `${root} is inside the system folder ${inSystem}; give a folder of its own` })
  return { config: problems.length ? null : config, problems }
}

/**
 * The known_hosts checks of static hosts the hook's validation passed over, when it failed on
 * something else: every problem of the file at once, not one round per kind.
 */
function rawKnownHostsProblems(file: string | undefined, found: Problem[]): Problem[] {
  try {
    const text = readFileSync(file!, 'utf8')
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const raw = (file!.endsWith('.json') ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text)) as {
      provider?: { kind?: unknown; hosts?: unknown }
    }
    if (raw?.provider?.kind !== 'static' || !Array.isArray(raw.provider.hosts)) return []
    return (raw.provider.hosts as Record<string, unknown>[]).flatMap((h, i) => {
      const field = `provider.hosts.${i}`
      const port = h?.port ?? 22
      // A host whose own address or file is flagged already is not judged on it twice.
      if (found.some((p) => [field, `${field}.host`, `${field}.port`, `${field}.knownHostsFile`].includes(p.field))) return []
      if (typeof h?.host !== 'string' || typeof h.knownHostsFile !== 'string' || typeof port !== 'number') return []
      return knownHostsProblems(`${field}.knownHostsFile`, h.knownHostsFile, h.host, port)
    })
  } catch {
    return []
  }
}

/** What is wrong with a known_hosts file for host:port: unparsable lines, or no usable pinned key. */
export function knownHostsProblems(field: string, file: string, host: string, port: number): Problem[] {
  const text = readFileSync(file, 'utf8')
  const out: Problem[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (!line || line.startsWith('#')) return
    const [entry] = parseKnownHosts(line)
    if (!entry || !keyBlobMatches(entry.keyType, entry.key))
      out.push({ field, message: `${file} line ${i + 1} is not a known_hosts entry (hosts, key type, base64 key)` })
  })
  const { keys } = pinnedKeys(text, host, port)
  const name = port === 22 ? host : `[${host}]:${port}`
  if (keys.length === 0)
    out.push({
      field,
      message: `${file} pins no key for ${name}: the hook never trusts a key on first use (add the host's key, checked out of band)`
    })
  return out
}

/** An SSH public key blob starts with its own type name: a line whose blob does not is damaged. */
function keyBlobMatches(type: string, blob: Buffer): boolean {
  if (blob.length < 4) return false
  const n = blob.readUInt32BE(0)
  return n > 0 && 4 + n <= blob.length && blob.subarray(4, 4 + n).toString('latin1') === type
}
