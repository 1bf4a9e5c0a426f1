// The runner-host programs the hook and its agent start (rsync, ssh; `tar` is no longer started,
// its key stays valid), found once by absolute path. The runner prepends the job's GITHUB_PATH
// entries to the hook's PATH, so a job could put its own `rsync` first: the inherited PATH is never
// searched, and every spawn gets TOOL_ENV instead of the hook's environment.
import { accessSync, constants, realpathSync, statSync } from 'node:fs'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { ConfigError, HookError } from './errors'
import { isUnder } from './paths'

/** The only folders searched for a tool that the config does not name. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** The whole environment of every program the hook spawns on the runner host (nothing of the hook's own). */
export const TOOL_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: SYSTEM_PATH, LANG: 'C' })

const TOOL_NAMES = ['tar', 'rsync', 'ssh'] as const
export type ToolName = (typeof TOOL_NAMES)[number]
/** Absolute paths; null when the tool is not installed (an error only where it is needed). */
export type Tools = Readonly<Record<ToolName, string | null>>

/** The folders of the runner that the job writes to: nothing in them may be run by the hook. */
export interface JobFolders {
  /** `_work` (dirname of RUNNER_TEMP) */
  workDir: string
  runnerTemp: string
}

/** `p` with its symlinks resolved as far as it exists (a folder not made yet is under its parent's real place). */
function realOr(p: string): string {
  const tail: string[] = []
  for (let at = resolve(p); ; at = dirname(at)) {
    try {
      return join(realpathSync(at), ...tail.reverse())
    } catch {
      if (at === '/') return resolve(p)
      tail.push(basename(at))
    }
  }
}

/**
 * The runner's work folder (or its temp folder) `path` is in, as written or after resolving
 * symlinks (on both sides), or null: the job writes there, and every step copies parts of it to
 * the VM, so nothing the hook runs or keeps may be there.
 */
export function inJobFolders(path: string, folders: JobFolders): string | null {
  const dirs = [folders.workDir, folders.runnerTemp].flatMap((d) => [resolve(d), realOr(d)])
  const real = realOr(path)
  for (const d of dirs) if (isUnder(resolve(path), d) || isUnder(real, d)) return d
  return null
}

/** Why `path` must not be run, or null. */
function refusal(path: string, folders: JobFolders): string | null {
  if (!isAbsolute(path)) return 'must be an absolute path'
  const inside = inJobFolders(path, folders)
  if (inside) return `${path} is inside the runner's work folder ${inside}, which the job can write`
  try {
    accessSync(path, constants.X_OK)
    if (!statSync(path).isFile()) return `${path} is not a file`
  } catch (e) {
    return `${path} is not an executable file (${(e as NodeJS.ErrnoException).code ?? 'unusable'})`
  }
  return null
}

function searchSystemPath(name: string): string | null {
  for (const dir of SYSTEM_PATH.split(':')) {
    const p = `${dir}/${name}`
    try {
      accessSync(p, constants.X_OK)
      if (statSync(p).isFile()) return p
    } catch {
      // not in this folder
    }
  }
  return null
}

/**
 * Each tool from the config's `tools.<name>` (checked) or else from SYSTEM_PATH. A configured path
 * that is relative, unusable or inside the job's folders is a config error naming the key; a
 * system one that resolves into them is ignored.
 */
export function resolveTools(configured: Partial<Record<ToolName, string>>, folders: JobFolders): Tools {
  const issues: string[] = []
  const out = {} as Record<ToolName, string | null>
  for (const name of TOOL_NAMES) {
    const given = configured[name]
    if (given !== undefined) {
      const why = refusal(given, folders)
      if (why) issues.push(`tools.${name}: ${why}`)
      out[name] = given
      continue
    }
    const found = searchSystemPath(name)
    out[name] = found && !refusal(found, folders) ? found : null
  }
  if (issues.length) throw new ConfigError(issues)
  return Object.freeze(out)
}

// Set once per command from the validated config (main.ts); until then only SYSTEM_PATH is used.
let active: Tools | null = null

export function useTools(t: Tools): void {
  active = t
}

/** The resolved tools of this process. */
export function tools(): Tools {
  return (active ??= resolveTools({}, { workDir: '/nonexistent', runnerTemp: '/nonexistent' }))
}

/** The absolute path of a tool this command cannot do without. */
export function requireTool(name: ToolName): string {
  const p = tools()[name]
  if (!p)
    throw new HookError(
      `${name} is not installed on the runner host (looked in ${SYSTEM_PATH}; set tools.${name} in the configuration to its absolute path)`
    )
  return p
}
