// What a build's (or a pull's) output sends to the log: the VM's docker is the job's to replace, and
// the log's writer does not wait for its reader, so past LOGGED_OUTPUT_MAX the lines are counted,
// not logged.
import { buildImage, LOGGED_OUTPUT_MAX } from '../../src/docker/cli'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)
jest.setTimeout(30_000)

const build = async (docker: string): Promise<string[]> => {
  const lines: string[] = []
  await buildImage(new LocalRemote(tempDir(), {}, { docker }), 'rch-action-x:1', '/w/Dockerfile', '/w', [], (l) => void lines.push(l))
  return lines
}

test('a docker that prints 64 MB of lines: about 1 MiB is logged, then one line counting the rest', async () => {
  // 16,384 lines of 4,095 characters and a newline, on stderr (where the build's lines are read).
  const lines = await build(`awk 'BEGIN { s = sprintf("%4095s", ""); gsub(/ /, "x", s); for (i = 0; i < 16384; i++) print s }' >&2`)
  const logged = lines.slice(0, -1)
  expect(logged.reduce((n, l) => n + l.length, 0)).toBeLessThan(LOGGED_OUTPUT_MAX + 8192)
  expect(lines.at(-1)).toMatch(/^\(\d+ more lines not shown: over 1048576 characters of output\)$/)
  expect(logged.length + Number(/^\((\d+)/.exec(lines.at(-1)!)![1])).toBe(16384)
})

test('control: a few lines are all logged, with no note', async () => {
  expect(await build(`echo 'Step 1/2 : FROM x' >&2; echo 'Step 2/2 : RUN true' >&2`)).toEqual(['Step 1/2 : FROM x', 'Step 2/2 : RUN true'])
})
