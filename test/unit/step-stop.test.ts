// The script a cancel runs in the job container to stop a step's processes (src/docker/step-stop.ts),
// run here with this machine's sh: TERM, then KILL once the grace is over, the grace counted in time.
import { randomBytes } from 'node:crypto'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { STOP_SH } from '../../src/docker/step-stop'
import { waitUntil } from '../helpers/wait'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

test('a step that ignores TERM is killed once the grace is over, however slow each turn is (the grace is time, not a count of turns)', async () => {
  const value = randomBytes(8).toString('hex')
  const stubborn = spawn('sh', ['-c', "trap '' TERM; while :; do sleep 1; done"], {
    env: { ...process.env, RCH_STEP: value },
    stdio: 'ignore'
  })
  const ended = new Promise<NodeJS.Signals | null>((r) => stubborn.once('exit', (_c, sig) => r(sig)))
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
