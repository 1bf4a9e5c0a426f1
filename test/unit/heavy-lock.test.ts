// The lock that keeps the chaos soak and the pool load test apart (test/helpers/heavy-lock.ts),
// and the turn they take with it.
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { settlesWithin } from '../helpers/wait'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-heavy-lock-'))
process.env.RCH_TESTENV_DIR = dir
// required once RCH_TESTENV_DIR is set
const { heavyTurn, holdHeavy } = require('../helpers/heavy-lock') as typeof import('../helpers/heavy-lock')
const LOCK = path.join(dir, 'heavy.lock')

let other: ChildProcess | undefined
afterEach(() => {
  other?.kill('SIGKILL')
  other = undefined
  fs.rmSync(LOCK, { force: true })
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

/** A live process standing in for another Jest worker that holds the lock. */
async function otherHolder(): Promise<ChildProcess> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' })
  await new Promise((r) => child.once('spawn', r))
  fs.writeFileSync(LOCK, String(child.pid))
  return child
}

test('a free lock is taken at once and given back', async () => {
  const giveBack = await holdHeavy(1_000)
  expect(fs.readFileSync(LOCK, 'utf8')).toBe(String(process.pid))
  giveBack()
  expect(fs.existsSync(LOCK)).toBe(false)
})

test('a live holder keeps it: the wait ends in an error naming the holder', async () => {
  other = await otherHolder()
  await expect(holdHeavy(1_200)).rejects.toThrow(`held by pid ${other.pid}`)
  expect(fs.readFileSync(LOCK, 'utf8')).toBe(String(other.pid))
})

test('it is taken as soon as the holder gives it back, and a holder that died is passed over', async () => {
  other = await otherHolder()
  const taking = holdHeavy(10_000)
  expect(await settlesWithin(taking, 700)).toBe(false) // still waiting
  fs.rmSync(LOCK) // given back
  const giveBack = await taking
  expect(fs.readFileSync(LOCK, 'utf8')).toBe(String(process.pid))
  giveBack()

  other.kill('SIGKILL')
  other = await otherHolder()
  const died = new Promise((r) => other!.once('exit', r))
  other.kill('SIGKILL')
  await died
  const again = await holdHeavy(5_000)
  expect(fs.readFileSync(LOCK, 'utf8')).toBe(String(process.pid))
  again()
})

test("giving back leaves alone a lock that is no longer this process's", async () => {
  const giveBack = await holdHeavy(1_000)
  other = await otherHolder() // taken over as if this one had been passed over
  giveBack()
  expect(fs.readFileSync(LOCK, 'utf8')).toBe(String(other.pid))
})

test('a heavy turn takes the lock before its moto, and gives it back when the moto fails to start', async () => {
  // the lock first: a live holder keeps the turn waiting, and no moto is started
  other = await otherHolder()
  await expect(heavyTurn(1_200)).rejects.toThrow(`held by pid ${other.pid}`)
  other.kill('SIGKILL')
  other = undefined
  fs.rmSync(LOCK)
  // this test folder has no shared moto to copy, so the start fails with the lock held
  await expect(heavyTurn(1_000)).rejects.toThrow(/moto/)
  expect(fs.existsSync(LOCK)).toBe(false)
})
