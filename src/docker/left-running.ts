// A step whose connection dropped (or whose agent died) may still run on the VM: docker does not
// end an exec whose client went away, and the marker that finds its processes lived only in the
// process that ran the step. Each step's marker is noted in the job's local folder (private, one
// empty file per step) before it starts and dropped once its end is known; the job's next step
// stops whatever a noted marker still finds, so a lost step never runs beside the steps after it.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import type { Engine } from './engine'
import { stopMarked } from './step-stop'

const folderOf = (localDir: string): string => `${localDir}/steps`
const MARKER = /^[0-9a-f]{32}$/

/** Notes a step about to start; what failed when it cannot (the job's folder is gone), else null. */
export function noteStep(localDir: string, marker: string): string | null {
  try {
    // Only inside the job's folder, never a folder of its own making: one that is gone stays gone.
    mkdirSync(folderOf(localDir), { mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return (e as Error).message
  }
  try {
    writeFileSync(`${folderOf(localDir)}/${marker}`, '', { mode: 0o600 })
    return null
  } catch (e) {
    return (e as Error).message
  }
}

/** The step's end is known (its exit, or its processes seen stopped): nothing of it is left. */
export function stepEnded(localDir: string, marker: string): void {
  rmSync(`${folderOf(localDir)}/${marker}`, { force: true })
}

/**
 * Stops the processes of the job's earlier steps whose end was never known; returns a line for
 * each (the caller warns). A marker whose stop fails stays noted for the next step.
 */
export async function stopLeftRunning(engine: Engine, container: string, localDir: string): Promise<string[]> {
  let names: string[]
  try {
    names = readdirSync(folderOf(localDir)).filter((n) => MARKER.test(n))
  } catch {
    return []
  }
  const said: string[] = []
  for (const marker of names) {
    if (await stopMarked(engine, container, marker, 0).catch(() => false)) {
      stepEnded(localDir, marker)
      said.push(`an earlier step of this job whose end was never known (its connection was lost): any process of it left was stopped`)
    } else
      said.push(`an earlier step of this job whose end was never known (its connection was lost) could not be stopped: it may still run`)
  }
  return said
}
