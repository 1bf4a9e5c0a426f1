/**
 * The EC2 provider under faults, through dist/index.js: test/helpers/fault-proxy.ts sits between
 * the hook and moto and injects what EC2 does on a bad day - throttling, lost responses,
 * capacity errors per instance type / subnet, spot failures - and an instance is terminated
 * under a running step. The stand-in instance (test/helpers/fake-instance.ts) talks to moto
 * directly, so every injected fault hits the hook. Loopback only.
 */
import { DescribeSubnetsCommand, type EC2Client, TerminateInstancesCommand } from '@aws-sdk/client-ec2'
import { ec2Client, motoImageId } from '../helpers/ec2-env'
import {
  EC2_HOOK_ENV,
  LIVE_STATES,
  describeInstance,
  dumpRun,
  ec2RunnerConfig,
  hookCall,
  hookPrepare,
  instanceName,
  instancesOfOwner,
  startInstanceBooter,
  waitInstanceState,
  type InstanceBooter
} from '../helpers/fake-instance'
import { FakeRunner, TEST_LEDGER, type HookRun } from '../helpers/fake-runner'
import { LocalLedger } from '../../src/fleet/local-ledger'
import { FleetSchema } from '../../src/config'
import { type FaultProxy, type ProxiedRequest, isSpotRequest, startFaultProxy } from '../helpers/fault-proxy'
import { errorLines } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'

jest.setTimeout(180_000)
// the test process's own SDK client would warn about Node 20 (the hook silences it itself)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

let ec2: EC2Client
let ami: string

beforeAll(async () => {
  ec2 = ec2Client()
  ami = await motoImageId(ec2)
})
afterAll(() => ec2?.destroy())

/** One job through the fault proxy: its runner, stand-in instance and proxy, torn down by end(). */
interface Rig {
  runner: FakeRunner
  owner: string
  proxy: FaultProxy
  booter: InstanceBooter
  end(): Promise<void>
}

async function rig(label: string, provider: Record<string, unknown> = {}, more: Record<string, unknown> = {}): Promise<Rig> {
  const name = instanceName(`ec2f-${label}`)
  const proxy = await startFaultProxy()
  const runner = new FakeRunner({
    name: `ec2-fault-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    config: { ...ec2RunnerConfig({ endpoint: proxy.endpoint, imageId: ami, name, provider }), ...more }
  })
  const owner = runner.owner
  const booter = startInstanceBooter(ec2, { owner, name: () => name })
  return {
    runner,
    owner,
    proxy,
    booter,
    async end() {
      try {
        if (runner.state) await hookCall(runner, 'cleanup_job', {})
        // whatever happened, nothing of this runner may stay up (the next line proves the tests' own claims)
        await hookCall(runner, 'cleanup_job', {}, { state: null })
      } finally {
        await booter.stop()
        await proxy.close()
        runner.dispose()
      }
    }
  }
}

const jobArgs = (runner: FakeRunner) => ({ container: runner.jobContainer(testImages.glibc), services: [] })
const ok = (r: HookRun, booter?: InstanceBooter) => ({ errors: errorLines(r), code: r.code, out: r.code ? dumpRun(r, booter) : '' })
const OK = { errors: [], code: 0, out: '' }
const runCalls = (p: FaultProxy) =>
  p.calls('RunInstances').map((c: ProxiedRequest) => ({
    market: c.params.get('InstanceMarketOptions.MarketType') ?? 'on-demand',
    type: c.params.get('InstanceType'),
    subnet: c.params.get('SubnetId'),
    fault: c.fault ?? null
  }))
const tokens = (p: FaultProxy) => p.calls('RunInstances').map((c) => c.params.get('ClientToken'))

async function cleanupTerminates(r: Rig, id: string): Promise<void> {
  const c = await hookCall(r.runner, 'cleanup_job', {})
  expect(ok(c)).toEqual(OK)
  r.runner.state = null
  await waitInstanceState(ec2, id, 'terminated')
  expect(await instancesOfOwner(ec2, r.owner, LIVE_STATES)).toEqual([])
}

describe('EC2 API faults through a fault-injecting proxy', () => {
  test('throttling on DescribeInstances (x2) and a lost RunInstances response: retried, one instance, same idempotency token', async () => {
    const r = await rig('throttle')
    try {
      const throttle = r.proxy.fail({
        action: 'DescribeInstances',
        times: 2,
        code: 'RequestLimitExceeded',
        message: 'Request limit exceeded.',
        status: 503
      })
      // the launch reaches moto, its answer is lost: the retry must get the same instance back
      const lost = r.proxy.fail({ action: 'RunInstances', times: 1, forward: true, code: 'InternalError', status: 500 })
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      expect(throttle.hits).toBe(2)
      expect(lost.hits).toBe(1)
      expect(
        r.proxy
          .calls('DescribeInstances')
          .slice(0, 3)
          .map((c) => c.status)
      ).toEqual([503, 503, 200])
      const runs = r.proxy.calls('RunInstances')
      expect(runs.map((c) => [c.fault ?? 'ok', c.replayed ?? false])).toEqual([
        ['InternalError', false],
        ['ok', true]
      ])
      expect(new Set(tokens(r.proxy)).size).toBe(1)
      const mine = await instancesOfOwner(ec2, r.owner)
      expect(mine.map((i) => i.InstanceId)).toEqual([(r.runner.state as any).host.instanceId])
      await cleanupTerminates(r, mine[0].InstanceId!)
    } finally {
      await r.end()
    }
  })

  test('capacity errors move on: next subnet, then next instance type, a new ClientToken for each different request', async () => {
    const subnets = await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }))
    const [a, b] = (subnets.Subnets ?? []).map((s) => s.SubnetId!).sort()
    expect(a && b).toBeTruthy()
    const r = await rig('capacity', { instanceTypes: ['m7i.large', 'm6i.large'], subnetIds: [a, b] })
    try {
      r.proxy.fail({
        action: 'RunInstances',
        when: (q) => q.get('InstanceType') === 'm7i.large' || q.get('SubnetId') === a,
        code: 'InsufficientInstanceCapacity',
        message: 'We currently do not have sufficient capacity in the Availability Zone you requested.',
        status: 500
      })
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      expect(runCalls(r.proxy)).toEqual([
        { market: 'on-demand', type: 'm7i.large', subnet: a, fault: 'InsufficientInstanceCapacity' },
        { market: 'on-demand', type: 'm7i.large', subnet: b, fault: 'InsufficientInstanceCapacity' },
        { market: 'on-demand', type: 'm6i.large', subnet: a, fault: 'InsufficientInstanceCapacity' },
        { market: 'on-demand', type: 'm6i.large', subnet: b, fault: null }
      ])
      // capacity errors are not retried with the same request, and no token is reused
      expect(new Set(tokens(r.proxy)).size).toBe(4)
      expect(p.stdout).toContain(
        `[remote-hooks] no capacity for on-demand m7i.large in ${a} (InsufficientInstanceCapacity), trying the next option`
      )
      const id = (r.runner.state as any).host.instanceId as string
      expect(p.stdout).toContain(`[remote-hooks] launched ${id} (on-demand m6i.large in ${b})`)
      const inst = await describeInstance(ec2, id)
      expect({ type: inst.InstanceType, subnet: inst.SubnetId }).toEqual({ type: 'm6i.large', subnet: b })
      await cleanupTerminates(r, id)
    } finally {
      await r.end()
    }
  })

  test('spot-with-on-demand-fallback: spot fails for every type, on-demand is used', async () => {
    const r = await rig('spot', { market: 'spot-with-on-demand-fallback' })
    try {
      r.proxy.fail({
        action: 'RunInstances',
        when: isSpotRequest,
        times: 1,
        code: 'SpotMaxPriceTooLow',
        message: 'Your Spot request price is lower than the minimum required Spot request fulfillment price.'
      })
      r.proxy.fail({ action: 'RunInstances', when: isSpotRequest, code: 'InsufficientInstanceCapacity', status: 500 })
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      expect(runCalls(r.proxy)).toEqual([
        { market: 'spot', type: 'm7i.large', subnet: null, fault: 'SpotMaxPriceTooLow' },
        { market: 'spot', type: 'm6i.large', subnet: null, fault: 'InsufficientInstanceCapacity' },
        { market: 'on-demand', type: 'm7i.large', subnet: null, fault: null }
      ])
      expect(new Set(tokens(r.proxy)).size).toBe(3)
      const id = (r.runner.state as any).host.instanceId as string
      expect(p.stdout).toContain(`[remote-hooks] launched ${id} (on-demand m7i.large)`)
      expect((await describeInstance(ec2, id)).InstanceLifecycle).toBeUndefined() // not spot
      await cleanupTerminates(r, id)
    } finally {
      await r.end()
    }
  })

  test('spot when it is available: the instance is a spot instance that terminates on interruption', async () => {
    const r = await rig('spotok', { market: 'spot-with-on-demand-fallback' })
    try {
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      const [run] = r.proxy.calls('RunInstances')
      expect(run.params.get('InstanceMarketOptions.MarketType')).toBe('spot')
      expect(run.params.get('InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior')).toBe('terminate')
      // The Spot request the launch creates is tagged by the same call, owner tag included.
      const specs = [...run.params.entries()].filter(([k]) => /^TagSpecification\.\d+\.ResourceType$/.test(k))
      expect(specs.map(([, v]) => v)).toEqual(['instance', 'volume', 'network-interface', 'spot-instances-request'])
      const spotSpec = specs[3][0].replace(/ResourceType$/, '')
      const keys = [...run.params.entries()].filter(([k]) => k.startsWith(spotSpec) && k.endsWith('.Key')).map(([, v]) => v)
      expect(keys).toContain('remote-container-hooks:owner')
      const id = (r.runner.state as any).host.instanceId as string
      expect((await describeInstance(ec2, id)).InstanceLifecycle).toBe('spot')
      await cleanupTerminates(r, id)
    } finally {
      await r.end()
    }
  })

  test('no capacity anywhere: prepare_job fails at once with one ::error:: that says what was tried; nothing launched', async () => {
    const r = await rig('none', { market: 'spot-with-on-demand-fallback' })
    try {
      r.proxy.fail({ action: 'RunInstances', when: isSpotRequest, code: 'InsufficientInstanceCapacity', status: 500 })
      r.proxy.fail({ action: 'RunInstances', code: 'InsufficientInstanceCapacity', status: 500 })
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(p.code).not.toBe(0)
      expect(p.ms).toBeLessThan(20_000)
      const errors = errorLines(p)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/^::error::no EC2 capacity for this job; tried /)
      for (const what of ['spot m7i.large', 'spot m6i.large', 'on-demand m7i.large', 'on-demand m6i.large']) {
        expect(errors[0]).toContain(`${what}: InsufficientInstanceCapacity`)
      }
      expect(runCalls(r.proxy).map((c) => `${c.market} ${c.type}`)).toEqual([
        'spot m7i.large',
        'spot m6i.large',
        'on-demand m7i.large',
        'on-demand m6i.large'
      ])
      expect(new Set(tokens(r.proxy)).size).toBe(4)
      // no wait for an instance: the only DescribeInstances is the look for this runner's leftovers (by tag)
      expect(
        r.proxy.calls('DescribeInstances').filter((c) => c.params.has('InstanceId.1') || !c.params.get('Filter.1.Name')?.startsWith('tag:'))
      ).toEqual([])
      expect(await instancesOfOwner(ec2, r.owner)).toEqual([])
    } finally {
      await r.end()
    }
  })

  test('eventual consistency: DescribeInstances right after launch does not know the instance yet - waited for, not given up', async () => {
    const r = await rig('notyet')
    try {
      const f = r.proxy.fail({
        action: 'DescribeInstances',
        times: 2,
        code: 'InvalidInstanceID.NotFound',
        message: 'The instance ID does not exist'
      })
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      expect(f.hits).toBe(2)
      expect(r.proxy.calls('RunInstances')).toHaveLength(1)
      await cleanupTerminates(r, (r.runner.state as any).host.instanceId)
    } finally {
      await r.end()
    }
  })

  test('eventual consistency: TerminateInstances answering InvalidInstanceID.NotFound once still ends with the instance terminated', async () => {
    const r = await rig('termnotyet')
    try {
      const p = await hookPrepare(r.runner, jobArgs(r.runner))
      expect(ok(p, r.booter)).toEqual(OK)
      const id = (r.runner.state as any).host.instanceId as string
      const f = r.proxy.fail({
        action: 'TerminateInstances',
        times: 1,
        code: 'InvalidInstanceID.NotFound',
        message: 'The instance ID does not exist'
      })
      const c = await hookCall(r.runner, 'cleanup_job', {})
      expect(ok(c)).toEqual(OK)
      r.runner.state = null
      expect(f.hits).toBe(1)
      expect(c.stdout).toContain(`[remote-hooks] terminated ${id}`)
      expect((await describeInstance(ec2, id)).State?.Name).toMatch(/^(shutting-down|terminated)$/)
    } finally {
      await r.end()
    }
  })

  /**
   * A step whose machine goes away under it: terminated through the API and its sshd gone, or only
   * its sshd gone (the instance still running in EC2). The step fails; a second ::error:: line says
   * what became of the machine; cleanup_job still exits 0 and leaves nothing running.
   */
  async function machineLostMidStep(
    r: Rig,
    how: { terminate: boolean; first?: () => Promise<void> }
  ): Promise<{ id: string; errors: string[]; out: string; lost: string | undefined }> {
    const p = await hookPrepare(r.runner, jobArgs(r.runner))
    expect(ok(p, r.booter)).toEqual(OK)
    const id = (r.runner.state as any).host.instanceId as string
    const jobId = (r.runner.state as any).jobId as string
    await how.first?.()

    const { args } = r.runner.scriptStep('echo step-started\nsleep 30\necho not-reached\n')
    // the runner gives every hook command the same environment: the AWS credentials too
    const run = r.runner.start('run_script_step', args, { env: EC2_HOOK_ENV })
    const kill = setTimeout(() => run.child.kill('SIGTERM'), 60_000)
    let out = ''
    await new Promise<void>((resolve, reject) => {
      run.child.stdout!.on('data', (d) => {
        out += d
        if (out.includes('step-started')) resolve()
      })
      run.child.once('close', () => reject(new Error(`step ended before it started: ${out}`)))
    })
    const t0 = Date.now()
    if (how.terminate) await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
    await r.booter.kill(id)
    const s = await run.done
    clearTimeout(kill)
    expect(s.signal).toBeNull()
    expect(s.code).toBe(75)
    expect(s.stdout).not.toContain('not-reached')
    expect(Date.now() - t0).toBeLessThan(25_000)
    // the cause, as report counts it, on the job's record in the runner's ledger
    const ledger = new LocalLedger(FleetSchema.parse({}), TEST_LEDGER, { now: () => Date.now() })
    const lost = (await ledger.jobs()).find((j) => j.jobId === jobId)?.lost

    const c = await hookCall(r.runner, 'cleanup_job', {})
    expect(ok(c)).toEqual(OK)
    r.runner.state = null
    await waitInstanceState(ec2, id, 'terminated')
    expect(await instancesOfOwner(ec2, r.owner, LIVE_STATES)).toEqual([])
    return { id, errors: errorLines(s), out: dumpRun(s), lost }
  }

  test('an instance terminated mid-job: the running step fails and says the instance was ended through the EC2 API', async () => {
    const r = await rig('midjob')
    try {
      const { id, errors, out, lost } = await machineLostMidStep(r, { terminate: true })
      expect(lost).toBe('api')
      expect({ errors, out: errors.length === 2 ? '' : out }).toEqual({
        errors: [
          // the step's own words from the agent, which waits for the step to fail before it ends
          // (not "lost the job's agent during the step (no exit status)")
          expect.stringMatching(/^::error::the connection to 127\.0\.0\.1 is gone/),
          `::error::the job's machine ${id} is terminated: it was ended through the EC2 API (by a person, a script, an Auto Scaling group or a reaper) (EC2: Client.UserInitiatedShutdown: User initiated shutdown)`
        ],
        out: ''
      })
    } finally {
      await r.end()
    }
  })

  test('a machine lost while EC2 still runs it (agent off: the step runs in the hook process): "still running", the connection failed', async () => {
    const r = await rig('midjob-live', {}, { agent: { enabled: false } })
    try {
      const { id, errors, out, lost } = await machineLostMidStep(r, { terminate: false })
      expect(lost).toBe('running')
      expect({ errors, out: errors.length === 2 ? '' : out }).toEqual({
        errors: [
          expect.stringMatching(/^::error::.*(lost|connection|closed)/i),
          `::error::the job's machine ${id} is still running in EC2: the connection to it failed, not the machine`
        ],
        out: ''
      })
    } finally {
      await r.end()
    }
  })

  /** The positive control of the adversarial cases below: the same job's machine, lost for real afterwards, is explained (EC2 asked). */
  function expectRealLossExplained(r: Rig, lost: { id: string; errors: string[]; out: string }): void {
    expect({ errors: lost.errors, out: lost.errors.length === 2 ? '' : lost.out }).toEqual({
      errors: [
        // the step's own words; a job's second step goes through the step shell, which says it ended
        expect.stringMatching(/^::error::.*(lost|connection|closed|the step shell ended)/i),
        `::error::the job's machine ${lost.id} is still running in EC2: the connection to it failed, not the machine`
      ],
      out: ''
    })
    expect(r.proxy.calls('DescribeInstances').length).toBeGreaterThan(0)
  }

  // Adversarial: a step that kills its step shell (its parent) ends that shell's stream on a
  // connection that still works. That is the job's doing, not a lost machine: exit 75 as documented,
  // but no line about the machine and no EC2 lookup. Positive control in the same job: its machine
  // lost for real afterwards is explained.
  test('a step that kills its step shell is no lost machine: no line about the machine, EC2 not asked', async () => {
    const r = await rig('shellkill')
    try {
      const via = (s: HookRun): string => (/; step by (the step shell|docker exec)/.exec(s.stdout) ?? [])[1] ?? 'unknown'
      const DEBUG = { env: { RUNNER_DEBUG: '1' } }
      const { id, errors, out } = await machineLostMidStep(r, {
        terminate: false,
        first: async () => {
          // The shell starts after the first step's exec, in the background: up to three more steps
          // may go by exec before one finds it ready.
          let through = 'unknown'
          for (let i = 0; i < 4 && through !== 'the step shell'; i++) {
            const s = await hookCall(r.runner, 'run_script_step', r.runner.scriptStep('true\n').args, DEBUG)
            expect(s.code).toBe(0)
            through = via(s)
          }
          expect(through).toBe('the step shell')
          r.proxy.clearLog()
          const k = await hookCall(r.runner, 'run_script_step', r.runner.scriptStep('kill -KILL $PPID\necho after-kill\n').args)
          expect({ code: k.code, errors: errorLines(k) }).toEqual({
            code: 75,
            errors: [expect.stringMatching(/^::error::the step shell ended before the step's exit status came/)]
          })
          expect(k.stdout).not.toContain("the job's machine")
          expect(r.proxy.calls('DescribeInstances')).toEqual([])
        }
      })
      expectRealLossExplained(r, { id, errors, out })
    } finally {
      await r.end()
    }
  })

  // Adversarial: the job's own exit code must not pass for a lost machine (a false line in the step
  // log, and EC2 lookups at the job's will). Positive control in the same job: its machine lost
  // for real afterwards is explained.
  test.each([
    ['with the agent', {}],
    ['agent off', { agent: { enabled: false } }]
  ])('a step that exits 75 itself (%s) is no lost machine: its own code, no line about the machine, EC2 not asked', async (_mode, more) => {
    const r = await rig('exit75', {}, more)
    try {
      const { id, errors, out } = await machineLostMidStep(r, {
        terminate: false,
        first: async () => {
          r.proxy.clearLog()
          const { args } = r.runner.scriptStep('echo pretending to be lost\nexit 75\n')
          const s = await hookCall(r.runner, 'run_script_step', args)
          expect({ code: s.code, errors: errorLines(s) }).toEqual({ code: 75, errors: [] })
          expect(s.stdout).toContain('pretending to be lost')
          expect(s.stdout).not.toContain("the job's machine")
          expect(r.proxy.calls('DescribeInstances')).toEqual([])
        }
      })
      expectRealLossExplained(r, { id, errors, out })
    } finally {
      await r.end()
    }
  })
})
