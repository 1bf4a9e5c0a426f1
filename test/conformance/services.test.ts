// Service containers: several services of one image with their
// aliases, health-check waiting, an unhealthy service failing prepare_job without leaving anything
// behind, Alpine detection, and the port-mapping formats the runner passes through.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, freePort, leasedSlot, leftovers, NOTHING, runnerProcesses, runnerSplit, testVm } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'

const runners: FakeRunner[] = []
function newRunner(): FakeRunner {
  const r = new FakeRunner()
  runners.push(r)
  return r
}

afterAll(async () => {
  for (const r of runners) {
    await r.cleanup()
    r.dispose()
  }
})

function ok(r: HookRun): void {
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
}

/** A tiny-image service answering `tag` on TCP `port`, forever. */
function tagService(runner: FakeRunner, tag: string, port = 7000, extra: Record<string, unknown> = {}) {
  return runner.service(testImages.tiny, {
    entryPoint: 'sh',
    entryPointArgs: runnerSplit(`-c "while true; do echo ${tag} | nc -l -p ${port}; done"`),
    ...extra
  })
}

/** Reads the first line a TCP server on this machine sends. */
function readBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    let got = ''
    s.setTimeout(5000, () => s.destroy(new Error(`no banner from 127.0.0.1:${port}`)))
    s.on('data', (c: Buffer) => {
      got += c.toString()
      if (got.includes('\n')) {
        s.destroy()
        resolve(got.split('\n')[0])
      }
    })
    s.on('error', reject)
    s.on('close', () => resolve(got.split('\n')[0]))
  })
}

async function bannerEventually(port: number): Promise<string> {
  let last = ''
  await waitUntil(
    async () => {
      last = await readBanner(port).catch((e: Error) => e.message)
      return last !== '' && !last.startsWith('no banner') && !/ECONN/.test(last)
    },
    5000,
    250
  )
  return last
}

test('two services of one image both start and are reachable by alias from the job container (tiny, tiny-1, tiny-2)', async () => {
  const runner = newRunner()
  const r = await runner.prepare({
    container: runner.jobContainer(testImages.tiny),
    services: [tagService(runner, 'svc-one'), tagService(runner, 'svc-two')]
  })
  ok(r)
  expect(r.response.context.services).toHaveLength(2)
  const [a, b] = r.response.context.services.map((s: { id: string }) => s.id)
  expect(a).not.toBe(b)
  for (const id of [a, b])
    expect(execFileSync('docker', ['inspect', '-f', '{{.State.Running}}', id], { encoding: 'utf8' }).trim()).toBe('true')

  // bash's /dev/tcp from the job container; retried because the nc loop restarts between connections
  const probe = (host: string): string =>
    `for i in 1 2 3 4 5 6 7 8 9 10; do v=$(bash -c 'exec 3<>/dev/tcp/${host}/7000 && head -1 <&3' 2>/dev/null) && [ -n "$v" ] && break; sleep 0.3; done; echo "${host}=$v"\n`
  const { args } = runner.scriptStep(probe('tiny') + probe('tiny-1') + probe('tiny-2'))
  const s = await runner.call('run_script_step', args)
  expect(s.code).toBe(0)
  expect(s.stdout).toContain('tiny=svc-one\n')
  expect(s.stdout).toContain('tiny-1=svc-one\n')
  expect(s.stdout).toContain('tiny-2=svc-two\n')
  // the leftover probe sees a live job (so "NOTHING" below is not vacuous)
  const live = await leftovers(runner)
  expect({
    containers: live.containers.length,
    networks: live.networks.length,
    jobFolders: live.jobFolders.length,
    leases: live.leases.length
  }).toEqual({
    containers: 3,
    networks: 1,
    jobFolders: 1,
    leases: 1
  })
  expect((await runnerProcesses(runner, 0)).map((p) => p.cmdline)).toContainEqual(expect.stringContaining('__agent'))
  expect((await runner.cleanup()).code).toBe(0)
  runner.state = null
  expect(await leftovers(runner)).toEqual(NOTHING)
  expect(await runnerProcesses(runner)).toEqual([])
})

test('a service with a HEALTHCHECK that turns healthy after 2 s: prepare_job waits for it and succeeds', async () => {
  const runner = newRunner()
  const r = await runner.prepare({
    container: null,
    services: [
      runner.service(testImages.tiny, {
        entryPoint: 'sh',
        entryPointArgs: runnerSplit('-c "sleep 2; touch /tmp/ok; exec sleep 3600"'),
        createOptions: '--health-cmd "test -f /tmp/ok" --health-interval 1s'
      })
    ]
  })
  ok(r)
  const id = r.response.context.services[0].id
  // it did wait: right after prepare_job returned, docker already reports the service healthy
  expect(execFileSync('docker', ['inspect', '-f', '{{.State.Health.Status}}', id], { encoding: 'utf8' }).trim()).toBe('healthy')
  expect((await runner.cleanup()).code).toBe(0)
  runner.state = null
})

test('an always-unhealthy service fails prepare_job, names it, prints its logs, and leaves nothing behind', async () => {
  const runner = newRunner()
  const vm = testVm()
  const r = await runner.prepare({
    container: runner.jobContainer(testImages.tiny),
    services: [
      runner.service(testImages.tiny, {
        entryPoint: 'sh',
        entryPointArgs: runnerSplit('-c "echo sick-service-log-line; exec sleep 3600"'),
        createOptions: '--health-cmd "false" --health-interval 1s --health-retries 1'
      })
    ]
  })
  expect(r.code).not.toBe(0)
  const errors = errorLines(r)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toMatch(/unhealthy/)
  expect(errors[0]).toContain(testImages.tiny)
  // the service's own log output is shown
  expect(r.stdout + r.stderr).toContain('sick-service-log-line')

  // NOTHING left: containers, networks, volumes, job folder, lease
  expect(await leftovers(runner, vm)).toEqual(NOTHING)
  const slot = leasedSlot(r)
  expect(slot).not.toBeNull()
  // Released: no longer this runner's (suites running beside this one on the same VM may take the slot at once).
  const owner = (d: string): string | null => {
    try {
      return readFileSync(join(vm.workRoot, 'leases', d, 'owner'), 'utf8').split(' ')[0]
    } catch {
      return null
    }
  }
  expect(owner(`slot-${slot}`)).not.toBe(runner.owner)
  // and no helper process of this job (the per-job agent) lives on
  expect(await runnerProcesses(runner)).toEqual([])

  // the runner still calls cleanup_job, with state null: it must succeed
  const c = await runner.call('cleanup_job', {}, { state: null })
  expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
  expect(await leftovers(runner, vm)).toEqual(NOTHING)
})

test('Alpine detection: job container rch-test/musl:1 gives isAlpine true', async () => {
  const runner = newRunner()
  const r = await runner.prepare({ container: runner.jobContainer(testImages.musl), services: [] })
  ok(r)
  expect(r.response.isAlpine).toBe(true)
  expect((await runner.cleanup()).code).toBe(0)
  runner.state = null
})

test('port mappings "HOST:CONTAINER", "CONTAINER" and "CONTAINER/tcp" are accepted, reported and reachable', async () => {
  const runner = newRunner()
  const hostPort = await freePort()
  const svc = runner.service(testImages.tiny, {
    entryPoint: 'sh',
    entryPointArgs: runnerSplit(
      '-c "(while true; do echo on-80 | nc -l -p 80; done) & (while true; do echo on-81 | nc -l -p 81; done) & while true; do echo on-6379 | nc -l -p 6379; done"'
    ),
    portMappings: [`${hostPort}:80`, '81', '6379/tcp']
  })
  const r = await runner.prepare({ container: null, services: [svc] })
  ok(r)
  const ports = r.response.context.services[0].ports as Record<string, string>
  expect(Object.keys(ports).sort()).toEqual(['6379', '80', '81'])
  expect(ports['80']).toBe(String(hostPort))
  for (const v of Object.values(ports)) expect(v).toMatch(/^\d+$/)
  // the map is container port -> host port, and the host ports really lead to the service
  expect(await bannerEventually(Number(ports['80']))).toBe('on-80')
  expect(await bannerEventually(Number(ports['81']))).toBe('on-81')
  expect(await bannerEventually(Number(ports['6379']))).toBe('on-6379')
  expect((await runner.cleanup()).code).toBe(0)
  runner.state = null
})

/** Workflow command lines the runner acts on: none between `::stop-commands::T` and `::T::`. */
function activeCommands(out: string): string[] {
  const active: string[] = []
  let stop: string | null = null
  for (const line of out.split(/\r?\n/)) {
    if (stop !== null) {
      if (line === `::${stop}::`) stop = null
      continue
    }
    const m = /^::stop-commands::(.+)$/.exec(line)
    if (m) stop = m[1]
    else if (/^::[a-z-]+::/.test(line)) active.push(line)
  }
  return active
}

test('a service that prints workflow commands and exits: its log is folded and inert, the step log is folded by phase, one error of ours', async () => {
  const runner = newRunner()
  const vm = testVm()
  const r = await runner.prepare({
    container: runner.jobContainer(testImages.tiny),
    services: [
      runner.service(testImages.tiny, {
        entryPoint: 'sh',
        entryPointArgs: runnerSplit(
          '-c "echo hostile-start; echo ::error::pwned; echo ::add-mask::hostile-start; echo ::endgroup::; exit 3"'
        ),
        // A health check that stays 'starting' keeps the health wait looking until the service has
        // exited: without one, a first look taken before its exit counts it as up (a CI run saw that).
        createOptions: '--health-cmd "sleep 600" --health-interval 600s'
      })
    ]
  })
  expect(r.code).not.toBe(0)
  // positive control: the log lines were really printed as workflow commands
  expect(r.stdout).toMatch(/^::error::pwned$/m)
  expect(r.stdout).toMatch(/^::add-mask::hostile-start$/m)
  const active = activeCommands(r.stdout)
  const errors = active.filter((l) => l.startsWith('::error::'))
  expect(errors).toEqual([expect.stringMatching(/stopped during start-up with exit code 3/)])
  expect(active.some((l) => l.startsWith('::add-mask::'))).toBe(false)
  // folds: every phase opened is closed, none nested, and the service's log has its own
  const folds = active.filter((l) => /^::(end)?group::/.test(l))
  expect(folds).toEqual([
    '::group::Getting a host',
    '::endgroup::',
    "::group::Copying the job's files",
    '::endgroup::',
    '::group::Images',
    '::endgroup::',
    '::group::Starting the services and the job container',
    '::endgroup::',
    expect.stringMatching(/^::group::\S+ \(.+\) logs$/),
    '::endgroup::'
  ])
  // the log is shown, and the error comes after its fold
  expect(r.stdout).toContain('hostile-start')
  expect(r.stdout.lastIndexOf('::endgroup::')).toBeLessThan(r.stdout.indexOf(errors[0]))
  expect(await leftovers(runner, vm)).toEqual(NOTHING)
})
