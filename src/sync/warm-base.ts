// The job's agent reads the sync base as soon as prepare_job has written it, rather than when the
// first step asks for it: for a 100,000-file workspace that read (a 12 MB snapshot) took the first
// step's push ~0.4 s. Nothing waits for it; a read that fails is the step's to make again.
import { existsSync, watch, type FSWatcher } from 'node:fs'
import { basename } from 'node:path'
import { loadBase } from './manifest'
import { baseFileIn } from '../paths'

/** Reads the job's base into the cache once it exists (now, or when it is first written). */
export function warmBase(localDir: string): void {
  const file = baseFileIn(localDir)
  const load = (): void =>
    void setImmediate(() => {
      try {
        loadBase(file)
      } catch {
        // the step's own read reports it
      }
    })
  if (existsSync(file)) return load()
  let w: FSWatcher
  try {
    w = watch(localDir, (_event, name) => {
      if (name !== basename(file) || !existsSync(file)) return
      w.close()
      load()
    })
  } catch {
    return // a folder that cannot be watched: the first step reads the base
  }
  w.on('error', () => w.close())
  // Never what keeps the agent running.
  w.unref()
  // Written between the look above and the watch's start: no event comes for it.
  if (existsSync(file)) {
    w.close()
    load()
  }
}
