// The two test files that load the machine hardest never run at the same time, whatever the
// number of Jest workers: run together, the chaos soak and the pool load test starve each other of
// CPU, and both time out. The sequencer orders them apart; this lock
// makes that hold when a worker comes free early. A file takes it in beforeAll and gives it back in
// afterAll; a holder that died (a killed worker) is passed over.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { startOwnMoto, type OwnMoto } from './ec2-env'
import { testenvDir } from './testenv'
import { running, waitUntil } from './wait'

const LOCK = path.join(testenvDir, 'heavy.lock')

/** One try: true once this process holds the lock. */
function tryTake(): boolean {
  const mine = String(process.pid)
  try {
    fs.mkdirSync(testenvDir, { recursive: true })
    // written under a name of its own and linked into place: the lock never exists without its holder
    const tmp = `${LOCK}.${mine}`
    fs.writeFileSync(tmp, mine)
    try {
      fs.linkSync(tmp, LOCK)
      return true
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
  }
  let holder: number
  try {
    holder = Number(fs.readFileSync(LOCK, 'utf8'))
  } catch {
    return false // given back meanwhile: the next try takes it
  }
  if (holder === process.pid) return true
  // Passing a dead holder over is safe while one other file waits at most (two files use the lock).
  if (!Number.isInteger(holder) || holder <= 0 || !running(holder)) fs.rmSync(LOCK, { force: true })
  return false
}

/**
 * Waits up to timeoutMs for the lock (the other heavy file's whole run) and takes it. The returned
 * function gives it back; it leaves alone a lock that is no longer this process's.
 */
export async function holdHeavy(timeoutMs: number): Promise<() => void> {
  if (!(await waitUntil(tryTake, timeoutMs, 500))) {
    let holder = '?'
    try {
      holder = fs.readFileSync(LOCK, 'utf8')
    } catch {
      // gone just now
    }
    throw new Error(`the heavy-test lock ${LOCK} was not free within ${timeoutMs} ms (held by pid ${holder})`)
  }
  return () => {
    try {
      if (fs.readFileSync(LOCK, 'utf8') === String(process.pid)) fs.rmSync(LOCK, { force: true })
    } catch {
      // not there
    }
  }
}

/**
 * A heavy file's turn: the lock, then a moto of its own, where its many EC2 calls do not hold up
 * other files' (ec2-env.ts; loadMoto() in the file names it). The returned end stops that moto and
 * always gives the lock back, so a failed file never keeps the other heavy file waiting.
 */
export async function heavyTurn(timeoutMs: number): Promise<() => Promise<void>> {
  const giveBack = await holdHeavy(timeoutMs)
  let moto: OwnMoto
  try {
    moto = await startOwnMoto()
  } catch (e) {
    giveBack()
    throw e
  }
  return async () => {
    try {
      await moto.stop()
    } finally {
      giveBack()
    }
  }
}
