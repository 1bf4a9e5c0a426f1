// `npm run demo` (scripts/demo.sh bundles and runs this): a sample job driven through the BUILT hook
// (dist/index.js) exactly as the runner drives it: one process per command, one JSON line on stdin,
// a pre-created response file, cwd = the workspace (test/helpers/fake-runner.ts). The "remote" host
// is the loopback sshd VM `demo` that scripts/demo.sh started; its containers run on this machine's
// dockerd. Each phase prints a group header, then the hook's output streamed live; at the end a
// per-phase timing table. Exit code 1 if any phase failed (cleanup_job runs regardless).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { FakeRunner, HOOK, type HookRun } from '../test/helpers/fake-runner'
import { loadVm, testImages, type VmName } from '../test/helpers/testenv'
import { createPool, poolHookConfig, poolKeyPair, type Pool } from '../test/helpers/pool-env'

const color = process.stdout.isTTY && !process.env.NO_COLOR
const paint = (code: string, s: string): string => (color ? `\x1b[${code}m${s}\x1b[0m` : s)
const bold = (s: string): string => paint('1', s)
const dim = (s: string): string => paint('2', s)
const green = (s: string): string => paint('32', s)
const red = (s: string): string => paint('31', s)

interface Phase {
  name: string
  ms: number | null
  code: number | null
  signal: string | null
  ok: boolean
  notes: string[]
}

const phases: Phase[] = []
let interrupted = false

function header(name: string, what: string): void {
  process.stdout.write(`\n${bold(`==> ${name}`)} ${dim(what)}\n`)
}

function info(line: string): void {
  process.stdout.write(`    ${line}\n`)
}

/** One hook call, its stdout/stderr streamed live to ours (start() also collects them). */
async function hook(
  name: string,
  command: string,
  runner: FakeRunner,
  args: unknown,
  opts: { state?: unknown } = {}
): Promise<{ run: HookRun; phase: Phase }> {
  const { child, done } = runner.start(command, args, { ...opts, env: hookEnv })
  child.stdout!.pipe(process.stdout, { end: false })
  child.stderr!.pipe(process.stderr, { end: false })
  const run = await done
  const phase: Phase = { name, ms: run.ms, code: run.code, signal: run.signal, ok: run.code === 0, notes: [] }
  if (run.code !== 0) phase.notes.push(run.signal ? `killed by ${run.signal}` : `exit code ${run.code}`)
  const errors = (run.stdout + run.stderr).split('\n').filter((l) => l.startsWith('::error::'))
  if (errors.length > 0) {
    phase.ok = false
    phase.notes.push(...errors.map((e) => e.slice(0, 300)))
  }
  phases.push(phase)
  process.stdout.write(dim(`    <- ${command}: exit ${run.code ?? run.signal} in ${run.ms} ms\n`))
  return { run, phase }
}

/** A demo expectation about a phase's effects; a failed one fails the phase (checked only after exit 0). */
function check(phase: Phase, ok: boolean, what: string): void {
  if (phase.code !== 0) return // the hook failed: its exit code already says so
  info(`${ok ? green('ok  ') : red('FAIL')} ${what}`)
  if (!ok) {
    phase.ok = false
    phase.notes.push(`check failed: ${what}`)
  }
}

function readHost(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    return `<${(e as NodeJS.ErrnoException).code ?? String(e)}>`
  }
}

function showFile(label: string, file: string): string {
  const text = readHost(file)
  info(`${label} (${file}):`)
  for (const l of (text === '' ? '<empty>' : text.replace(/\n$/, '')).split('\n')) info(`  | ${l}`)
  return text
}

/** What the hook gets beyond the runner's environment (the pool variant's AWS credentials for moto). */
let hookEnv: Record<string, string> = {}

/**
 * The pool variant (`npm run demo -- --pool`): an Auto Scaling group of 2 in moto, its members loopback
 * sshds (test/helpers/pool-env.ts), and a runner configured with provider.kind ec2-pool.
 */
async function demoPool(): Promise<{ pool: Pool; runner: FakeRunner; remote: string; dir: string }> {
  // This process's own SDK client (the group's stand-in) would warn about Node 20; the hook silences it itself.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  // A new folder of its own (mkdtemp, 0700): a name another local user could make first would let
  // them swap the pool's key pair, and the members' users are in group docker.
  const base = process.env.RCH_DEMO_DIR ?? '/tmp'
  mkdirSync(base, { recursive: true })
  const dir = mkdtempSync(join(base, 'rch-demo-pool-'))
  const { key, pub } = poolKeyPair(dir, 'demo-pool')
  header('pool', 'an Auto Scaling group of 2 in moto; its members are loopback sshds, each its own user')
  const pool = await createPool({
    name: `demo-pool-${process.pid}`,
    size: 2,
    clientPublicKey: pub,
    extraTags: (m) => ({ 'rch-user': m.user })
  })
  for (const m of await pool.waitReady(2, 120_000)) info(`member ${m.id}: ssh ${m.user}@127.0.0.1:${m.port}, host key pinned from its tag`)
  hookEnv = { AWS_ACCESS_KEY_ID: 'demo', AWS_SECRET_ACCESS_KEY: 'demo', AWS_EC2_METADATA_DISABLED: 'true' }
  const runner = new FakeRunner({
    name: `demo-runner-${process.pid}`,
    config: poolHookConfig(pool, key)
  })
  return { pool, runner, remote: `pool ${pool.name} (moto at ${pool.endpoint}), work root ~/rch on each member`, dir }
}

/** The member's own lease record and its history of grants and releases. */
function showLease(pool: Pool, id: string): string {
  const m = pool.member(id)
  const lease = readHost(join(m.workRoot, 'pool', 'lease')).trim()
  info(`lease record on ${id}: ${lease}`)
  for (const l of readHost(join(m.workRoot, 'pool', 'log'))
    .trim()
    .split('\n')
    .slice(-4))
    info(`  history | ${l}`)
  return lease
}

async function main(): Promise<number> {
  // Each demo run has its own VM name (scripts/demo.sh) and runner name: two runs never meet.
  const poolMode = process.env.RCH_DEMO_POOL === '1'
  const vmName = (process.env.RCH_DEMO_VM ?? 'demo') as VmName
  const vm = poolMode ? null : loadVm(vmName)
  const pooled = poolMode ? await demoPool() : null
  const runner = pooled?.runner ?? new FakeRunner({ vm: vmName, name: `demo-runner-${process.pid}` })
  process.stdout.write(`${bold('remote-container-hooks demo')}\n`)
  info(`hook:      ${HOOK}`)
  info(`remote:    ${pooled ? pooled.remote : `ssh ${vm!.user}@${vm!.host}:${vm!.port} (work root ${vm!.workRoot})`}`)
  info(`runner:    ${runner.work}`)
  info(`workspace: ${runner.workspace}`)

  let jobId: string | null = null
  try {
    // ------------------------------------------------------------ prepare_job
    writeFileSync(join(runner.workspace, 'hello-from-host.txt'), 'this file was written on the runner before prepare_job\n')
    header('prepare_job', `job container ${testImages.glibc}, service ${testImages.tiny} (alias tiny, TCP responder on 6379)`)
    const prep = await hook(
      'prepare_job',
      'prepare_job',
      runner,
      {
        container: runner.jobContainer(testImages.glibc),
        services: [
          runner.service(testImages.tiny, {
            entryPoint: 'sh',
            // split on spaces, like the runner does with a service's `options`/entrypoint args
            entryPointArgs: ['-c', '"while', 'true;', 'do', 'echo', 'PONG', '|', 'nc', '-l', '-p', '6379;', 'done"'],
            portMappings: ['6379']
          })
        ]
      },
      { state: null }
    )
    const resp = prep.run.response
    if (prep.run.code === 0 && resp?.state) runner.state = resp.state
    const member = (resp?.state?.host as { instanceId?: string } | undefined)?.instanceId
    if (pooled && member) check(prep.phase, showLease(pooled.pool, member).startsWith('held '), `${member} is leased to this job`)
    jobId = (resp?.state?.jobId as string | undefined) ?? null
    const ctx = resp?.context ?? {}
    info(`isAlpine:     ${resp?.isAlpine}`)
    info(`job id:       ${jobId}`)
    info(
      `container:    ${typeof ctx.container?.id === 'string' ? ctx.container.id.slice(0, 12) : '<none>'}` +
        (ctx.container?.network ? ` (network ${ctx.container.network})` : '')
    )
    for (const [i, s] of (Array.isArray(ctx.services) ? ctx.services : []).entries()) {
      const ports = Object.entries((s?.ports ?? {}) as Record<string, string>).map(([c, h]) => `${c} -> host ${h}`)
      info(`service ${i}:    ${typeof s?.id === 'string' ? s.id.slice(0, 12) : '<no id>'} ports ${ports.join(', ') || '<none>'}`)
    }
    check(prep.phase, resp?.isAlpine === false, 'isAlpine is false for the glibc image')
    check(
      prep.phase,
      typeof ctx.container?.id === 'string' && /^[0-9a-f]{64}$/.test(ctx.container.id),
      'job container id is a 64-hex docker id'
    )
    check(
      prep.phase,
      Array.isArray(ctx.services) && ctx.services.length === 1 && Object.keys(ctx.services[0]?.ports ?? {}).includes('6379'),
      'service publishes port 6379'
    )
    const prepared = prep.phase.ok && !!runner.state

    if (prepared && !interrupted) {
      // --------------------------------------------------------- run: step
      header('run_script_step', 'a `run:` step (bash) in the job container')
      const script = [
        'echo "uname:    $(uname -srm)"',
        'echo "hostname: $(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"',
        'echo "host file says: $(cat hello-from-host.txt)"',
        'exec 3<>/dev/tcp/tiny/6379',
        'echo "service tiny:6379 answered: $(head -1 <&3)"',
        'exec 3<&-',
        'for i in 1 2 3 4 5; do echo "streaming line $i at $(date +%T.%3N)"; sleep 0.3; done',
        'echo "greeting=hello" >> "$GITHUB_OUTPUT"',
        'mkdir -p out && echo "made in the job container ($(uname -n))" > out/from-container.txt',
        ''
      ].join('\n')
      const step = runner.scriptStep(script, { shell: 'bash' })
      const r = await hook('run: step', 'run_script_step', runner, step.args)
      const out = showFile('host-side GITHUB_OUTPUT', step.fc.files.GITHUB_OUTPUT)
      const produced = join(runner.workspace, 'out', 'from-container.txt')
      const arrived = existsSync(produced)
      info(
        `file created in the container, on the host: ${relative(runner.work, produced)} ${arrived ? `= ${JSON.stringify(readHost(produced).trim())}` : '<missing>'}`
      )
      check(
        r.phase,
        r.run.stdout.includes('this file was written on the runner before prepare_job'),
        'the workspace file written before prepare_job was synced to the remote'
      )
      check(r.phase, r.run.stdout.includes('answered: PONG'), 'the service answered PONG by its alias tiny')
      check(r.phase, out === 'greeting=hello\n', 'GITHUB_OUTPUT came back to the host')
      check(r.phase, arrived, 'the file the step created came back to the host workspace')
    }

    if (prepared && !interrupted) {
      // --------------------------------------------------------- JS action
      header('run_script_step', 'a JavaScript action (node20 from the runner externals, /__e)')
      const dir = join(runner.work, '_actions', 'demo', 'hello', 'v1', 'dist')
      mkdirSync(dir, { recursive: true })
      writeFileSync(
        join(dir, 'index.js'),
        [
          "const fs = require('fs')",
          'console.log(`hello ${process.env.INPUT_WHO} from a JS action: node ${process.version} on ${process.platform}/${process.arch}, cwd ${process.cwd()}`)',
          'fs.appendFileSync(process.env.GITHUB_OUTPUT, `node-version=${process.version}\\n`)',
          "console.log(`workspace has: ${fs.readdirSync('.').join(' ')}`)",
          ''
        ].join('\n')
      )
      const fc = runner.newFileCommands()
      const r = await hook('JS action', 'run_script_step', runner, {
        entryPointArgs: ['/__w/_actions/demo/hello/v1/dist/index.js'],
        entryPoint: '/__e/node20/bin/node',
        environmentVariables: { ...fc.env, INPUT_WHO: 'world' },
        prependPath: [],
        workingDirectory: '/__w/repo/repo'
      })
      const out = showFile('host-side GITHUB_OUTPUT', fc.files.GITHUB_OUTPUT)
      check(r.phase, r.run.stdout.includes('hello world from a JS action'), 'the action ran with its input')
      check(r.phase, /^node-version=v20\./.test(out), 'its GITHUB_OUTPUT came back to the host')
    }

    if (prepared && !interrupted) {
      // --------------------------------------------------------- container action
      header('run_container_step', `a container action (image ${testImages.tiny})`)
      const step = runner.containerStep({
        image: testImages.tiny,
        entryPoint: 'sh',
        // split on spaces, like the runner does with action.yml `args`
        args: [
          '-c',
          '"echo',
          'container',
          'action',
          'says',
          'hi',
          'to',
          '$INPUT_WHO',
          'from',
          '$(uname',
          '-n);',
          'echo',
          'workspace:',
          '$(ls',
          '/github/workspace);',
          'echo',
          'color=blue',
          '>>',
          '$GITHUB_OUTPUT"'
        ],
        env: { INPUT_WHO: 'the runner' }
      })
      const r = await hook('container action', 'run_container_step', runner, step.args)
      const out = showFile('host-side GITHUB_OUTPUT', step.fc.files.GITHUB_OUTPUT)
      check(r.phase, r.run.stdout.includes('container action says hi to the runner'), 'the action ran with its input')
      check(r.phase, out === 'color=blue\n', 'its GITHUB_OUTPUT came back to the host')
    }
  } catch (e) {
    process.stdout.write(red(`\ndemo error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`))
    phases.push({ name: 'demo driver', ms: null, code: null, signal: null, ok: false, notes: [String(e)] })
  } finally {
    // ------------------------------------------------------------- cleanup_job (always)
    header('cleanup_job', "remove the job's containers, network and remote work dir")
    try {
      const r = await hook('cleanup_job', 'cleanup_job', runner, {})
      const member = (runner.state?.host as { instanceId?: string } | undefined)?.instanceId
      if (pooled && member) check(r.phase, showLease(pooled.pool, member) === 'free clean', `${member} is back in the pool, scrubbed`)
      if (jobId) {
        const filter = `label=dev.remote-container-hooks.job=${jobId}`
        const ps = spawnSync('docker', ['ps', '-a', '--filter', filter, '--format', '{{.ID}} {{.Names}} {{.Status}}'], { encoding: 'utf8' })
        const left = ps.stdout.split('\n').filter(Boolean)
        info(`docker ps -a --filter ${filter}:`)
        for (const l of left.length ? left : ['<nothing left>']) info(`  | ${l}`)
        check(r.phase, ps.status === 0, 'docker ps ran')
        check(r.phase, ps.status === 0 && left.length === 0, 'no container of the job is left')
      } else {
        info('no job id (prepare_job did not answer one): nothing to verify')
      }
    } catch (e) {
      phases.push({ name: 'cleanup_job', ms: null, code: null, signal: null, ok: false, notes: [String(e)] })
    }
    runner.dispose()
    await pooled?.pool.close()
    // The pool's key pair: nothing of the demo stays behind.
    if (pooled) rmSync(pooled.dir, { recursive: true, force: true })
  }

  // --------------------------------------------------------------- summary
  const rows = phases.map((p) => [
    p.name,
    p.ms === null ? '-' : String(p.ms),
    p.code === null ? (p.signal ?? '-') : String(p.code),
    p.ok ? 'ok' : 'FAILED'
  ])
  const total = phases.reduce((a, p) => a + (p.ms ?? 0), 0)
  const allOk = phases.length > 0 && phases.every((p) => p.ok) && !interrupted
  rows.push(['total', String(total), '', allOk ? 'ok' : 'FAILED'])
  const head = ['phase', 'wall ms', 'exit', 'result']
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (r: string[]): string => `  ${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padStart(w[2])}  ${r[3]}`
  process.stdout.write(`\n${bold('==> timing')}\n${line(head)}\n  ${'-'.repeat(w[0] + w[1] + w[2] + w[3] + 6)}\n`)
  for (const [i, r] of rows.entries()) {
    if (i === rows.length - 1) process.stdout.write(`  ${'-'.repeat(w[0] + w[1] + w[2] + w[3] + 6)}\n`)
    process.stdout.write(line(r) + '\n')
  }
  const failed = phases.filter((p) => !p.ok)
  if (failed.length > 0 || interrupted) {
    process.stdout.write(red(`\n${interrupted ? 'interrupted; ' : ''}${failed.length} phase(s) failed:\n`))
    for (const p of failed) for (const n of p.notes.length ? p.notes : ['(no detail)']) process.stdout.write(`  ${p.name}: ${n}\n`)
    return 1
  }
  process.stdout.write(green('\nthe sample job ran end to end\n'))
  return 0
}

// Ctrl-C reaches the hook too (same process group) and it stops its remote process; we then skip the
// remaining steps but still run cleanup_job, like the runner does for a cancelled job.
process.on('SIGINT', () => {
  interrupted = true
})
process.on('SIGTERM', () => {
  interrupted = true
})

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`demo: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  }
)
