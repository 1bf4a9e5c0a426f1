// The script a cancel runs in the job container to stop a step's processes (src/docker/step-stop.ts),
// run here with this machine's sh: TERM, then KILL once the grace is over, the grace counted in time.
import { randomBytes } from 'node:crypto'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { STOP_JS, STOP_SH, stopMarked } from '../../src/docker/step-stop'
import type { Engine } from '../../src/docker/engine'
import { TransportError } from '../../src/errors'
import { waitUntil } from '../helpers/wait'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

/** A step's process that ignores TERM, marked with a value of its own; `ended` gives the signal that ended it. */
function stubbornStep() {
  const value = randomBytes(8).toString('hex')
  const stubborn = spawn('sh', ['-c', "trap '' TERM; while :; do sleep 1; done"], {
    env: { ...process.env, RCH_STEP: value },
    stdio: 'ignore'
  })
  const ended = new Promise<NodeJS.Signals | null>((r) => stubborn.once('exit', (_c, sig) => r(sig)))
  return { value, stubborn, ended }
}

test('a step that ignores TERM is killed once the grace is over, however slow each turn is (the grace is time, not a count of turns)', async () => {
  const { value, stubborn, ended } = stubbornStep()
  try {
    const marked = (): boolean => {
      try {
        return readFileSync(`/proc/${stubborn.pid}/environ`, 'utf8').split('\0').includes(`RCH_STEP=${value}`)
      } catch {
        return false
      }
    }
    expect(await waitUntil(marked, 10_000, 20)).toBe(true)
    // Each turn made slow, as on a loaded VM: a `sleep` that takes 2 s whatever it is asked. Counted in
    // turns, a grace of 10 tenths took ten of them (over 20 s).
    const bin = tempDir()
    writeFileSync(`${bin}/sleep`, '#!/bin/sh\nexec /bin/sleep 2\n')
    chmodSync(`${bin}/sleep`, 0o755)
    const t0 = Date.now()
    const r = spawnSync('sh', ['-c', STOP_SH, 'sh', `RCH_STEP=${value}`, '10'], { env: { PATH: `${bin}:/usr/bin:/bin` }, timeout: 60_000 })
    const ms = Date.now() - t0
    expect({ status: r.status, stderr: r.stderr.toString() }).toEqual({ status: 0, stderr: '' })
    expect(await ended).toBe('SIGKILL') // TERM was ignored: KILL after the grace
    expect(ms).toBeLessThan(15_000)
  } finally {
    stubborn.kill('SIGKILL')
  }
})

// The node variant (images without sh or grep), in a container whose wall clock the job set back
// (as root on the VM it can): here every Date.now() reads 10 s earlier than the one before. Counted
// on the wall clock, the grace never ended and the KILL never came.
test('the node variant: a step that ignores TERM is killed once the grace is over, though the wall clock goes back', async () => {
  const { value, stubborn, ended } = stubbornStep()
  try {
    expect(await waitUntil(() => readFileSync(`/proc/${stubborn.pid}/environ`, 'utf8').includes(value), 10_000, 20)).toBe(true)
    const back = `${tempDir()}/back.js`
    writeFileSync(back, 'let t = Date.now(); Date.now = () => (t -= 10_000);\n')
    const r = spawnSync(process.execPath, ['-r', back, '-e', STOP_JS, `RCH_STEP=${value}`, '10'], { timeout: 15_000 })
    expect({ status: r.status, stderr: r.stderr.toString() }).toEqual({ status: 0, stderr: '' })
    expect(await ended).toBe('SIGKILL')
  } finally {
    stubborn.kill('SIGKILL')
  }
})

// A process the script cannot end (here the init of a pid namespace, which ignores KILL from inside
// it, as a VM where the job is root can arrange): the script says so (exit 3), so a cancel's note
// does not claim the step's processes were stopped. Control: the same with only a killable process
// marked exits 0.
test.each([
  ['the namespace init carries the marker (unkillable from inside)', true, 3],
  ['only a killable child carries it (control)', false, 0]
])('a marked process that outlives every KILL makes the script exit 3: %s', (_name, initMarked, code) => {
  const value = randomBytes(8).toString('hex')
  const inner = initMarked
    ? `trap '' TERM; sleep 30 & env -u RCH_STEP sh -c "$1" sh "RCH_STEP=$2" 2; echo "code=$?"`
    : `trap '' TERM; env RCH_STEP="$2" sleep 30 & sh -c "$1" sh "RCH_STEP=$2" 2; echo "code=$?"`
  const r = spawnSync(
    'unshare',
    ['--pid', '--fork', '--mount-proc', 'env', ...(initMarked ? [`RCH_STEP=${value}`] : []), 'sh', '-c', inner, 'sh', STOP_SH, value],
    {
      timeout: 30_000
    }
  )
  expect({ out: r.stdout.toString().trim(), stderr: r.stderr.toString() }).toEqual({ out: `code=${code}`, stderr: '' })
})

// A cancel's stop goes through the VM's Engine (exec create, start, inspect). A loaded VM may hold
// a call; the stop must give up well before the runner's SIGKILL (10 s after its SIGINT), not wait
// the default 120 s per call, nor try the node fallbacks one by one on an engine that holds them.
describe('a stop on an engine that holds its calls', () => {
  const engineThat = (held: boolean) => {
    const calls: string[] = []
    const engine = {
      call: (method: string, path: string, _body: unknown, _what: string, opts: { timeoutMs?: number } = {}) => {
        calls.push(`${method} ${path.replace(/[0-9a-f]{12,}/g, 'X')}`)
        if (!held) {
          if (path.endsWith('/exec')) return Promise.resolve({ status: 201, data: { Id: 'e'.repeat(64) } })
          if (path.endsWith('/start')) return Promise.resolve({ status: 200, data: null })
          return Promise.resolve({ status: 200, data: { Running: false, ExitCode: 0 } })
        }
        // As the real Engine does at its call bound.
        return new Promise((_r, reject) =>
          setTimeout(() => reject(new TransportError(`docker API ${path}: no answer`, 'timeout')), opts.timeoutMs ?? 120_000)
        )
      }
    } as unknown as Engine
    return { engine, calls }
  }

  test('held: given up after one call bound (5 s), and no fallback tried', async () => {
    const { engine, calls } = engineThat(true)
    const t0 = Date.now()
    await expect(stopMarked(engine, 'c'.repeat(64), 'm', 2000)).resolves.toBe(false)
    expect(Date.now() - t0).toBeLessThan(7000)
    expect(calls).toEqual(['POST /containers/X/exec'])
  }, 20_000)

  test('control: an engine that answers has the stop run, and confirmed', async () => {
    const { engine, calls } = engineThat(false)
    await expect(stopMarked(engine, 'c'.repeat(64), 'm', 2000)).resolves.toBe(true)
    expect(calls).toEqual(['POST /containers/X/exec', 'POST /exec/X/start', 'GET /exec/X/json'])
  })
})
