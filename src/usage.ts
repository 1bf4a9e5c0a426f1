// The text of `--help`: enough for an operator at a shell to know what this file is and where to read on.
export function usage(version: string): string {
  return `remote-container-hooks ${version}

Container hooks for a self-hosted GitHub Actions runner: the job's containers (the job container,
its services and container steps) run on another machine reached over SSH, not on the runner host.

How the runner calls it
  Set ACTIONS_RUNNER_CONTAINER_HOOKS=/path/to/index.js in the runner's .env. For each container
  command of a job the runner starts \`node index.js\` with one JSON request on stdin
  ({"command": "prepare_job" | "run_script_step" | "run_container_step" | "cleanup_job",
  "responseFile", "args", "state"}) and reads the JSON response file the hook writes.

Environment
  REMOTE_HOOKS_CONFIG   the YAML or JSON configuration file (required)
  RUNNER_TEMP, RUNNER_NAME, GITHUB_WORKSPACE, RUNNER_TRACKING_ID, GITHUB_REPOSITORY,
  GITHUB_WORKFLOW, GITHUB_WORKFLOW_REF, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT, GITHUB_JOB
                        set by the runner: the job's folders and what the job is
  RUNNER_DEBUG=1        detailed lines on the step log too (::debug::) and a debug-level log file
  TMPDIR                where the private per-user folder (agent sockets, keys, code cache) and
                        the default log file (remote-container-hooks-<uid>/hook.log) go
  AWS_*                 credentials and profile for ec2, ec2-pool and a dynamodb fleet ledger (the
                        AWS SDK's usual chain)

Operator commands (run by hand or from scripts; \`remote-hooks\` where the README's short name is installed)
  node index.js check-config [FILE]   validate a configuration offline (no network); exit 0, or 78
  node index.js doctor [FILE]         read-only live checks with a fix for each failure; exit 0 or 1
  node index.js reap [FILE] [--dry-run]  remove what dead jobs left, settle their reservations (two passes)
  node index.js report [FILE] [--since T] [--until T] [--by repository|workflow|runner|day]
                                      jobs, instance-hours, cost, acquire/boot times from the fleet ledger
  node index.js index-ledger [FILE]   once, for a DynamoDB fleet ledger: report then reads only its range
  Each takes --help and --json (a human table by default; report also --csv and --openmetrics).
  FILE (or --config FILE) defaults to $REMOTE_HOOKS_CONFIG.

Options
  --help      this text
  --version   the version

Documentation
  README.md and docs/ (configuration.md, architecture.md, operations.md, security.md, protocol.md) in the
  project's repository.
`
}
