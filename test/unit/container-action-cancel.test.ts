// A container action cancelled while its container is being started: the kill the cancel sends then
// finds nothing running yet (docker answers 409), so without a second kill once the start returns
// the container ran to its own end and the step waited for it.
import { runContainer } from '../../src/docker/steps'
import { EngineError, type Engine, type Output } from '../../src/docker/engine'
import { settlesWithin } from '../../src/retry'

const ID = 'c'.repeat(64)

/** A container that runs until killed; `duringStart` runs while the start call is under way. */
function engineFor(duringStart: () => void) {
  let running = false
  let exit!: (code: number) => void
  const exited = new Promise<number>((r) => (exit = r))
  const kills: string[] = []
  const engine = {
    call: async (method: string, path: string) => {
      if (path.startsWith('/containers/create')) return { status: 201, data: { Id: ID } }
      if (path.endsWith('/start')) {
        duringStart()
        await new Promise((r) => setTimeout(r, 20))
        running = true
        return { status: 204, data: null }
      }
      if (path.endsWith('/kill')) {
        kills.push(running ? 'running' : 'not running')
        if (!running) throw new EngineError(409, 'kill', `container ${ID} is not running`)
        running = false
        exit(137)
        return { status: 204, data: null }
      }
      if (path.includes('/wait')) return { status: 200, data: { StatusCode: await exited } }
      if (method === 'DELETE') return { status: 204, data: null }
      throw new Error(`unexpected ${method} ${path}`)
    },
    hijack: async () => ({ ended: exited.then(() => undefined), input: null, close: () => undefined })
  }
  return { engine: engine as unknown as Engine, kills, exit }
}

const spec = { image: 'i', name: 'n', cmd: [], entrypoint: null, env: {}, workdir: '/', mounts: [], network: null, labels: {} }
const out: Output = { onStdout: () => undefined, onStderr: () => undefined }

test('a cancel that lands during the container start still stops the container: the step ends as cancelled', async () => {
  const cancel = new AbortController()
  const f = engineFor(() => cancel.abort('SIGINT'))
  const res = runContainer(f.engine, spec, out, cancel.signal)
  const ended = await settlesWithin(res, 2000)
  f.exit(0) // frees the test when the container was left running
  expect(ended).toBe(true)
  await expect(res).resolves.toEqual({ exitCode: 130, cancelled: true })
  // positive control: the cancel's own kill came before anything ran
  expect(f.kills).toEqual(['not running', 'running'])
})

test('positive control: without a cancel the container runs to its end and its status is the step’s', async () => {
  const f = engineFor(() => setTimeout(() => f.exit(3), 50))
  await expect(runContainer(f.engine, spec, out, new AbortController().signal)).resolves.toEqual({ exitCode: 3, cancelled: false })
  expect(f.kills).toEqual([])
})
