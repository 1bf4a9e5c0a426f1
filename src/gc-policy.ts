// How V8 collects garbage in the job's agent while a step's output streams through it.
//
// An agent's heap (~9 MB: ssh2, the rest of the hook, zod, their code) is over V8's threshold for
// incremental marking. While megabytes of output went through the agent, V8 started a marking cycle
// every few MiB, each ended by a full collection: ~2 per 20 MB, about a fifth of the agent's CPU.
// With marking off for the agent's whole life its old generation grew to V8's limit between
// collections instead (+20 MB of steady memory over 200 steps); off only while output streams,
// neither (docs/benchmarks.md, 2026-12-03). The flag only gates starting a cycle: one under way when
// it goes off is finished as usual, and a full collection still comes at the old generation's limit.
let enabled = false
let streaming = 0
/** Whether this process turned marking off and has not turned it on again. */
let paused = false

/** Called once by the agent as it starts: only its streams pause marking. */
export function pauseMarkingWhileStreaming(): void {
  if (enabled) return
  enabled = true
  // V8's code caches carry a hash of its flags: the loader writes the caches of the libraries this
  // process compiled when it exits, and an exit in mid-stream must write them under the usual flags
  // (before the loader's own exit listeners), or the next agent would reject them.
  process.prependListener('exit', () => {
    if (paused) setMarking(true)
  })
}

/** A stream's output begins; the function returned says it is over (calling it again does nothing). */
export function outputStreaming(): () => void {
  if (!enabled) return () => undefined
  if (streaming++ === 0) paused = setMarking(false)
  let over = false
  return () => {
    if (over) return
    over = true
    if (--streaming === 0 && paused) paused = !setMarking(true)
  }
}

/** Whether V8 took the flag. */
function setMarking(on: boolean): boolean {
  try {
    // Loaded on the agent's first stream, not by every hook that loads this module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ;(require('node:v8') as typeof import('node:v8')).setFlagsFromString(on ? '--incremental-marking' : '--no-incremental-marking')
    return true
  } catch {
    // A node that refuses flags at run time: the policy is only about CPU, never a step's failure.
    enabled = false
    return false
  }
}
