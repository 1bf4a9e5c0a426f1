// A step whose connection dropped (or whose agent died) may still run on the VM: docker does not
// end an exec whose client went away, nor a container action's container whose hook went away, and
// what finds a step (its marker, its container's name) lived only in the process that ran it. Each
// step is noted in the job's local folder (private, one file per step, naming the process that runs
// it) before it starts and dropped once its end is known; the job's next step stops whatever a note
// still finds once the process that ran it is gone, so a lost step never runs beside the steps after
// it, and a step still running beside it (in the background, its process alive) is left alone.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { EngineError, type Engine } from './engine'
import { stopMarked } from './step-stop'
import { isRunning, workerProcess, type WorkerProcess } from '../worker-process'

const folderOf = (localDir: string): string => `${localDir}/steps`
const MARKER = /^[0-9a-f]{32}$/
/** A container action's note: `action-` and its container's name (`rch-<jobId>-step-<random>`). */
const ACTION = /^action-(rch-[0-9a-f]{1,64}-step-[0-9a-f]{1,64})$/

/** The note of a container action whose container is named `name`. */
export const actionNote = (name: string): string => `action-${name}`

/**
 * Notes a step about to start (a `run:` step's marker, or a container action's actionNote), run by
 * this process; when it cannot (the job's folder is gone), the warning that says so, else null.
 */
export function noteStep(localDir: string, marker: string): string | null {
  const why = writeNote(localDir, marker)
  return why && `this step could not be noted in the job's folder (${why}): were its connection lost, the next step would not stop it`
}

function writeNote(localDir: string, marker: string): string | null {
  try {
    // Only inside the job's folder, never a folder of its own making: one that is gone stays gone.
    mkdirSync(folderOf(localDir), { mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return (e as Error).message
  }
  try {
    const owner: WorkerProcess = workerProcess(process.pid) ?? { pid: process.pid, start: '' }
    writeFileSync(`${folderOf(localDir)}/${marker}`, JSON.stringify(owner), { mode: 0o600 })
    return null
  } catch (e) {
    return (e as Error).message
  }
}

/** The step's end is known (its exit, or its processes seen stopped): nothing of it is left. */
export function stepEnded(localDir: string, marker: string): void {
  rmSync(`${folderOf(localDir)}/${marker}`, { force: true })
}

/** Whether the process that noted `marker` still runs (the step may be running in it); a note it cannot read has none. */
function ownerRuns(localDir: string, marker: string): boolean {
  try {
    const o = JSON.parse(readFileSync(`${folderOf(localDir)}/${marker}`, 'utf8')) as Partial<WorkerProcess>
    return typeof o.pid === 'number' && typeof o.start === 'string' && isRunning({ pid: o.pid, start: o.start })
  } catch {
    return false
  }
}

/** Force-removes a container action's container; true once it is gone (404: already). */
async function removeStepContainer(engine: Engine, name: string): Promise<boolean> {
  try {
    await engine.call('DELETE', `/containers/${name}?force=1&v=1`, undefined, 'remove container', { reply: 'ignore' })
    return true
  } catch (e) {
    return e instanceof EngineError && e.status === 404
  }
}

/**
 * Stops the processes of the job's earlier steps whose end was never known and whose process is
 * gone: a `run:` step's in the job container (`container`, null when there is none), a container
 * action's container. Returns a line for each (the caller warns). A note whose stop fails stays.
 */
export async function stopLeftRunning(engine: Engine, container: string | null, localDir: string): Promise<string[]> {
  let names: string[]
  try {
    names = readdirSync(folderOf(localDir)).filter((n) => (MARKER.test(n) && container !== null) || ACTION.test(n))
  } catch {
    return []
  }
  const said: string[] = []
  const what = 'an earlier step of this job whose end was never known (its connection was lost, or the process running it ended)'
  for (const note of names) {
    if (ownerRuns(localDir, note)) continue
    const action = ACTION.exec(note)?.[1]
    const stopped = action ? await removeStepContainer(engine, action) : await stopMarked(engine, container!, note, 0).catch(() => false)
    if (stopped) {
      stepEnded(localDir, note)
      said.push(`${what}: any process of it left was stopped`)
    } else said.push(`${what} could not be stopped: it may still run`)
  }
  return said
}
