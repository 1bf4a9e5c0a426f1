// A pull that fails in a way the registry may not repeat (a 5xx, a rate limit, a reset connection)
// is tried again, up to three attempts as the runner's own docker support does; an answer a retry
// cannot change (no such image, no access) and a timeout are not. docker is a stand-in script that
// counts its pulls and answers by a plan.
import { PULL_ATTEMPTS, PullFailed, pullImage } from '../../src/docker/cli'
import { Cancelled } from '../../src/errors'
import { readFileSync } from 'node:fs'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'
import { LocalRemote } from './local-remote'

afterAll(cleanupTempDirs)

const TRANSIENT = 'Error response from daemon: received unexpected HTTP status: 503 Service Unavailable'

/** A docker whose n-th pull fails with `answers[n-1]` on stderr (exit 1), or succeeds past the list (or sleeps on `hang`). */
function planned(answers: string[]): { remote: LocalRemote; pulls: () => number } {
  const dir = tempDir()
  const cases = answers.map((a, i) => `${i + 1}) ${a === 'hang' ? 'sleep 30' : `echo '${a}' >&2; exit 1`};;`).join(' ')
  const docker = `n=$(cat ${dir}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${dir}/n; case $n in ${cases} *) echo pulled;; esac`
  return {
    remote: new LocalRemote(dir, {}, { docker }),
    pulls: () => {
      try {
        return Number(readFileSync(`${dir}/n`, 'utf8'))
      } catch {
        return 0
      }
    }
  }
}

test('a pull the registry failed once is tried again and succeeds, with a line for the step log', async () => {
  const f = planned([TRANSIENT])
  const lines: string[] = []
  await expect(pullImage(f.remote, 'img:1', null, '/nowhere', undefined, { onRetry: (l) => lines.push(l) })).resolves.toBe('pulled')
  expect(f.pulls()).toBe(2)
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(
    /^docker pull img:1 failed \(exit code 1\): .*503 Service Unavailable; trying again in [12] s \(attempt 2 of 3\)$/
  )
})

test(`a pull that keeps failing fails after ${PULL_ATTEMPTS} attempts with the registry's words`, async () => {
  const f = planned([TRANSIENT, TRANSIENT, TRANSIENT, TRANSIENT])
  const err = await pullImage(f.remote, 'img:1', null, '/nowhere').catch((e: unknown) => e)
  expect(err).toBeInstanceOf(PullFailed)
  expect((err as PullFailed).final).toBe(false)
  expect((err as Error).message).toContain('503 Service Unavailable')
  expect(f.pulls()).toBe(PULL_ATTEMPTS)
})

test.each([
  ['no such tag', 'Error response from daemon: manifest for img:1 not found: manifest unknown: manifest unknown'],
  ['no access', "Error response from daemon: pull access denied for img, repository does not exist or may require 'docker login'"],
  ['no credentials', 'Error response from daemon: Head "https://r/v2/img/manifests/1": no basic auth credentials'],
  ['a wrong password', 'Error response from daemon: Get "https://r/v2/": unauthorized: authentication required'],
  ['no such tag (containerd store)', 'Error response from daemon: failed to resolve reference "r/img:1": r/img:1: not found'],
  ['a full image id as a name', 'invalid repository name (' + 'a'.repeat(64) + '), cannot specify 64-byte hexadecimal strings']
])('an answer a retry cannot change (%s) fails at once', async (_, answer) => {
  const f = planned([answer])
  const err = await pullImage(f.remote, 'img:1', null, '/nowhere').catch((e: unknown) => e)
  expect(err).toBeInstanceOf(PullFailed)
  expect((err as PullFailed).final).toBe(true)
  expect(f.pulls()).toBe(1)
})

test('a passing "not found" (a layer missing during an unpack) is not taken for the final answer: tried again', async () => {
  const f = planned(['failed to register layer: failed to extract layer sha256:ab: content digest sha256:cd: not found'])
  await expect(pullImage(f.remote, 'img:1', null, '/nowhere')).resolves.toBe('pulled')
  expect(f.pulls()).toBe(2)
})

test('a pull that timed out is not tried again (it already took images.pullTimeoutSeconds)', async () => {
  const f = planned(['hang'])
  await expect(pullImage(f.remote, 'img:1', null, '/nowhere', undefined, { timeoutMs: 300 })).rejects.toThrow(
    'docker pull img:1: no result after 0.3 s'
  )
  expect(f.pulls()).toBe(1)
})

test('a cancel during the pause between attempts ends the pull at once with Cancelled', async () => {
  const f = planned([TRANSIENT, TRANSIENT])
  const c = new AbortController()
  let retrying = false
  const going = pullImage(f.remote, 'img:1', null, '/nowhere', undefined, { signal: c.signal, onRetry: () => (retrying = true) }).catch(
    (e: unknown) => e
  )
  expect(await waitUntil(() => retrying, 10_000, 5)).toBe(true)
  const t0 = Date.now()
  c.abort('SIGINT')
  const err = await going
  expect(err).toBeInstanceOf(Cancelled)
  expect((err as Error).message).toBe('cancelled by SIGINT')
  expect(Date.now() - t0).toBeLessThan(500)
  expect(f.pulls()).toBe(1)
})
