// remote.dockerSocket other than the default (e.g. rootless Docker): the docker CLI commands, the
// Engine API calls and the job container's docker.sock mount all use the configured socket. The
// test puts a counting proxy at that path on the "VM" (this machine), in front of the real daemon.
import { chmodSync, mkdirSync, rmSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { execFileSync } from 'node:child_process'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, staticProvider, testVm } from '../helpers/conformance'

const dir = `/var/tmp/rch-dsock-${process.pid}`
const socket = `${dir}/docker.sock`
const seen = { cli: 0, other: 0 }
let server: Server

beforeAll(async () => {
  mkdirSync(dir, { recursive: true, mode: 0o755 })
  server = createServer((c) => {
    const up = connect('/var/run/docker.sock')
    c.once('data', (d: Buffer) => (/User-Agent: Docker-Client\//i.test(d.toString('latin1')) ? seen.cli++ : seen.other++))
    c.pipe(up).pipe(c)
    c.on('error', () => up.destroy())
    up.on('error', () => c.destroy())
  })
  await new Promise<void>((r) => server.listen(socket, r))
  chmodSync(socket, 0o666)
})
afterAll(async () => {
  await new Promise((r) => server.close(r))
  rmSync(dir, { recursive: true, force: true })
})

test('CLI, Engine API and the job container mount all go through remote.dockerSocket', async () => {
  const vm = testVm()
  const runner = new FakeRunner({
    name: 'docker-socket',
    config: { provider: staticProvider(vm), remote: { workRoot: vm.workRoot, dockerSocket: socket } }
  })
  try {
    // The service's options make its create a CLI command; the rest of prepare_job is API calls.
    const service = runner.service(testImages.tiny, {
      entryPoint: 'sleep',
      entryPointArgs: ['3600'],
      createOptions: '--label rch-test-cli=1'
    })
    const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [service] })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    // prepare_job's CLI command (the create with options) and its API calls (network, creates, starts, inspect, health)
    expect(seen.cli).toBeGreaterThanOrEqual(1)
    expect(seen.other).toBeGreaterThanOrEqual(3)
    const id = p.response.context.container.id as string
    const mounts = JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Mounts}}', id], { encoding: 'utf8' })) as {
      Source: string
      Destination: string
    }[]
    expect(mounts.find((m) => m.Destination === '/var/run/docker.sock')?.Source).toBe(socket)

    const before = seen.other
    const { args } = runner.scriptStep('echo via-the-configured-socket\n')
    const s = await runner.call('run_script_step', args)
    expect({ code: s.code, errors: errorLines(s) }).toEqual({ code: 0, errors: [] })
    expect(s.stdout).toContain('via-the-configured-socket')
    expect(seen.other).toBeGreaterThan(before) // the step's exec went through it
  } finally {
    const c = await runner.cleanup()
    expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
    runner.dispose()
  }
})
