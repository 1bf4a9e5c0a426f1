// For tests that run the agent's GC policy (src/gc-policy.ts) in the Jest worker: V8's flags are
// the process's, so each test is checked for leaving incremental marking off, and the flag is put
// back before the check, so that a failed test does not change V8 for the files after it.
import { cachedDataVersionTag, setFlagsFromString } from 'node:v8'

/** V8's flag hash as this file found it; it changes with the flags (cachedDataVersionTag). */
export function guardMarking(): number {
  const normal = cachedDataVersionTag()
  afterEach(() => {
    const tag = cachedDataVersionTag()
    setFlagsFromString('--incremental-marking')
    expect(tag).toBe(normal)
  })
  return normal
}
