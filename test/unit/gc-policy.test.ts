// The agent's GC policy: V8's incremental marking is off exactly while at least one step's output
// streams, and only in a process that asked for it (the agent). V8's flag state is read back through
// cachedDataVersionTag(), which changes with the flags.
import { cachedDataVersionTag } from 'node:v8'
import { guardMarking } from '../helpers/v8-marking'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildSync } from 'esbuild'

const load = async (): Promise<typeof import('../../src/gc-policy')> => {
  jest.resetModules()
  return import('../../src/gc-policy')
}

const normal = guardMarking()

test('not enabled (a hook process): a stream leaves V8 as it is', async () => {
  const { outputStreaming } = await load()
  const done = outputStreaming()
  expect(cachedDataVersionTag()).toBe(normal)
  done()
})

test('enabled (the agent): marking is off while output streams, and on again once the last stream is over', async () => {
  const { outputStreaming, pauseMarkingWhileStreaming } = await load()
  pauseMarkingWhileStreaming()
  const first = outputStreaming()
  const paused = cachedDataVersionTag()
  expect(paused).not.toBe(normal) // positive control: the flag changed what V8 reports
  const second = outputStreaming()
  first()
  expect(cachedDataVersionTag()).toBe(paused) // the second stream still runs
  first() // a second call of the same end does not count twice
  expect(cachedDataVersionTag()).toBe(paused)
  second()
  expect(cachedDataVersionTag()).toBe(normal)
  second()
  expect(cachedDataVersionTag()).toBe(normal)
})

test("an agent that exits in mid-stream has V8's usual flags again when the loader writes its code caches at exit", () => {
  const dir = mkdtempSync(join(tmpdir(), 'rch-gc-policy-'))
  try {
    const lib = join(dir, 'gc-policy.js')
    buildSync({
      entryPoints: [join(__dirname, '../../src/gc-policy.ts')],
      bundle: true,
      platform: 'node',
      outfile: lib,
      logLevel: 'silent'
    })
    // Like the loader: an exit listener registered before the agent starts (the loader's cache writer).
    const script = [
      "const v8 = require('v8')",
      'const normal = v8.cachedDataVersionTag()',
      "process.on('exit', () => process.stdout.write(JSON.stringify({ normal, atExit: v8.cachedDataVersionTag(), during })))",
      `const p = require(${JSON.stringify(lib)})`,
      'p.pauseMarkingWhileStreaming()',
      'p.outputStreaming()',
      'const during = v8.cachedDataVersionTag()',
      'process.exit(0)'
    ].join('\n')
    const r = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as Record<string, number>
    expect(r.during).not.toBe(r.normal) // positive control: the stream had paused marking when it exited
    expect(r.atExit).toBe(r.normal)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a node that refuses V8 flags at run time: streams go on, and the policy stops trying', async () => {
  jest.resetModules()
  const calls: string[] = []
  jest.doMock('node:v8', () => ({
    setFlagsFromString: (f: string) => {
      calls.push(f)
      throw new Error('flags are frozen')
    }
  }))
  try {
    const { outputStreaming, pauseMarkingWhileStreaming } = await import('../../src/gc-policy')
    pauseMarkingWhileStreaming()
    const done = outputStreaming()
    expect(calls).toEqual(['--no-incremental-marking']) // positive control: it tried, and the throw did not escape
    done()
    outputStreaming()()
    expect(calls).toEqual(['--no-incremental-marking'])
  } finally {
    jest.dontMock('node:v8')
    jest.resetModules()
  }
})
