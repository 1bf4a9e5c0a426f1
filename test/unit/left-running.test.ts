// The job folder's note of each running step (left-running.ts): noted, ended, and stopped by the
// next step when its end was never known; never a folder made where the job's folder is gone.
import { existsSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Engine } from '../../src/docker/engine'
import { cleanupTempDirs, tempDir } from './_helpers'

const stops: string[] = []
let stopWorks = true
jest.mock('../../src/docker/step-stop', () => ({
  stopMarked: async (_e: unknown, container: string, marker: string) => {
    stops.push(`${container} ${marker}`)
    return stopWorks
  }
}))
import { noteStep, stepEnded, stopLeftRunning } from '../../src/docker/left-running'

afterAll(cleanupTempDirs)
beforeEach(() => {
  stops.length = 0
  stopWorks = true
})

const engine = {} as Engine
const A = 'a'.repeat(32)
const B = 'b'.repeat(32)

test('a step noted and ended leaves nothing for the next step to stop (control)', async () => {
  const dir = tempDir()
  expect(noteStep(dir, A)).toBeNull()
  stepEnded(dir, A)
  expect(await stopLeftRunning(engine, 'c1', dir)).toEqual([])
  expect(stops).toEqual([])
})

test('a step whose end was never known is stopped by the next, once; one whose stop fails stays noted', async () => {
  const dir = tempDir()
  noteStep(dir, A)
  noteStep(dir, B)
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
  noteStep(dir, A)
  mkdirSync(join(dir, 'steps', 'not-a-marker'))
  expect(await stopLeftRunning(engine, 'c1', dir)).toHaveLength(1)
  expect(stops).toEqual([`c1 ${A}`])
})
