// prepare_job's isAlpine answer picks the runner's node for JS actions (the musl one or the glibc
// one). Only the engine's 404 for /etc/alpine-release means "not Alpine"; any other failure is the
// command's own, never a confident false that fails the job's actions far from here.
import { isAlpine } from '../../src/docker/steps'
import { EngineError, type Engine } from '../../src/docker/engine'
import { TransportError } from '../../src/errors'

const engineThat = (answer: () => Promise<unknown>): Engine & { asked: string[] } => {
  const asked: string[] = []
  return {
    asked,
    call: async (method: string, path: string) => {
      asked.push(`${method} ${path}`)
      return answer()
    }
  } as unknown as Engine & { asked: string[] }
}

test('a path that is there is Alpine; a 404 is not', async () => {
  const there = engineThat(async () => ({ status: 200, data: null }))
  await expect(isAlpine(there, 'c1')).resolves.toBe(true)
  expect(there.asked).toEqual(['HEAD /containers/c1/archive?path=%2Fetc%2Falpine-release'])
  await expect(
    isAlpine(
      engineThat(() => Promise.reject(new EngineError(404, 'HEAD archive', ''))),
      'c1'
    )
  ).resolves.toBe(false)
})

test.each([
  ['an engine error (500)', () => new EngineError(500, 'HEAD archive', 'internal error')],
  ['a dropped connection', () => new TransportError('the Docker socket connection closed', 'lost')]
])('%s is a failure, not "not Alpine"', async (_what, err) => {
  const e = err()
  await expect(
    isAlpine(
      engineThat(() => Promise.reject(e)),
      'c1'
    )
  ).rejects.toBe(e)
})
