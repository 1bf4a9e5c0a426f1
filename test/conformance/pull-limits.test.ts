// A pull from a registry that accepts the connection and never answers: images.pullTimeoutSeconds
// fails prepare_job in time, and a cancel ends it at once; nothing of the job is left behind.
import { createServer, type Server, type Socket } from 'node:net'
import { FakeRunner } from '../helpers/fake-runner'
import { loadRegistry, testImages } from '../helpers/testenv'
import { errorLines, leftovers, NOTHING, scanCmdlines, staticProvider, waitForOutput } from '../helpers/conformance'
import { settlesWithin, waitUntil } from '../helpers/wait'

let server: Server
let port = 0
const sockets = new Set<Socket>()
let connections = 0

beforeAll(async () => {
  server = createServer((s) => {
    connections++
    sockets.add(s)
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  port = (server.address() as { port: number }).port
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await new Promise<void>((r) => server.close(() => r()))
})

const runners: FakeRunner[] = []
afterEach(async () => {
  for (const r of runners.splice(0)) {
    await r.cleanup()
    r.dispose()
  }
})

function newRunner(pullTimeoutSeconds: number): FakeRunner {
  const r = new FakeRunner({
    config: {
      provider: staticProvider(undefined, { slots: 8 }, { acquireTimeoutSeconds: 120 }),
      images: { pullPolicy: 'missing', pullTimeoutSeconds }
    }
  })
  runners.push(r)
  return r
}

test('a hung pull fails prepare_job after images.pullTimeoutSeconds, naming the pull', async () => {
  const runner = newRunner(3)
  const before = connections
  const image = `127.0.0.1:${port}/hung/image:1`
  const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [runner.service(image)] })
  // positive control: docker really went to the hung registry
  expect(connections).toBeGreaterThan(before)
  expect(r.code).not.toBe(0)
  expect(errorLines(r)).toEqual([`::error::docker pull ${image}: no result after 3 s`])
  expect(r.ms).toBeLessThan(30_000)
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test("a cancel during a hung pull ends prepare_job within 7.5 s (before the runner's SIGTERM)", async () => {
  const runner = newRunner(600)
  const before = connections
  const image = `127.0.0.1:${port}/hung/other:1`
  const { child, done } = runner.start(
    'prepare_job',
    { container: runner.jobContainer(testImages.tiny), services: [runner.service(image)] },
    { state: null }
  )
  await waitForOutput(child, 'copied ')
  await waitUntil(() => connections > before, 10_000)
  expect(connections).toBeGreaterThan(before)
  // positive control: the docker CLI runs the pull on the VM
  expect(scanCmdlines(`pull\0${image}\0`).length).toBeGreaterThan(0)
  const t0 = Date.now()
  child.kill('SIGINT')
  const exited = await settlesWithin(done, 7500)
  if (!exited) child.kill('SIGKILL')
  const r = await done
  expect(exited).toBe(true)
  expect(Date.now() - t0).toBeLessThan(7500)
  expect(r.code).toBe(130)
  // the docker CLI's pull on the VM stopped too (dockerd itself keeps its connection to a hung
  // registry whatever the client does, so that is not checked)
  const cli = (): unknown[] => scanCmdlines(`pull\0${image}\0`)
  await waitUntil(() => cli().length === 0, 3000)
  expect(cli()).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

// One pull fails at once while another goes on (a large image; here a hung registry): the job fails
// anyway, and the undo, and so the machine, waited for the other pull to end or time out.
test('a pull that fails stops the others: prepare_job fails at once naming it, not after the hung pull', async () => {
  const runner = newRunner(600)
  const before = connections
  const hung = `127.0.0.1:${port}/hung/third:1`
  // The loopback registry wants credentials: refused at once, and for good (not tried again).
  const refused = `${loadRegistry().host}/absent/image:1`
  const r = await runner.prepare({
    container: runner.jobContainer(testImages.tiny),
    services: [runner.service(hung), runner.service(refused)]
  })
  // Positive control: docker really went to the hung registry.
  expect(connections).toBeGreaterThan(before)
  expect(r.code).not.toBe(0)
  const errors = errorLines(r)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toContain(`docker pull ${refused} failed`)
  // dockerd gives up on a registry that never answers after ~25 s: the previous code waited for that.
  expect(r.ms).toBeLessThan(20_000)
  // The docker CLI's hung pull on the VM ends with its channel (its watcher's next beat).
  const cli = (): unknown[] => scanCmdlines(`pull\0${hung}\0`)
  await waitUntil(() => cli().length === 0, 3000)
  expect(cli()).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})
