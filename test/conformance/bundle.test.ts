// The loader in dist/index.js: the core runs as plain JavaScript from the file itself, so an added
// line or CRLF line endings do not break it; any failure while loading is one `::error::` and exit
// 70; stack frames in the core name src/ files and lines; the lazy libraries' V8 code cache lives in
// a private folder of the runner user, is never taken from a folder others can write, and old
// versions' caches do not pile up.
import { execFileSync, spawnSync } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { brotliDecompressSync } from 'node:zlib'
import { join } from 'node:path'
import { FakeRunner, HOOK } from '../helpers/fake-runner'
import { repoRoot, testImages } from '../helpers/testenv'
import { testVm } from '../helpers/conformance'

const uid = process.getuid!()
let tmp: string
let bundle: string

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'rch-loader-'))
  const alone = join(tmp, 'alone')
  mkdirSync(alone)
  bundle = join(alone, 'index.js')
  copyFileSync(HOOK, bundle)
})
afterEach(() => rmSync(tmp, { recursive: true, force: true }))

const env = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, TMPDIR: tmp })
const version = (file = bundle): string => execFileSync(process.execPath, [file, '--version'], { env: env(), encoding: 'utf8' })
const cacheDir = (): string => join(tmp, `rch-${uid}`)

/** prepare_job without a container: answered before connecting, but the key check loads ssh2 from the file. */
function quick(file = bundle, nodeArgs: string[] = []): { code: number | null; stdout: string; stderr: string } {
  const vm = testVm()
  const dir = mkdtempSync(join(tmp, 'quick-'))
  // The runner's work folder apart from TMPDIR (the hook refuses a TMPDIR inside it).
  const temp = join(dir, '_work', '_temp')
  mkdirSync(temp, { recursive: true })
  const responseFile = join(temp, 'response.json')
  const config = join(dir, 'hooks.json')
  writeFileSync(responseFile, '')
  writeFileSync(
    config,
    JSON.stringify({
      provider: {
        kind: 'static',
        acquireTimeoutSeconds: 0,
        hosts: [{ host: '127.0.0.1', port: 9, user: 'nobody', identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile }]
      },
      remote: { workRoot: '/tmp/x' }
    })
  )
  const input = JSON.stringify({ command: 'prepare_job', responseFile, args: { container: null, services: [] }, state: null })
  const r = spawnSync(process.execPath, [...nodeArgs, file], {
    input,
    env: { ...env(), RUNNER_TEMP: temp, REMOTE_HOOKS_CONFIG: config, RUNNER_NAME: 'loader-test' },
    encoding: 'utf8'
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * A stack trace taken while the hook writes `--version` (or what `args` ask for): its first src/
 * frame and that source line.
 */
function versionFrame(file = bundle, args = ['--version']): { frame: string; source: string } {
  const probe = join(tmp, 'probe.js')
  writeFileSync(
    probe,
    "const w = process.stdout.write.bind(process.stdout)\nprocess.stdout.write = (c, ...r) => (process.stderr.write('PROBE ' + JSON.stringify(new Error('probe').stack) + '\\n'), w(c, ...r))\n"
  )
  const r = spawnSync(process.execPath, ['-r', probe, file, ...args], { env: env(), encoding: 'utf8' })
  expect(r.status).toBe(0)
  const line = r.stderr.split('\n').find((l) => l.startsWith('PROBE '))
  expect(line).toBeDefined() // positive control: the probe ran inside the hook's write
  const stack: string = JSON.parse(line!.slice(6))
  expect(stack).not.toContain('#core')
  // [0] the message, [1] the probe, [2] the core's frame that wrote (frames of the loader itself
  // further down rightly name index.js)
  const m = /\((src\/[\w/.-]+\.ts):(\d+):(\d+)\)$/.exec(stack.split('\n')[2])
  expect({ stack, m }).toEqual({ stack, m: expect.anything() })
  const source = readFileSync(join(repoRoot, m![1]), 'utf8').split('\n')[Number(m![2]) - 1]
  return { frame: m![0], source }
}

/** A preload that runs `code` right after the first chunk is decompressed, then prints CHANGED to stderr. */
function afterFirstChunk(code: string): string {
  const file = join(tmp, `after-first-chunk-${Math.random().toString(36).slice(2)}.js`)
  writeFileSync(
    file,
    `const z = require('zlib'); const d = z.brotliDecompressSync; let n = 0; z.brotliDecompressSync = function (...a) {\n` +
      `  const r = d.apply(this, a); if (n++ === 0) { ${code}; process.stderr.write('CHANGED\\n') }\n` +
      `  return r }\n`
  )
  return file
}

/** The bundle's text with one base64 letter of chunk `id` changed: same length, every chunk at its offset. */
function withChunkChanged(text: string, id: string): string {
  const at = text.indexOf(`\n${id} `, text.lastIndexOf('/*RCH-CHUNKS'))
  expect(at).toBeGreaterThan(0)
  const p = at + id.length + 2 + 1000
  const c = text[p] === 'A' ? 'B' : 'A'
  const out = text.slice(0, p) + c + text.slice(p + 1)
  expect(out.length).toBe(text.length)
  return out
}

/** A preload that notes on stderr each library the loader compiles, and whether with a code cache. */
function spy(): string {
  const file = join(tmp, 'spy.js')
  writeFileSync(
    file,
    "const vm = require('vm'), S = vm.Script\nvm.Script = class extends S { constructor(src, o) { super(src, o); process.stderr.write('COMPILED ' + o.filename + ' cache=' + !!o.cachedData + '\\n') } }\n"
  )
  return file
}

/** A whole job (container, a step that writes a file back, cleanup) through the given copy of the hook. */
async function job(hook: string): Promise<void> {
  const runner = new FakeRunner({ hook })
  try {
    const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: p.code, out: p.stdout + p.stderr }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
    const { args } = runner.scriptStep('echo "ran from the copy" > from-vm.txt\n')
    const s = await runner.call('run_script_step', args)
    expect({ code: s.code, out: s.stdout + s.stderr }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
    expect(readFileSync(join(runner.workspace, 'from-vm.txt'), 'utf8')).toBe('ran from the copy\n')
  } finally {
    const c = await runner.cleanup()
    runner.dispose()
    expect(c.code).toBe(0)
  }
}

test('a copy alone in an empty folder runs and writes its code cache 0600 in a 0700 folder', () => {
  expect(version()).toMatch(/^remote-container-hooks \d+\.\d+\.\d+ \(build [0-9a-f]{12}\)\n$/)
  expect(quick()).toEqual({ code: 0, stdout: expect.not.stringContaining('::error::'), stderr: '' })
  const files = readdirSync(cacheDir()).filter((f) => f.startsWith('code-'))
  // Named for the build, the library, and the node flags with the V8 version (hashed).
  expect(files.some((f) => /^code-[0-9a-f]{16}-ssh2-f[0-9a-f]{8}\.bin$/.test(f))).toBe(true)
  expect(statSync(cacheDir()).mode & 0o777).toBe(0o700)
  for (const f of files) expect(statSync(join(cacheDir(), f)).mode & 0o777).toBe(0o600)
  // and the second start uses it
  const again = quick(bundle, ['-r', spy()])
  expect(again.code).toBe(0)
  expect(again.stderr).toContain('COMPILED bundled:ssh2 cache=true')
})

test("a process that loaded libraries from the file keeps one copy of the file's text (V8's, of the script), not a second one held by the chunk table", () => {
  const snap = join(tmp, 'heap.heapsnapshot')
  const probe = join(tmp, 'snap.js')
  writeFileSync(probe, `process.on('exit', () => require('v8').writeHeapSnapshot(${JSON.stringify(snap)}))\n`)
  const r = quick(bundle, ['-r', spy(), '-r', probe])
  expect(r.code).toBe(0)
  expect(r.stderr).toContain('COMPILED bundled:ssh2') // positive control: a library was read from the file
  const size = statSync(bundle).size
  const h = JSON.parse(readFileSync(snap, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }
    nodes: number[]
    strings: string[]
  }
  // Strings as the snapshot lists them: a type, a name (the text's start) and a size in the heap.
  const f = h.snapshot.meta.node_fields
  const [type, name, self] = ['type', 'name', 'self_size'].map((k) => f.indexOf(k))
  const copies: number[] = []
  for (let i = 0; i < h.nodes.length; i += f.length) {
    const big = h.snapshot.meta.node_types[0][h.nodes[i + type]] === 'string' && h.nodes[i + self] >= size
    if (big && h.strings[h.nodes[i + name]].startsWith('#!/usr/bin/env node')) copies.push(h.nodes[i + self])
  }
  expect(copies.length).toBe(1) // the script's own source, so the search finds the text (a second: the table's slices kept the file)
})

test("a process with other node flags (the agent's) keeps its own code cache: one shared file was rejected and rewritten by every other process", () => {
  const spyFile = join(tmp, 'spy-rejected.js')
  writeFileSync(
    spyFile,
    "const vm = require('vm'), S = vm.Script\nvm.Script = class extends S { constructor(src, o) { super(src, o); process.stderr.write('COMPILED ' + o.filename + ' cache=' + !!o.cachedData + ' rejected=' + !!this.cachedDataRejected + '\\n') } }\n"
  )
  const agentFlags = ['--max-semi-space-size=1', '--heap-growing-percent=20']
  const run = (flags: string[]): string[] => {
    const r = spawnSync(process.execPath, [...flags, '-r', spyFile, bundle, 'check-config', '--help'], { env: env(), encoding: 'utf8' })
    expect(r.status).toBe(0)
    return r.stderr.split('\n').filter((l) => l.startsWith('COMPILED bundled:rch-rest'))
  }
  expect(run([])).toEqual(['COMPILED bundled:rch-rest cache=false rejected=false']) // positive control: the part is compiled, no cache yet
  expect(run(agentFlags)).toEqual(['COMPILED bundled:rch-rest cache=false rejected=false'])
  expect(run([])).toEqual(['COMPILED bundled:rch-rest cache=true rejected=false'])
  expect(run(agentFlags)).toEqual(['COMPILED bundled:rch-rest cache=true rejected=false'])
})

test('caches of other versions older than a day are removed when a new version writes its own; newer ones and other files stay', () => {
  mkdirSync(cacheDir(), { mode: 0o700 })
  const old = join(cacheDir(), 'code-0123456789abcdef-core.bin')
  const recent = join(cacheDir(), 'code-fedcba9876543210-core.bin')
  const other = join(cacheDir(), 'owner-1234')
  for (const f of [old, recent, other]) writeFileSync(f, 'x')
  const twoDaysAgo = new Date(Date.now() - 2 * 86400_000)
  utimesSync(old, twoDaysAgo, twoDaysAgo)
  utimesSync(other, twoDaysAgo, twoDaysAgo)
  expect(quick().code).toBe(0)
  expect([existsSync(old), existsSync(recent), existsSync(other)]).toEqual([false, true, true])
})

test('a cache folder others can write is not used', () => {
  mkdirSync(cacheDir())
  chmodSync(cacheDir(), 0o777)
  writeFileSync(join(cacheDir(), 'code-planted'), 'x')
  // The core refuses that folder for its own files too; the library was compiled before it did.
  for (let i = 0; i < 2; i++) {
    const r = quick(bundle, ['-r', spy()])
    expect(r.stderr).toContain('COMPILED bundled:ssh2 cache=false') // positive control: a library was compiled
    expect(r.stdout).toContain(`private folder ${cacheDir()} is open to other users`)
  }
  expect(readdirSync(cacheDir())).toEqual(['code-planted'])
})

test('stack frames in the core name src/ files and lines', () => {
  const { frame, source } = versionFrame()
  expect(source).toMatch(/stdout\.write|console\.log/)
  expect(frame).toMatch(/^\(src\//)
})

test('the three AWS clients are one chunk: the SDK code they share is in the file once (node reads all of it on every start)', () => {
  const text = readFileSync(HOOK, 'latin1')
  const table = text.slice(text.lastIndexOf('/*RCH-' + 'CHUNKS'))
  const names = [...table.matchAll(/\n([\w@/.-]+) [A-Za-z0-9+/=]+(?=\r?\n)/g)].map((m) => m[1])
  expect(names).toContain('ssh2') // positive control: the table is read
  expect(names.filter((n) => /aws/.test(n))).toEqual(['rch-aws'])
  const aws = brotliDecompressSync(Buffer.from(/\nrch-aws ([A-Za-z0-9+/=]+)\r?\n/.exec(text)![1], 'base64')).toString('latin1')
  for (const client of ['EC2Client', 'AutoScalingClient', 'DynamoDBClient']) expect(aws).toContain(`var ${client} = class`)
  // Only what src/ uses: a command it sends is there, one it never sends is not, and neither is an
  // aggregated client class (it holds every command of its service; "EC2" in a comment once put it in).
  expect(aws).toContain('var DescribeInstancesCommand = class')
  for (const absent of ['var CreateVpcCommand = class', 'var EC2 = class', 'var DynamoDB = class', 'var AutoScaling = class'])
    expect(aws).not.toContain(absent)
})

test('frames in the part loaded on demand (rch-rest) name src/ files and lines too', () => {
  // check-config's help is written by src/ops/, which is not in the core the fast path parses.
  const text = readFileSync(HOOK, 'latin1')
  expect(text).toMatch(/\nrch-rest [A-Za-z0-9+/=]+\r?\n/) // positive control: the part is in the file, not the core
  expect(text.slice(0, text.indexOf('/*RCH-' + 'CHUNKS'))).not.toContain('checkConfigCommand')
  const { frame, source } = versionFrame(bundle, ['check-config', '--help'])
  expect(frame).toMatch(/^\(src\/ops\//)
  expect(source).toMatch(/stdout\.write|\.write\(/)
})

test('the part loaded on demand takes the modules of the core from the core, never a copy of its own (one instance: instanceof holds across them)', () => {
  const text = readFileSync(HOOK, 'latin1')
  const core = text.slice(0, text.indexOf('/*RCH-' + 'CHUNKS'))
  const rest = brotliDecompressSync(Buffer.from(/\nrch-rest ([A-Za-z0-9+/=]+)\r?\n/.exec(text)![1], 'base64')).toString('latin1')
  expect(core).toMatch(/TransportError = class extends/) // positive control: the core defines it
  expect(rest).toContain('rch-core:src/errors.ts') // and the rest uses it, from the core
  expect(rest).not.toMatch(/TransportError = class extends/)
  expect(rest).toMatch(/\w+ = class extends import_errors\d*\.HookError/) // its own error classes extend the core's HookError
})

describe('a file replaced while a command runs (an upgrade: install, then mv over it)', () => {
  test('the chunks come from the file the process started from', () => {
    // Another build's file (here: one without the rest of the hook) is moved over the bundle once
    // the loader has started and before it reads its first chunk (loaded after an await).
    const other = join(tmp, 'other.js')
    writeFileSync(other, readFileSync(HOOK, 'latin1').replace(/\nrch-rest [A-Za-z0-9+/=]+\r?\n/, '\n'), 'latin1')
    const swap = join(tmp, 'swap.js')
    writeFileSync(swap, `process.nextTick(() => require('fs').renameSync(${JSON.stringify(other)}, ${JSON.stringify(bundle)}))\n`)
    const r = spawnSync(process.execPath, ['-r', swap, bundle, 'check-config', '--help'], { env: env(), encoding: 'utf8' })
    expect(readFileSync(bundle, 'latin1')).not.toMatch(/\nrch-rest /) // positive control: it was replaced
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' })
    expect(r.stdout).toMatch(/^usage: remote-hooks check-config/)
  })
  test('replaced by another build before the loader opened it: a clear error when a chunk is needed, never its chunks', () => {
    const text = readFileSync(HOOK, 'latin1')
    const key = /^#!.*\r?\n\/\/ remote-container-hooks ([0-9a-f]{16}):/.exec(text)![1]
    const other = join(tmp, 'other.js')
    writeFileSync(other, text.replace(`remote-container-hooks ${key}:`, `remote-container-hooks ${'0'.repeat(16)}:`), 'latin1')
    // Moved over the bundle after node has read it, before the loader runs.
    const swap = join(tmp, 'swap-early.js')
    writeFileSync(
      swap,
      `const M = require('module'); const c = M.prototype._compile; M.prototype._compile = function (...a) {\n` +
        `  if (a[1] === ${JSON.stringify(bundle)}) require('fs').renameSync(${JSON.stringify(other)}, ${JSON.stringify(bundle)})\n` +
        `  return c.apply(this, a) }\n`
    )
    const r = spawnSync(process.execPath, ['-r', swap, bundle, 'check-config', '--help'], { env: env(), encoding: 'utf8' })
    expect(readFileSync(bundle, 'latin1')).toContain(`remote-container-hooks ${'0'.repeat(16)}:`) // positive control
    expect(r.status).toBe(70)
    // An operator's command: the error on stderr.
    expect(r.stderr).toMatch(
      /^::error::remote-container-hooks could not load .*was replaced by another build while this command ran \(run it again\)/
    )
  })
  test('moved over after its first chunk was read (a rebuild or an upgrade beside a running job): the later chunks still come from the open file', () => {
    // CI saw a running hook refuse its next chunk when a concurrent `npm run build` renamed a new
    // file in. The file moved in here has another key and a changed ssh2 chunk: only a chunk read
    // from the open file (the one the process started from) passes.
    const text = readFileSync(HOOK, 'latin1')
    const key = /^#!.*\r?\n\/\/ remote-container-hooks ([0-9a-f]{16}):/.exec(text)![1]
    const other = join(tmp, 'moved.js')
    writeFileSync(
      other,
      withChunkChanged(text.replace(`remote-container-hooks ${key}:`, `remote-container-hooks ${'0'.repeat(16)}:`), 'ssh2'),
      'latin1'
    )
    const before = statSync(bundle).ino
    const r = quick(bundle, [
      '-r',
      afterFirstChunk(`require('fs').renameSync(${JSON.stringify(other)}, ${JSON.stringify(bundle)})`),
      '-r',
      spy()
    ])
    expect(statSync(bundle).ino).not.toBe(before) // positive control: another file has the name now
    // and ssh2 was read after the move: the first chunk (whose decompression made the move) is rch-rest
    expect(r.stderr.split('\n').find((l) => l.startsWith('COMPILED '))).toMatch(/^COMPILED bundled:rch-rest /)
    expect(r.stderr.indexOf('CHANGED\n')).toBeGreaterThanOrEqual(0)
    expect(r.stderr.indexOf('COMPILED bundled:ssh2')).toBeGreaterThan(r.stderr.indexOf('CHANGED\n'))
    expect(r).toEqual({ code: 0, stdout: expect.not.stringContaining('::error::'), stderr: expect.any(String) })
  })
  test('written over in place (same inode, same length) after its first chunk was read: a later chunk is refused, never taken from the new text', () => {
    const other = withChunkChanged(readFileSync(HOOK, 'latin1'), 'ssh2')
    // After the first chunk is decompressed (the rest of the hook, before it reads its config),
    // the file is rewritten through its own name: the loader's open descriptor sees the new bytes.
    const r = quick(bundle, [
      '-r',
      afterFirstChunk(`require('fs').writeFileSync(${JSON.stringify(bundle)}, ${JSON.stringify(other)}, 'latin1')`)
    ])
    expect(readFileSync(bundle, 'latin1')).toBe(other) // positive control: it was written
    expect(r.code).toBe(70)
    expect(r.stdout).toMatch(
      /::error::remote-container-hooks could not load .*was replaced by another build while this command ran \(run it again\)/
    )
  })
  test('written over in place with its size and mtime kept, while a hard link to it was made: refused (the bytes are checked, not the metadata)', () => {
    const other = withChunkChanged(readFileSync(HOOK, 'latin1'), 'ssh2')
    const ref = join(tmp, 'mtime-ref')
    writeFileSync(ref, '')
    const q = (p: string): string => JSON.stringify(p)
    const r = quick(bundle, [
      '-r',
      afterFirstChunk(
        `const fs = require('fs'), cp = require('child_process'); cp.execFileSync('touch', ['-r', ${q(bundle)}, ${q(ref)}]); ` +
          `fs.linkSync(${q(bundle)}, ${q(`${bundle}.bak`)}); fs.writeFileSync(${q(bundle)}, ${q(other)}, 'latin1'); ` +
          `cp.execFileSync('touch', ['-r', ${q(ref)}, ${q(bundle)}])`
      )
    ])
    // positive controls: the new bytes under the same inode, with the old mtime and a second link
    expect(readFileSync(bundle, 'latin1')).toBe(other)
    expect(statSync(bundle).mtimeMs).toBe(statSync(ref).mtimeMs)
    expect(statSync(bundle).nlink).toBe(2)
    expect(r.code).toBe(70)
    expect(r.stdout).toMatch(/::error::remote-container-hooks could not load .*was replaced by another build while this command ran/)
  })
})

describe('an edited copy still works', () => {
  test('a line added after the shebang: --version, a whole job, and stack frames still on the right src/ line', async () => {
    const text = readFileSync(HOOK, 'latin1')
    const nl = text.indexOf('\n') + 1
    writeFileSync(bundle, text.slice(0, nl) + '// a line an operator added\n' + text.slice(nl), 'latin1')
    expect(readFileSync(bundle, 'latin1').split('\n')[1]).toBe('// a line an operator added') // the edit is there
    expect(version()).toMatch(/^remote-container-hooks /)
    expect(versionFrame().source).toMatch(/stdout\.write|console\.log/)
    await job(bundle)
  }, 120_000)

  test('CRLF line endings (run as `node index.js`, as the runner does): --version, a whole job, and stack frames on the right src/ line', async () => {
    writeFileSync(bundle, readFileSync(HOOK, 'latin1').replace(/\n/g, '\r\n'), 'latin1')
    expect(readFileSync(bundle, 'latin1')).toMatch(/^#!.*\r\n[^\r\n]*\r\n/) // the edit is there
    expect(version()).toMatch(/^remote-container-hooks /)
    expect(versionFrame().source).toMatch(/stdout\.write|console\.log/)
    await job(bundle)
  }, 120_000)
})

describe('a failure while loading is one ::error:: and exit 70, never a bare stack', () => {
  test('the loader itself fails', () => {
    // getuid is the loader's first call into node; a preload makes it throw.
    const preload = join(tmp, 'break.js')
    writeFileSync(preload, "process.getuid = () => { throw new Error('probe: getuid refused\\nsecond line') }\n")
    const line = '::error::remote-container-hooks could not load (probe: getuid refused%0Asecond line)\n'
    // As the runner's hook: on stdout, where the runner reads workflow commands.
    const hook = spawnSync(process.execPath, ['-r', preload, bundle], { env: env(), encoding: 'utf8', input: '' })
    expect([hook.status, hook.stdout]).toEqual([70, line])
    expect(hook.stderr).not.toMatch(/\n\s+at /)
    // As an operator's command (`--version`, `report --csv`): on stderr; its stdout is data.
    const command = spawnSync(process.execPath, ['-r', preload, bundle, '--version'], { env: env(), encoding: 'utf8' })
    expect([command.status, command.stdout, command.stderr]).toEqual([70, '', line])
  })

  test('a library missing from the file, loaded where the configuration check catches errors', () => {
    // ssh2: the identityFile check loads it inside its own try/catch, which must not turn a broken
    // install into a key-file problem (exit 78).
    const text = readFileSync(HOOK, 'latin1')
    const edited = text.replace(/\nssh2 [A-Za-z0-9+/=]+\r?\n/, '\n')
    expect(edited.length).toBeLessThan(text.length - 1000) // positive control: the library was there to remove
    writeFileSync(bundle, edited, 'latin1')
    expect(version()).toMatch(/^remote-container-hooks /) // the core alone still starts
    const r = quick()
    expect(r.code).toBe(70)
    expect(r.stdout).toMatch(
      /^::error::remote-container-hooks could not load the bundled library ssh2 \(the bundled library ssh2 is missing from \S+index\.js\)\n$/
    )
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })
})
