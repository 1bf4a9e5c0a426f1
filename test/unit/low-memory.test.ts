// agent.lowMemory: the agent's environment carries glibc's allocator settings, and glibc takes them
// (a misspelt tunable is ignored without a word, so the effect itself is what is checked).
import { spawnSync } from 'node:child_process'
import { AGENT_NODE_FLAGS, agentEnv, LOW_MEMORY_TUNABLES } from '../../src/session'

const ctx = (lowMemory: boolean) => ({
  runner: { home: '/home/runner', trackingId: 'track-1' },
  localRoot: '/tmp/rch-1000',
  config: { agent: { lowMemory } }
})

test('the allocator settings are in the agent environment only with agent.lowMemory', () => {
  expect(agentEnv(ctx(true)).GLIBC_TUNABLES).toBe(LOW_MEMORY_TUNABLES)
  expect(Object.keys(agentEnv(ctx(false))).sort()).toEqual(['HOME', 'LANG', 'PATH', 'RUNNER_TRACKING_ID', 'TMPDIR'])
})

/**
 * A node process that allocates 32 MiB of 8 KiB buffers, frees nine in ten (every tenth stays, so
 * the freed ones are holes below live blocks, as a step's output leaves them) and prints how much of
 * its private memory was not given back. Run with the agent's own node flags.
 */
function retainedMb(env: Record<string, string>): number {
  const script = `
    const rss = () => Number(/RssAnon:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
    const before = rss()
    let bufs = []
    for (let i = 0; i < 4096; i++) bufs.push(Buffer.allocUnsafeSlow(8192).fill(1))
    bufs = bufs.filter((_, i) => i % 10 === 0)
    gc()
    // V8 frees the buffers of collected objects on a background thread: their release is waited for.
    const t0 = Date.now()
    const settle = () => {
      gc()
      if (process.memoryUsage().arrayBuffers > 4 * 1048576 && Date.now() - t0 < 5000) return setTimeout(settle, 20)
      console.log(rss() - before)
    }
    settle()`
  const r = spawnSync(process.execPath, [...AGENT_NODE_FLAGS, '--expose-gc', '-e', script], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8'
  })
  expect(r.status).toBe(0)
  return Number(r.stdout.trim())
}

const report = process.report.getReport() as unknown as { header: { glibcVersionRuntime?: string }; sharedObjects: string[] }
/** The settings are glibc's: elsewhere (musl) they are ignored, as documented, and there is nothing to check. */
const onGlibc = report.header.glibcVersionRuntime ? test : test.skip

onGlibc('glibc reads each setting with the value given (its loader lists what it took)', () => {
  const ldso = report.sharedObjects.find((f) => /\/ld-linux[^/]*\.so/.test(f))
  expect(ldso).toBeDefined()
  const took = (env: Record<string, string>): Map<string, number> => {
    const r = spawnSync(ldso!, ['--list-tunables'], { env, encoding: 'utf8' })
    expect(r.status).toBe(0)
    return new Map([...r.stdout.matchAll(/^(glibc\.malloc\.\w+): (0x[0-9a-f]+)/gm)].map((m) => [m[1], Number(m[2])]))
  }
  const given = LOW_MEMORY_TUNABLES.split(':').map((t) => t.split('='))
  const seen = took({ GLIBC_TUNABLES: LOW_MEMORY_TUNABLES })
  for (const [name, value] of given) expect([name, seen.get(name)]).toEqual([name, Number(value)])
  // Positive control: without the variable the non-zero ones are unset (top_pad's 0 is its unset
  // value too; the test below sees it taken: without it the freed buffers stay).
  const unset = took({})
  expect(given.filter(([name, value]) => Number(value) !== 0 && unset.get(name) === Number(value))).toEqual([])
})

onGlibc('glibc takes the settings: freed buffers go back to the system', () => {
  // Positive control: with glibc's defaults the holes stay resident.
  expect(retainedMb({})).toBeGreaterThan(20)
  expect(retainedMb({ GLIBC_TUNABLES: LOW_MEMORY_TUNABLES })).toBeLessThan(12)
})
