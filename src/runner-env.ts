// What the hook takes from the runner's environment, read once in main.ts (PROTOCOL.md §1.4).
import { dirname } from 'node:path'
import { InputError } from './errors'

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
  /** The variables a child helper process (the agent) must keep, e.g. RUNNER_TRACKING_ID. */
  inherit: Record<string, string>
  /** What the job is, for ownership tags on cloud resources. */
  github: { repository?: string; workflow?: string; runId?: string; runAttempt?: string; job?: string }
}

export function readRunnerEnv(env: Record<string, string | undefined>, cwd: string): RunnerEnv {
  const missing = ['RUNNER_TEMP'].filter((k) => !env[k])
  if (missing.length) throw new InputError(`${missing.join(', ')} is not set: the hook must be started by the runner`)
  const runnerTemp = env.RUNNER_TEMP!
  const inherit: Record<string, string> = {}
  for (const k of ['PATH', 'HOME', 'RUNNER_TRACKING_ID', 'TMPDIR']) if (env[k]) inherit[k] = env[k]!
  return {
    runnerName: env.RUNNER_NAME || 'runner',
    runnerTemp,
    workDir: dirname(runnerTemp),
    workspace: env.GITHUB_WORKSPACE || cwd,
    trackingId: env.RUNNER_TRACKING_ID,
    debug: env.RUNNER_DEBUG === '1',
    inherit,
    github: { repository: env.GITHUB_REPOSITORY, workflow: env.GITHUB_WORKFLOW, runId: env.GITHUB_RUN_ID, runAttempt: env.GITHUB_RUN_ATTEMPT, job: env.GITHUB_JOB }
  }
}
