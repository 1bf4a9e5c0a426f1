// Host-key pinning: a known_hosts entry with a different key for [127.0.0.1]:PORT must stop the
// hook before it runs anything on the host (no trust on first use, no fallback).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, leftovers, NOTHING, staticProvider, testVm } from '../helpers/conformance'

const vm = testVm()
const keyDir = mkdtempSync(join(tmpdir(), 'rch-hostkey-'))
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'not-the-vm', '-f', join(keyDir, 'other')])
const otherKey = readFileSync(join(keyDir, 'other.pub'), 'utf8').split(' ').slice(0, 2).join(' ')
const knownHosts = join(keyDir, 'known_hosts')
writeFileSync(knownHosts, `[${vm.host}]:${vm.port} ${otherKey}\n`)

// acquireTimeoutSeconds 0: one attempt, no waiting for the host to "come back"
const runner = new FakeRunner({ config: { provider: staticProvider(vm, { knownHostsFile: knownHosts }, { acquireTimeoutSeconds: 0 }) } })
// the operator's config as documented: no acquireTimeoutSeconds (default 600 s)
const plain = new FakeRunner({ config: { provider: staticProvider(vm, { knownHostsFile: knownHosts }) } })

afterAll(async () => {
  for (const r of [runner, plain]) {
    await r.cleanup()
    r.dispose()
  }
  rmSync(keyDir, { recursive: true, force: true })
})

test('the pinned key differs from the real one', () => {
  const real = readFileSync(vm.knownHostsFile, 'utf8')
  expect(real).toContain(`[${vm.host}]:${vm.port} ssh-ed25519 `)
  expect(real).not.toContain(otherKey.split(' ')[1])
})

test('prepare_job fails with an ::error:: about host key verification and starts nothing', async () => {
  const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [runner.service(testImages.tiny)] })
  expect(r.code).not.toBe(0)
  const errors = errorLines(r)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toMatch(/host key verification/i)
  expect(r.response).toBeNull()
  expect(await leftovers(runner, vm)).toEqual(NOTHING)
})

test('with the default acquireTimeoutSeconds, a host-key mismatch fails prepare_job at once instead of being retried like a busy host', async () => {
  // A wrong host key is not a busy host: retrying it cannot help, and the job would hang for
  // acquireTimeoutSeconds (10 minutes by default) with "waiting for a free host".
  const { child, done } = plain.start('prepare_job', { container: plain.jobContainer(testImages.tiny), services: [] }, { state: null })
  let out = ''
  child.stdout!.on('data', (c) => (out += c))
  // Either the hook ends, or it makes a second connection attempt to the same host.
  const outcome = await new Promise<'exited' | 'retried'>((resolve) => {
    const t = setInterval(() => {
      if ((out.match(/host key verification failed/gi) ?? []).length >= 2) {
        clearInterval(t)
        resolve('retried')
      }
    }, 20)
    child.once('close', () => {
      clearInterval(t)
      resolve('exited')
    })
  })
  if (outcome === 'retried') child.kill('SIGKILL')
  const r = await done
  expect(outcome === 'exited' ? outcome : `retried the same host after a host-key failure; stdout:\n${r.stdout}`).toBe('exited')
  expect(r.code).not.toBe(0)
  expect(errorLines(r).join('\n')).toMatch(/host key verification/i)
  expect(await leftovers(plain, vm)).toEqual(NOTHING)
})
