// The configuration as the hook reads it (config.ts's loadConfig, with the same file access), plus
// the checks of it that need no network: the pinned host keys, the runner-host tools and the work
// root's place. Shared by check-config and doctor.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { type Config, loadConfig, systemConfigIo } from '../config'
import { ConfigError, formatError } from '../errors'
import { resolveTools } from '../tools'
import { problemOf, type Problem } from './problem'
import { opsFor, rawOpsFor } from './provider-ops'

/** An operator command's FILE: relative to where the operator runs it (the hook itself takes absolute paths only). */
export const opFile = (file: string | undefined): string | undefined => (file ? resolve(file) : file)

/** System folders no job's files belong in: a work root there is a slip of the pen. */
const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/sbin', '/sys', '/usr']

/** The config in `file` and every problem found in it (the hook's own validation first). */
export function readConfig(file: string | undefined): { config: Config | null; problems: Problem[] } {
  let config: Config
  try {
    config = loadConfig({ REMOTE_HOOKS_CONFIG: opFile(file) }, systemConfigIo)
  } catch (e) {
    if (e instanceof ConfigError) {
      const problems = e.issues.map(problemOf)
      return { config: null, problems: [...problems, ...rawFileProblems(file, problems)] }
    }
    return { config: null, problems: [{ field: 'REMOTE_HOOKS_CONFIG', message: formatError(e) }] }
  }
  const problems: Problem[] = []
  problems.push(...(opsFor(config.provider).fileProblems?.(config.provider) ?? []))
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

/** The provider section's file checks the hook's validation passed over, when it failed on something else. */
function rawFileProblems(file: string | undefined, found: Problem[]): Problem[] {
  let provider: unknown
  try {
    const text = readFileSync(file!, 'utf8')
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const raw = (file!.endsWith('.json') ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text)) as {
      provider?: unknown
    }
    provider = raw?.provider
  } catch {
    return []
  }
  if (!provider || typeof provider !== 'object') return []
  const section = provider as Readonly<Record<string, unknown>>
  return rawOpsFor(section.kind)?.rawFileProblems?.(section, found) ?? []
}
