// What the hook takes from the runner's environment, read once in main.ts.
import { dirname } from 'node:path'
import { InputError } from './errors'
import { isNormalAbsolute } from './input-rules'
import { statedOwners } from './labels'

/**
 * Every variable the hook reads from its environment to run a step (config file, runner facts,
 * ownership tags), and so all that a step request sends to the job's agent: the hook's other
 * variables (cloud credentials, the job's PATH) never leave the hook process.
 */
export const STEP_ENV_NAMES = [
  'REMOTE_HOOKS_CONFIG',
  'RUNNER_TEMP',
  'RUNNER_NAME',
  'RUNNER_DEBUG',
  'RUNNER_TRACKING_ID',
  'GITHUB_WORKSPACE',
  'GITHUB_REPOSITORY',
  'GITHUB_WORKFLOW',
  'GITHUB_WORKFLOW_REF',
  'GITHUB_RUN_ID',
  'GITHUB_RUN_ATTEMPT',
  'GITHUB_JOB'
] as const

/** The allow-listed part of an environment (used by the hook to send, and by the agent to receive). */
export function stepEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of STEP_ENV_NAMES) if (typeof env[k] === 'string') out[k] = env[k]!
  return out
}

export interface RunnerEnv {
  runnerName: string
  /** Host `_work/_temp`. */
  runnerTemp: string
  /** Host `_work`. */
  workDir: string
  /** Host `_work/<repo>/<repo>` (the hook's cwd). */
  workspace: string
  trackingId: string | undefined
  debug: boolean
  /** The hook user's HOME, for the agent's environment. */
  home: string | undefined
  /**
   * What the job is, for ownership tags on cloud resources and the fleet ledger. `workflow` is the
   * workflow's file (workflowOf), else its name.
   */
  github: { repository?: string; workflow?: string; runId?: string; runAttempt?: string; job?: string }
}

/**
 * The workflow as costs are counted by it: its file, from `GITHUB_WORKFLOW_REF`
 * (`owner/repo/.github/workflows/ci.yml@refs/...`), without the ref and, for a file of the job's own
 * repository, without the repository. A pull request chooses its workflow's name (`GITHUB_WORKFLOW`)
 * and could take another workflow's; its runs count under another workflow's file only if it edits
 * that file. A file's name may hold spaces and `@` (the longest name before the ref is the file's:
 * a ref has a `/`, a file name none). Undefined when the ref names no workflow file (an older
 * runner, a dynamic workflow): the name is used then (see workflowNamed).
 */
export function workflowOf(ref: string | undefined, repository: string | undefined): string | undefined {
  const m = /^([^/\s]+\/[^/\s]+)\/(\.github\/workflows\/[^/]+\.ya?ml)@\S+$/.exec(ref ?? '')
  if (!m) return undefined
  return m[1] === repository ? m[2] : `${m[1]}/${m[2]}`
}

/** A workflow's name where no file is known, marked when it reads like a file so it never counts as one. */
export const workflowNamed = (name: string | undefined): string | undefined =>
  name !== undefined && /(^|\/)\.github\/workflows\//.test(name) ? `name:${name}` : name

/** The runner's name as the hook knows it (the owner id, and so the agent's socket, derive from it). */
export const runnerNameOf = (env: Record<string, string | undefined>): string => env.RUNNER_NAME || 'runner'

/** The owner ids a step's state may carry here (labels.ts statedOwners); none without RUNNER_TEMP. */
export function stepOwnersOf(env: Record<string, string | undefined>): string[] {
  return env.RUNNER_TEMP ? statedOwners(runnerNameOf(env), dirname(env.RUNNER_TEMP)) : []
}

export function readRunnerEnv(env: Record<string, string | undefined>, cwd: string): RunnerEnv {
  const missing = ['RUNNER_TEMP'].filter((k) => !env[k])
  if (missing.length) throw new InputError(`${missing.join(', ')} is not set: the hook must be started by the runner`)
  const runnerTemp = env.RUNNER_TEMP!
  const workDir = dirname(runnerTemp)
  // The state's hostWork rule: a `_work` that is not would be set up by prepare_job and then refused
  // by every step (and `/` would make the whole file system the job's `_work`).
  if (!isNormalAbsolute(workDir) || workDir === '/')
    throw new InputError(
      `RUNNER_TEMP: ${JSON.stringify(runnerTemp.slice(0, 200))} is not <_work>/_temp with <_work> a normalised absolute folder other than /`
    )
  return {
    runnerName: runnerNameOf(env),
    runnerTemp,
    workDir,
    workspace: env.GITHUB_WORKSPACE || cwd,
    trackingId: env.RUNNER_TRACKING_ID,
    debug: env.RUNNER_DEBUG === '1',
    home: env.HOME,
    github: {
      repository: env.GITHUB_REPOSITORY,
      workflow: workflowOf(env.GITHUB_WORKFLOW_REF, env.GITHUB_REPOSITORY) ?? workflowNamed(env.GITHUB_WORKFLOW),
      runId: env.GITHUB_RUN_ID,
      runAttempt: env.GITHUB_RUN_ATTEMPT,
      job: env.GITHUB_JOB
    }
  }
}
