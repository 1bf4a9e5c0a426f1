// A workflow's `options:` and the job's own containers against the job's cleanup, on a real dockerd
// and sshd: the job cannot take its containers out of its cleanup with labels of ours, and a
// container that is not the job's, joined to its network or holding its volume, does not keep the
// job's network or folder on the VM.
import { execFileSync } from 'node:child_process'
import { createServer, type AddressInfo } from 'node:net'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { cmd, dockerLines, errorLines, leftovers, NOTHING, testVm } from '../helpers/conformance'

const LABEL = 'dev.remote-container-hooks'
const runners: FakeRunner[] = []
const foreign: string[] = []

function newRunner(name: string): FakeRunner {
  const r = new FakeRunner({ name })
  runners.push(r)
  return r
}

afterAll(async () => {
  for (const c of foreign) await cmd('docker', ['rm', '-f', c])
  // What a regression would leave: a container that took itself out of its job's cleanup.
  for (const c of await dockerLines(['ps', '-aq', '--filter', 'label=rch-test-hostile=1'])) await cmd('docker', ['rm', '-f', c])
  for (const r of runners) {
    await r.cleanup()
    r.dispose()
  }
})

const labelsOf = (id: string): Record<string, string> =>
  JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Config.Labels}}', id], { encoding: 'utf8' })) as Record<string, string>

/** The job's folders on the VM (`<workRoot>/jobs/<owner>-*`). */
const jobFolders = async (runner: FakeRunner): Promise<string[]> => (await leftovers(runner)).jobFolders

/** A container that is not the job's, started as the job could start one through the Docker socket. */
function startForeign(args: string[]): string {
  const id = execFileSync(
    'docker',
    ['run', '-d', '--pull', 'never', '--label', 'rch-test-foreign=1', ...args, testImages.tiny, 'sleep', '600'],
    {
      encoding: 'utf8'
    }
  ).trim()
  foreign.push(id)
  return id
}

test("options: with the ownership labels of its own: the container keeps its job's labels (its --name is honoured, as by the runner), and cleanup removes it", async () => {
  const runner = newRunner(`hostile-options-${process.pid}`)
  const name = `rch-test-named-${process.pid}`
  const options = [
    `--label ${LABEL}.job=0000000000000000`,
    `--label ${LABEL}.owner=0000000000000000`,
    `--label ${LABEL}.runner=someone-else`,
    '--label rch-test-hostile=1',
    `--name ${name}`
  ].join(' ')
  const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny, { createOptions: options }), services: [] })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const id = p.response.context.container.id as string
  const labels = labelsOf(id)
  expect(labels['rch-test-hostile']).toBe('1') // control: the workflow's options were applied
  expect(await dockerLines(['ps', '-aq', '--no-trunc', '--filter', `name=^${name}$`])).toEqual([id])
  expect(labels[`${LABEL}.owner`]).toBe(runner.owner)
  expect(labels[`${LABEL}.runner`]).toBe(runner.name)
  expect(labels[`${LABEL}.job`]).toMatch(/^[0-9a-f]{16}$/)
  expect(labels[`${LABEL}.job`]).not.toBe('0000000000000000')
  const c = await runner.cleanup()
  expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
  expect(await dockerLines(['ps', '-aq', '--filter', `id=${id}`])).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test.each(['--label', '--env', '--'])(
  "options: ending in %s (a flag waiting for a value, or the end of flags) cannot swallow the hook's labels: the create fails, nothing is left",
  async (tail) => {
    const runner = newRunner(`hostile-tail-${process.pid}`)
    const p = await runner.prepare({
      container: runner.jobContainer(testImages.tiny, { createOptions: `--label rch-test-hostile=1 ${tail}` }),
      services: []
    })
    expect(p.code).not.toBe(0)
    expect(errorLines(p).join('\n')).toMatch(/docker create .*invalid reference format/)
    expect(await dockerLines(['ps', '-aq', '--filter', 'label=rch-test-hostile=1'])).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  }
)

// docker create stops reading flags at the first word that is none: it takes that word for the
// image and the rest, the hook's labels included, for the command. A container made so is outside
// its job's labels, and no cleanup would find it.
test.each([
  ['a word taken for the image', (img: string) => `--label rch-test-hostile=1 --entrypoint sleep ${img} 600`],
  ['the end of flags, then an image and a command', (img: string) => `--label rch-test-hostile=1 -- ${img} sleep 600`]
])('options: with %s: the create is refused naming the field, the container removed, nothing left', async (_name, options) => {
  const runner = newRunner(`hostile-word-${process.pid}`)
  const createOptions = options(testImages.tiny)
  // Positive control: docker itself makes a container without the labels from such an argv.
  const probe = execFileSync(
    'docker',
    [
      'create',
      '--pull',
      'never',
      ...createOptions.replace('rch-test-hostile=1', 'rch-test-probe=1').split(' '),
      '--label',
      `${LABEL}.job=probe`,
      testImages.tiny
    ],
    { encoding: 'utf8' }
  ).trim()
  foreign.push(probe)
  expect(labelsOf(probe)[`${LABEL}.job`]).toBeUndefined()
  const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny, { createOptions }), services: [] })
  expect(p.code).toBe(64)
  expect(errorLines(p)).toEqual([
    expect.stringMatching(
      /^::error::args\.container\.createOptions: the container lacks the job's labels \(.*\); the container was removed$/
    )
  ])
  expect(await dockerLines(['ps', '-aq', '--filter', 'label=rch-test-hostile=1'])).toEqual([])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

// A space where `=` belongs (`--env API_KEY value`) makes docker take the value, maybe a secret, for
// the image. It must not ask a registry for it: here the value names a loopback "registry" that
// counts the connections it gets.
test('options: whose stray word docker takes for the image: no registry is asked for it (the create runs with --pull never)', async () => {
  const asked: string[] = []
  const registry = createServer((s) => {
    asked.push(`${s.remoteAddress}`)
    s.destroy()
  })
  await new Promise<void>((ok) => registry.listen(0, '127.0.0.1', ok))
  const word = `127.0.0.1:${(registry.address() as AddressInfo).port}/leak-canary-${process.pid}`
  try {
    // Positive control: docker's default pull policy asks that "registry" for the word.
    const control = await cmd('docker', ['create', '--label', 'rch-test-probe=1', '--env', 'API_KEY', word])
    expect(control.code).not.toBe(0)
    expect(asked.length).toBeGreaterThan(0)
    asked.length = 0

    const runner = newRunner(`hostile-pull-${process.pid}`)
    const p = await runner.prepare({
      container: runner.jobContainer(testImages.tiny, { createOptions: `--label rch-test-hostile=1 --env API_KEY ${word}` }),
      services: []
    })
    expect(p.code).not.toBe(0)
    expect(errorLines(p).join('\n')).toMatch(/docker create .*No such image/)
    expect(asked).toEqual([])
    expect(await dockerLines(['ps', '-aq', '--filter', 'label=rch-test-hostile=1'])).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  } finally {
    registry.close()
  }
})

test("a container that is not the job's, joined to the job's network: cleanup disconnects it and removes the network and the job folder", async () => {
  const runner = newRunner(`hostile-network-${process.pid}`)
  const p = await runner.prepare({
    container: runner.jobContainer(testImages.tiny),
    services: [runner.service(testImages.tiny, { entryPoint: 'sleep', entryPointArgs: ['600'] })]
  })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const [network] = await dockerLines(['network', 'ls', '-q', '--filter', `label=${LABEL}.owner=${runner.owner}`])
  expect(network).toBeTruthy()
  const intruder = startForeign(['--network', network])
  // positive control: with it joined, the engine refuses to remove the network
  const rm = await cmd('docker', ['network', 'rm', network])
  expect(rm.code).not.toBe(0)
  expect(rm.stderr).toMatch(/active endpoints/)
  expect(await jobFolders(runner)).toHaveLength(1)
  const c = await runner.cleanup()
  expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
  expect(await leftovers(runner)).toEqual(NOTHING)
  // The intruder is not the job's: disconnected, not removed.
  expect(await dockerLines(['ps', '-q', '--filter', `id=${intruder}`])).toHaveLength(1)
})

test("a container that is not the job's holds the job's volume: cleanup warns naming it and keeps it, the job folder goes, and the runner's next cleanup takes it once free", async () => {
  // Another runner's job on the VM may mount the same named volume: holding it is not the job's
  // failure. It stays, loudly, labelled as this runner's, and goes with the next removal by label.
  const runner = newRunner(`hostile-volume-${process.pid}`)
  const vm = testVm()
  const p = await runner.prepare({
    container: runner.jobContainer(testImages.tiny, {
      userMountVolumes: [{ sourceVolumePath: `rchvol${process.pid}`, targetVolumePath: '/data', readOnly: false }]
    }),
    services: []
  })
  expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
  const [volume] = await dockerLines(['volume', 'ls', '-q', '--filter', `label=${LABEL}.owner=${runner.owner}`])
  expect(volume).toBeTruthy()
  const holder = startForeign(['-v', `${volume}:/held`])
  const [folder] = await jobFolders(runner)
  expect(existsSync(join(vm.workRoot, 'jobs', folder))).toBe(true) // control: the folder is there before the cleanup
  const c = await runner.cleanup()
  expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
  expect(c.stdout).toMatch(new RegExp(`^::warning::volume ${volume} stays on .*a container that is not the job's uses it`, 'm'))
  expect(existsSync(join(vm.workRoot, 'jobs', folder))).toBe(false)
  expect((await leftovers(runner)).jobFolders).toEqual([])
  // Kept while held, with this runner's label; once free, the runner's next cleanup (by label) takes it.
  expect(await dockerLines(['volume', 'ls', '-q', '--filter', `name=^${volume}$`])).toEqual([volume])
  await cmd('docker', ['rm', '-f', holder])
  runner.state = null
  expect((await runner.cleanup()).code).toBe(0)
  expect(await dockerLines(['volume', 'ls', '-q', '--filter', `name=^${volume}$`])).toEqual([])
})
