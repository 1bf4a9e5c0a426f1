// `doctor`: read-only live checks of a setup, each a pass/fail line with a fix for each failure.
// Creates and removes nothing but one temporary file inside each machine's work root (and, for a
// pool, a private local folder for the members' pinned keys, removed at the end).
import { tmpdir } from 'node:os'
import { dirname, isAbsolute } from 'node:path'
import type { Config } from '../config'
import { formatError } from '../errors'
import { resolveTools, type Tools } from '../tools'
import { agentSocket, MAX_SOCKET_PATH } from '../agent-client'
import { defaultLogFile, hookLocalRoot, localDirOf } from '../paths'
import type { OpCommand, OpIo } from './command'
import { readConfig } from './config-file'
import type { MachineOptions } from './doctor-machine'
import { opsFor } from './provider-ops'
import { rsyncFixCheck } from './doctor-rsync'
import { privateFolderState } from './doctor-folder'
import { checksTable, json, summary, type CheckResult } from './output'

const MAX_SKEW_SECONDS = 30

export const doctorCommand: OpCommand = {
  name: 'doctor',
  summary: 'read-only live checks of the configured machines and cloud account, with a fix for each failure',
  maxPositional: 1,
  help: `usage: remote-hooks doctor [FILE | --config FILE] [--json]

Checks the setup in the configuration FILE (default: $REMOTE_HOOKS_CONFIG) as the hook would use it:
  runner host   ssh and rsync found (tools.* or the system PATH); rsync 3.4.0 or later, or a
                distribution build whose changelog names the fix for CVE-2024-12086; the log
                file's folder is private to this user, or this user can make it (every hook
                command makes or checks it first)
  each machine  SSH login with the pinned host key (static: every host; ec2-pool: every ready
                member, with the host key from its tag; ec2: skipped, a machine exists only per job);
                rsync, tar, find and the docker CLI on the SSH user's PATH; clock skew (date +%s,
                more than ${MAX_SKEW_SECONDS} s fails); stream-local forwarding of remote.dockerSocket; the Docker
                Engine API version through it, and the daemon not in debug mode (it would log steps'
                env values); remote.workRoot writable
  AWS (ec2)     credentials and ec2:DescribeInstances (DryRun), the launch template, AMI, subnets
                and security groups exist, ec2:RunInstances of the first launch the hook would try (DryRun)
  AWS (pool)    credentials (DryRun), the Auto Scaling group and its members (Describe calls;
                SetDesiredCapacity is never called); autoscaling:SetInstanceProtection allowed
                (asked to lift the protection of i-00000000000000000, an instance that is none)
  fleet ledger  local: its folder is private to this user and writable, and the ledger reads (a
                folder not made yet passes when the first launch can make it); dynamodb: the table
                exists with partition key pk (string) only and the index open-index (key open,
                projection ALL), is ACTIVE, and two items read (the open-instances counter, and
                whether report's time index is in use)

The only writes: a temporary file created and removed inside each machine's work root, the
local ledger's lock file (only to convert a ledger of the first format, as the hook does), for a
pool a temporary folder of known_hosts files here (removed after) and a SetInstanceProtection call
for an instance id that no instance has (it changes nothing), and the hook's own code cache in
$TMPDIR/rch-<uid>. Nothing else is created, started, stopped or removed.

Output: a table (STATUS, CHECK, TARGET, DETAIL; "fix:" under each failure), or with --json
  {"ok": true|false, "checks": [{"check", "target", "status": "pass"|"fail"|"skip", "detail", "fix"?}]}

Exit status: 0 every check passed (skips allowed), 1 a check failed, 64 usage error.
`,
  async run(args, io) {
    const checks = await doctor(args.file ?? io.env.REMOTE_HOOKS_CONFIG, io)
    const ok = !checks.some((c) => c.status === 'fail')
    io.stdout.write(args.json ? json({ ok, checks }) : checksTable(checks))
    if (args.json) io.stderr.write(`doctor: ${summary(checks)}\n`)
    return ok ? 0 : 1
  }
}

export async function doctor(file: string | undefined, io: Pick<OpIo, 'env'>, opts: Partial<MachineOptions> = {}): Promise<CheckResult[]> {
  const { config, problems } = readConfig(file)
  if (!config)
    return [
      {
        check: 'configuration',
        target: file ?? '(REMOTE_HOOKS_CONFIG not set)',
        status: 'fail',
        detail: problems.map((p) => `${p.field}: ${p.message}`).join('; '),
        fix: 'run `remote-hooks check-config` and correct what it lists'
      }
    ]
  const mopts: MachineOptions = { connectMs: config.timeouts.connectSeconds * 1000, maxSkewSeconds: MAX_SKEW_SECONDS, ...opts }
  const checks: CheckResult[] = [
    { check: 'configuration', target: file!, status: 'pass', detail: `valid (provider ${config.provider.kind})` }
  ]
  // Judged against the runner's work folder when run as the runner: a tool the hook would refuse
  // there (one the job can write) is never started, not even for its version.
  let found: Tools | null = null
  try {
    found = resolveTools(config.tools, jobFoldersOf(io.env.RUNNER_TEMP))
  } catch (e) {
    checks.push({
      check: 'local tools',
      target: 'runner host',
      status: 'fail',
      detail: formatError(e),
      fix: "point tools.* at programs outside the runner's work folder (the hook refuses these; doctor did not run them)"
    })
  }
  if (found) checks.push(...localChecks(config, found))
  checks.push(logFileCheck(config.log.file ?? defaultLogFile(), config.log.file === undefined))
  if (found?.rsync) checks.push(await rsyncFixCheck(found.rsync, opsFor(config.provider).machinePerJob === true))
  const { ledgerChecks } = await import('./doctor-ledger')
  checks.push(...(await ledgerChecks(config.fleet)))
  const env = { runnerName: io.env.RUNNER_NAME ?? 'doctor', runnerTemp: io.env.RUNNER_TEMP, machine: mopts }
  checks.push(...(await opsFor(config.provider).doctor(config.provider, config, env)))
  return checks
}

/** No job's folders: only the tool paths themselves are judged. */
const NO_JOB = { workDir: '/nonexistent', runnerTemp: '/nonexistent' }

/** The runner's work folder and temp folder as the hook judges tools against them (RUNNER_TEMP when doctor runs as the runner). */
export function jobFoldersOf(runnerTemp: string | undefined): { workDir: string; runnerTemp: string } {
  return runnerTemp && isAbsolute(runnerTemp) && dirname(runnerTemp) !== '/' ? { workDir: dirname(runnerTemp), runnerTemp } : NO_JOB
}

/** The longest path a job's agent socket takes under this process's TMPDIR (doctor's; the runner's may differ). */
const agentSocketBytes = (): number =>
  Buffer.byteLength(agentSocket(localDirOf(hookLocalRoot(), 'f'.repeat(16), 'f'.repeat(16)), { user: '', host: '', port: 0 }))

/**
 * The log file's folder: every hook command makes or checks it before anything else, so one the
 * runner user cannot make (a folder under /var/log) fails every command of every job.
 */
export function logFileCheck(file: string, byDefault: boolean): CheckResult {
  const dir = dirname(file)
  const base = { check: 'log file', target: 'runner host' }
  const fix = byDefault
    ? 'give the runner a TMPDIR of its own, or set log.file'
    : `create the folder for the runner user: sudo install -d -o <runner user> -m 0700 ${dir} (or set log.file elsewhere)`
  try {
    const folder = privateFolderState(dir, 'set log.file', 'the first hook command')
    if (folder.ok)
      return {
        ...base,
        status: 'pass',
        detail: `${file}: folder ${folder.detail}${byDefault ? " (doctor's TMPDIR; check the runner's)" : ''}`
      }
    return { ...base, status: 'fail', detail: `${file}: folder ${dir} ${folder.detail}: every hook command would fail`, fix }
  } catch (e) {
    // The hook's own check refuses the folder or a folder above it (another user's, a symlink, open to all).
    const refused = `make ${dir} a real folder of the runner user (mode 0700) in folders only root or that user can change, or set log.file elsewhere`
    return { ...base, status: 'fail', detail: `${file}: ${formatError(e)}`, fix: refused }
  }
}

/**
 * The runner-host programs the hook starts, found as the hook finds them: rsync always (the first
 * copy); ssh only when the job runs without its agent, which otherwise carries the copy itself
 * (slower). A TMPDIR too long for the agent's socket makes every job run without it, and fails
 * every ec2-pool job (the agent renews the member's lease).
 */
export function localChecks(
  config: Pick<Config, 'tools' | 'agent' | 'provider'>,
  found = resolveTools(config.tools, NO_JOB),
  socketBytes = agentSocketBytes()
): CheckResult[] {
  const fits = socketBytes <= MAX_SOCKET_PATH
  const tooLong = `TMPDIR ${JSON.stringify(tmpdir())} makes a job's agent socket path ${socketBytes} bytes, over the ${MAX_SOCKET_PATH} a Unix socket allows (this is doctor's own TMPDIR; check the runner's)`
  const rows = (['ssh', 'rsync'] as const).map((t): CheckResult => {
    const base = { check: `local ${t}`, target: 'runner host' }
    if (found[t]) return { ...base, status: 'pass', detail: found[t] }
    if (t === 'ssh' && config.agent.enabled && fits)
      return { ...base, status: 'skip', detail: "not installed: optional, the first copy goes through the job's agent instead (slower)" }
    const why =
      t !== 'ssh'
        ? ''
        : !config.agent.enabled
          ? '; agent.enabled is false, so rsync has no other transport'
          : `; ${tooLong}, so jobs run without it and rsync has no other transport`
    return {
      ...base,
      status: 'fail',
      detail: `${t} not found (tools.${t} unset, not in the system PATH)${why}`,
      fix: `install ${t} on this runner host, or set tools.${t} to its absolute path`
    }
  })
  if (!fits && opsFor(config.provider).agentRequired)
    rows.push({
      check: 'agent socket',
      target: 'runner host',
      status: 'fail',
      detail: `${tooLong}: every ${config.provider.kind} job fails, its agent renews the machine's lease`,
      fix: 'give the runner a shorter TMPDIR (e.g. /tmp)'
    })
  return rows
}
