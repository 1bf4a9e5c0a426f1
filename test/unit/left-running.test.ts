// The job folder's note of each running step (left-running.ts): noted, ended, and stopped by the
// next step when its end was never known and the process that ran it is gone; a step whose process
// still runs (a step in the background) is left alone; never a folder made where the job's is gone.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { EngineError, type Engine } from '../../src/docker/engine'
import { cleanupTempDirs, tempDir } from './_helpers'

const stops: string[] = []
let stopWorks = true
jest.mock('../../src/docker/step-stop', () => ({
  stopMarked: async (_e: unknown, container: string, marker: string) => {
    stops.push(`${container} ${marker}`)
    return stopWorks
  }
}))
import { actionNote, noteStep, stepEnded, stopLeftRunning } from '../../src/docker/left-running'

afterAll(cleanupTempDirs)
beforeEach(() => {
  stops.length = 0
  stopWorks = true
})

const engine = {} as Engine
const A = 'a'.repeat(32)
const B = 'b'.repeat(32)
/** A process that has ended (its pid free). */
const gone = spawnSync('true').pid
/** The note of a step run by a process that has ended (an agent killed with its connection). */
const noteOfGone = (dir: string, marker: string): void => {
  noteStep(dir, marker)
  writeFileSync(join(dir, 'steps', marker), JSON.stringify({ pid: gone, start: '1' }))
}

test('a step noted and ended leaves nothing for the next step to stop (control)', async () => {
  const dir = tempDir()
  expect(noteStep(dir, A)).toBeNull()
  stepEnded(dir, A)
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([])
  expect(stops).toEqual([])
})

test('a step whose end was never known is stopped by the next, once; one whose stop fails stays noted', async () => {
  const dir = tempDir()
  noteOfGone(dir, A)
  noteOfGone(dir, B)
  stopWorks = false
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([
    expect.stringMatching(/could not be stopped: it may still run$/),
    expect.stringMatching(/could not be stopped: it may still run$/)
  ])
  stopWorks = true
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([
    expect.stringMatching(/: any process of it left was stopped$/),
    expect.stringMatching(/: any process of it left was stopped$/)
  ])
  expect(stops.sort()).toEqual([`c1 ${A}`, `c1 ${A}`, `c1 ${B}`, `c1 ${B}`])
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([])
  expect(readdirSync(join(dir, 'steps'))).toEqual([])
})

test("where the job's folder is gone, nothing is made: the note fails, saying why", () => {
  const gone = join(tempDir(), 'job')
  expect(noteStep(gone, A)).toMatch(/ENOENT/)
  expect(existsSync(gone)).toBe(false)
})

test('only step markers are taken from the folder', async () => {
  const dir = tempDir()
  mkdirSync(join(dir, 'steps'))
  noteOfGone(dir, A)
  mkdirSync(join(dir, 'steps', 'not-a-marker'))
  expect(await stopLeftRunning(engine, 'c1', dir)).toHaveLength(1)
  expect(stops).toEqual([`c1 ${A}`])
})

test('a step whose process still runs (in the background, beside this one) is left alone; once that process is gone it is stopped', async () => {
  const dir = tempDir()
  noteStep(dir, A) // run by this very process, which runs
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([])
  expect(stops).toEqual([])
  // Control: the same note, its process ended.
  noteOfGone(dir, A)
  expect(await stopLeftRunning(engine, 'c1', dir)).toHaveLength(1)
  expect(stops).toEqual([`c1 ${A}`])
})

test('a note that cannot be read (cut short by a crash) counts as its process gone', async () => {
  const dir = tempDir()
  noteStep(dir, A)
  writeFileSync(join(dir, 'steps', A), '{"pid":')
  expect(await stopLeftRunning(engine, 'c1', dir)).toHaveLength(1)
})

describe("a container action's note", () => {
  const NAME = `rch-${'1'.repeat(16)}-step-abcdef`
  /** An engine whose container removals answer by `status` (0: removed), recording each. */
  function removing(status: number): { engine: Engine; removed: string[] } {
    const removed: string[] = []
    const call = async (method: string, path: string) => {
      removed.push(`${method} ${path}`)
      if (status) throw new EngineError(status, 'remove container', `status ${status}`)
      return { status: 204, data: null }
    }
    return { engine: { call } as unknown as Engine, removed }
  }

  test('is removed by force by the next step once its process is gone; a container already gone counts as removed', async () => {
    for (const status of [0, 404]) {
      const dir = tempDir()
      noteOfGone(dir, actionNote(NAME))
      const e = removing(status)
      expect(await stopLeftRunning(e.engine, null, dir)).toEqual([expect.stringMatching(/: any process of it left was stopped$/)])
      expect(e.removed).toEqual([`DELETE /containers/${NAME}?force=1&v=1`])
      expect(readdirSync(join(dir, 'steps'))).toEqual([])
      // A `run:` step's marker is not the job container's business when there is none.
      expect(stops).toEqual([])
    }
  })

  test('a removal that fails keeps the note; one still running in its process is left alone (control)', async () => {
    const dir = tempDir()
    noteOfGone(dir, actionNote(NAME))
    const failing = removing(500)
    expect(await stopLeftRunning(failing.engine, 'c1', dir)).toEqual([expect.stringMatching(/could not be stopped: it may still run$/)])
    expect(readdirSync(join(dir, 'steps'))).toEqual([actionNote(NAME)])
    const live = tempDir()
    noteStep(live, actionNote(NAME))
    const e = removing(0)
    expect(await stopLeftRunning(e.engine, 'c1', live)).toEqual([])
    expect(e.removed).toEqual([])
  })

  test('only a step container name is taken (never another container the folder names)', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'steps'))
    writeFileSync(join(dir, 'steps', 'action-rch-other'), '{}')
    writeFileSync(join(dir, 'steps', `action-${NAME}x`), '{}')
    const e = removing(0)
    expect(await stopLeftRunning(e.engine, null, dir)).toEqual([])
    expect(e.removed).toEqual([])
  })
})
