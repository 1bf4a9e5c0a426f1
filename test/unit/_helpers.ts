// Shared helpers for the unit tests: running a real local /bin/sh, temp dirs, and bundling a
// module with esbuild so it can run in a child process (for hang-prone or multi-process cases).
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { HookState } from '../../src/state'
import type { HookContext } from '../../src/context'
import type { ContainerArgs, Mount } from '../../src/protocol'
import type { PlanFacts } from '../../src/prepare/plan'
import { ed25519KeyPair } from '../../src/providers/keys'

export const SRC = resolve(__dirname, '..', '..', 'src')

/** Runs `/bin/sh -c script sh ...args` synchronously; stdout as a Buffer. */
export function sh(
  script: string,
  opts: { args?: string[]; input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string; timeout?: number } = {}
): SpawnSyncReturns<Buffer> {
  const r = spawnSync('/bin/sh', ['-c', script, 'sh', ...(opts.args ?? [])], {
    input: opts.input,
    env: opts.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    cwd: opts.cwd,
    timeout: opts.timeout ?? 20_000
  })
  if (r.error) throw r.error
  return r
}

/** Splits NUL-terminated records (`printf '%s\0'`, `env -0`) into Buffers. */
export function splitNul(buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0) {
      out.push(buf.subarray(start, i))
      start = i + 1
    }
  }
  if (start !== buf.length) throw new Error(`trailing bytes without NUL: ${JSON.stringify(buf.subarray(start).toString())}`)
  return out
}

/** `env -0` output → name → raw value bytes. */
export function parseEnv0(buf: Buffer): Map<string, Buffer> {
  const m = new Map<string, Buffer>()
  for (const rec of splitNul(buf)) {
    const eq = rec.indexOf(0x3d)
    m.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1))
  }
  return m
}

/** The bytes `printf '%s\0' ...args` would print. */
export function nulJoined(args: readonly string[]): Buffer {
  return Buffer.concat(args.flatMap((a) => [Buffer.from(a, 'utf8'), Buffer.from([0])]))
}

const made: string[] = []
/** Sync limits no test of the sync's own logic reaches (a test of a limit overrides its one). */
export const LOOSE_SYNC_LIMITS = {
  stepBytes: 1e9,
  stepFiles: 1e6,
  jobBytes: 1e10,
  jobFiles: 1e7,
  listingEntries: 1e6,
  listingBytes: 1e7,
  fileCommandBytes: 1e9
}

export function tempDir(prefix = 'rch-unit-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  made.push(d)
  return d
}
export function cleanupTempDirs(): void {
  while (made.length) rmSync(made.pop()!, { recursive: true, force: true })
}

/** Bundles a TypeScript entry (a src module or a small script) into one CommonJS file. */
export function bundle(entry: string, outfile: string): string {
  const esbuild = require('esbuild') as typeof import('esbuild')
  esbuild.buildSync({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile, logLevel: 'silent' })
  return outfile
}

/**
 * FIFOs where a hostile job would plant them for a shell about to start: at the names built from the
 * next `count` pids (wrapping at pid_max, as the kernel does past its 300 reserved pids). Enough of
 * them that a busy machine (a CI run in parallel) does not use them all up before the shell starts.
 */
export function plantAtNextPids(names: (pid: number) => string[], count = 10_000): void {
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'))
  const last = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'))
  const pids = Array.from({ length: Math.min(count, max - 301) }, (_, i) => {
    const p = last + 1 + i
    return p < max ? p : 301 + (p - max)
  })
  // in batches: one argv of them all could pass ARG_MAX
  for (let i = 0; i < pids.length; i += 2000) execFileSync('mkfifo', pids.slice(i, i + 2000).flatMap(names))
}

/** The state a static-host prepare_job leaves for job 0123456789abcdef of owner fedcba9876543210, its job folder under `workRoot`. */
export function staticJobState(workRoot: string, localDir: string): HookState {
  return {
    jobId: '0123456789abcdef',
    owner: 'fedcba9876543210',
    host: { kind: 'static', host: 'h', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' },
    jobRoot: `${workRoot}/jobs/fedcba9876543210-0123456789abcdef`,
    hostWork: '/runner/_work',
    externals: null,
    pullRoots: ['_temp'],
    network: null,
    localDir
  } as unknown as HookState
}

/** What run_script_step reads of a hook's context (no agent, no step shell, no early push), its output into this process's. */
export function scriptStepCtx(): HookContext {
  return {
    config: {
      remote: { workRoot: '/srv/rch', dockerSocket: '/var/run/docker.sock' },
      sync: { excludeFromPullBack: [], limits: {}, deltaListing: false, earlyPush: false },
      agent: { warmShell: false },
      timeouts: { cancelGraceSeconds: 5 }
    },
    runner: { runnerName: 'r', workDir: '/runner/_work', workspace: '/runner/_work/repo/repo' },
    log: { progress: () => undefined, debug: () => undefined, warn: () => undefined },
    signal: new AbortController().signal,
    stdout: process.stdout,
    stderr: process.stderr
  } as unknown as HookContext
}

/** What run_container_step reads of a hook's context (the handler with stand-ins for the session, sync and docker). */
export function containerStepCtx(signal = new AbortController().signal): HookContext {
  return {
    config: {
      images: { pullPolicy: 'missing', pullTimeoutSeconds: 60 },
      remote: { workRoot: '/srv/rch', dockerSocket: '/var/run/docker.sock' },
      sync: { excludeFromPullBack: [], limits: {}, deltaListing: false }
    },
    runner: { runnerName: 'r', workDir: '/runner/_work', workspace: '/runner/_work/repo/repo' },
    log: {
      progress: () => undefined,
      debug: () => undefined,
      addSecret: () => undefined,
      warn: () => undefined,
      group: (_title: string, fn: () => unknown) => fn()
    },
    signal,
    stdout: process.stdout,
    stderr: process.stderr
  } as unknown as HookContext
}

/** What starting the job's agent reads of a hook's context, with a private local root in a temp dir; `local` is the job's folder. */
export function agentStartCtx(hookPath: string, nodePath = process.execPath): { ctx: HookContext; local: string } {
  const root = join(tempDir(), 'rch')
  mkdirSync(root, { mode: 0o700 })
  const ctx = {
    nodePath,
    hookPath,
    localRoot: root,
    signal: new AbortController().signal,
    log: { warn: () => undefined, progress: () => undefined, debug: () => undefined },
    runner: { home: '', trackingId: '' },
    config: { agent: { enabled: true, idleSeconds: 60, lowMemory: false }, timeouts: { connectSeconds: 2 } }
  } as unknown as HookContext
  return { ctx, local: join(root, 'job') }
}

/** A mount as the runner sends it. */
export const runnerMount = (sourceVolumePath: string | null, targetVolumePath: string, readOnly = false): Mount => ({
  userProvidedValue: null,
  sourceVolumePath,
  targetVolumePath,
  readOnly
})

/** A container action's args (`alpine:3`, the runner's workspace at /github/workspace, the Docker socket); `over` replaces fields. */
export function containerActionArgs(over: Partial<ContainerArgs> = {}): ContainerArgs {
  return {
    image: 'alpine:3',
    dockerfile: null,
    entryPointArgs: [],
    entryPoint: null,
    workingDirectory: '/github/workspace',
    createOptions: null,
    registry: null,
    environmentVariables: {},
    portMappings: [],
    systemMountVolumes: [
      runnerMount('/runner/_work/repo/repo', '/github/workspace'),
      runnerMount('/var/run/docker.sock', '/var/run/docker.sock')
    ],
    userMountVolumes: [],
    contextName: null,
    ...over
  }
}

/** prepare_job's plan facts for job fedcba9876543210 of owner 0123456789abcdef, `_work` at /home/runner/_work. */
export const planFacts = (over: Partial<PlanFacts> = {}): PlanFacts => ({
  hostWork: '/home/runner/_work',
  workspace: '/home/runner/_work/repo/repo',
  runnerName: 'runner-1',
  workRoot: '/srv/rch',
  dockerSocket: '/var/run/docker.sock',
  toolCache: false,
  owner: '0123456789abcdef',
  jobId: 'fedcba9876543210',
  externalsVersion: () => 'aaaaaaaaaaaaaaaa',
  ...over
})

/**
 * A configuration file in `dir` with one static host on loopback (its key made here, its known_hosts
 * file empty) and `more` beside `provider`; its path. For tests that load a valid config and never connect.
 */
export function staticConfigFile(dir: string, more: Record<string, unknown> = {}): string {
  const key = join(dir, 'key')
  writeFileSync(key, ed25519KeyPair().private, { mode: 0o600 })
  writeFileSync(join(dir, 'known_hosts'), '')
  const file = join(dir, 'hooks.json')
  const host = { host: '127.0.0.1', port: 22, user: 'u', identityFile: key, knownHostsFile: join(dir, 'known_hosts') }
  writeFileSync(file, JSON.stringify({ provider: { kind: 'static', hosts: [host] }, remote: { workRoot: '/tmp/w' }, ...more }))
  return file
}
