// cleanup_job through a job agent whose own SSH connection went silent without closing (a NAT that
// forgot it, a cut network): the agent still answers on its local socket, and its commands would
// wait on a connection that never answers until its keepalives find it lost (keepaliveSeconds).
// cleanup_job must find that out within its own short bound and go over a new connection: the
// job's containers, its folder and its slot all removed and given back, the exit 0, the agent
// ended. The VM's sshd is reached through a proxy that can stall what it carries.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dockerIds, FakeRunner } from '../helpers/fake-runner'
import { errorLines, leaseSlots, scanCmdlines, staticProvider, testVm } from '../helpers/conformance'
import { stallProxy, type StallProxy } from '../helpers/stall-proxy'
import { testImages } from '../helpers/testenv'
import { LABEL_JOB } from '../../src/labels'

jest.setTimeout(180_000)

const vm = testVm()
let proxy: StallProxy
let dir: string

beforeAll(async () => {
  proxy = await stallProxy(vm.port)
  dir = mkdtempSync(join(tmpdir(), 'rch-half-open-'))
})

afterAll(async () => {
  await proxy.close()
  rmSync(dir, { recursive: true, force: true })
})

test('cleanup_job through an agent whose connection stalled removes everything and gives the slot back over a new one', async () => {
  // The VM's host key, pinned for the proxy's port.
  const known = readFileSync(vm.knownHostsFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`[${vm.host}]:${vm.port} `))
    .map((l) => l.replace(`[${vm.host}]:${vm.port} `, `[${vm.host}]:${proxy.port} `))
  expect(known.length).toBeGreaterThan(0)
  const knownFile = join(dir, 'known_hosts')
  writeFileSync(knownFile, known.join('\n') + '\n')
  const runner = new FakeRunner({
    config: {
      provider: staticProvider(vm, { port: proxy.port, knownHostsFile: knownFile, slots: 8 }, { acquireTimeoutSeconds: 120 }),
      // The agent's own keepalives would find the stall only after two minutes.
      timeouts: { healthSeconds: 60, connectSeconds: 10, keepaliveSeconds: 120 },
      agent: { idleSeconds: 120 }
    }
  })
  let cleaned = false
  try {
    const p = await runner.prepare({ container: runner.jobContainer(testImages.glibc), services: [] })
    expect(p.code).toBe(0)
    const jobId = (runner.state as { jobId: string }).jobId
    const s = runner.scriptStep('echo through-the-agent', { shell: 'sh' })
    const step = await runner.call('run_script_step', s.args)
    expect(step.code).toBe(0)
    expect(step.stdout).toContain('through-the-agent')
    // Controls: the job's container runs, its slot is held, and its agent holds a connection open.
    expect(await dockerIds(`label=${LABEL_JOB}=${jobId}`)).toHaveLength(1)
    expect(leaseSlots(vm, 'job', jobId)).toHaveLength(1)
    const agents = scanCmdlines(`${runner.owner}-${jobId}`).filter((c) => c.cmdline.includes('__agent'))
    expect(agents.length).toBeGreaterThan(0)
    const before = proxy.connections()
    expect(proxy.stall()).toBeGreaterThan(0)
    const stalledBytes = proxy.forwarded()

    const c = await runner.cleanup()
    cleaned = c.code === 0
    expect(errorLines(c)).toEqual([])
    expect(c.code).toBe(0)
    // Not held until the agent's keepalives gave up (its round trip is bounded at 10 s).
    expect(c.ms).toBeLessThan(60_000)
    expect(proxy.connections()).toBeGreaterThan(before)
    expect(proxy.forwarded()).toBeGreaterThan(stalledBytes)
    expect(await dockerIds(`label=${LABEL_JOB}=${jobId}`)).toEqual([])
    expect(leaseSlots(vm, 'job', jobId)).toEqual([])
    expect(existsSync((runner.state as { jobRoot: string }).jobRoot)).toBe(false)
    expect(scanCmdlines(`${runner.owner}-${jobId}`).filter((x) => x.cmdline.includes('__agent'))).toEqual([])
  } finally {
    if (runner.state && !cleaned) await runner.cleanup()
    runner.dispose()
  }
})
