// The runner's worker is the hook's parent. When it dies (killed, out of memory) while a command
// runs, nobody reads the command's answer and no cleanup_job may come; the hook went on (a step
// kept its machine's reservation alive with heartbeats, so reap never judged the job dead). It now
// stops as on a cancel within about a second. Here prepare_job waits on a host that accepts TCP and
// never speaks SSH, under a shell standing in for the worker.
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { loadVm } from '../helpers/testenv'
import { running, waitUntil } from '../helpers/wait'

jest.setTimeout(90_000)

let server: Server
const held: Socket[] = []
let connections = 0
beforeAll(async () => {
  server = createServer((s) => {
    connections++
    held.push(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
})
afterAll(async () => {
  for (const s of held) s.destroy()
  await new Promise((r) => server.close(r))
})

/** prepare_job on the silent host, started by a shell (the stand-in worker); the hook's pid once it runs. */
async function startUnderWorker(
  container: Record<string, unknown> = {}
): Promise<{ worker: ChildProcess; hook: number; out: () => string }> {
  const vm = loadVm('a')
  const port = (server.address() as { port: number }).port
  const runner = new FakeRunner({
    config: {
      provider: {
        kind: 'static',
        acquireTimeoutSeconds: 60,
        hosts: [{ host: '127.0.0.1', port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, slots: 1 }]
      },
      remote: { workRoot: vm.workRoot },
      timeouts: { connectSeconds: 60 }
    }
  })
  const responseFile = join(runner.temp, 'response.json')
  writeFileSync(responseFile, '')
  const input = join(runner.root, 'input.json')
  writeFileSync(
    input,
    JSON.stringify({
      command: 'prepare_job',
      responseFile,
      args: { container: runner.jobContainer('alpine:3', container), services: [] },
      state: null
    })
  )
  const worker = spawn('sh', ['-c', 'node "$0" < "$1" & echo $!; wait', runner.hook, input], {
    cwd: runner.workspace,
    env: runner.env(),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  worker.stdout.on('data', (c) => (out += c))
  worker.stderr.on('data', (c) => (out += c))
  expect(await waitUntil(() => /^\d+\n/.test(out), 10_000)).toBe(true)
  const hook = Number(out.split('\n')[0])
  return { worker, hook, out: () => out }
}

test('a prepare_job whose worker dies stops within seconds; control: with its worker alive it still waits', async () => {
  const before = connections
  const { worker, hook, out } = await startUnderWorker()
  try {
    // It is connecting (the silent host got its connection): the point where it would wait 60 s.
    expect(await waitUntil(() => connections > before, 20_000)).toBe(true)
    worker.kill('SIGKILL')
    const t0 = Date.now()
    expect(await waitUntil(() => !running(hook), 15_000)).toBe(true)
    expect(Date.now() - t0).toBeLessThan(10_000)
    // Its last words went to the pipe the test still holds (no EPIPE: the parent check did it).
    expect(out()).toMatch(/the runner's worker process \(pid \d+\) is gone; the command was stopped/)
  } finally {
    if (running(hook)) process.kill(hook, 'SIGKILL')
  }

  const control = await startUnderWorker()
  try {
    expect(await waitUntil(() => connections > before + 1, 20_000)).toBe(true)
    await new Promise((r) => setTimeout(r, 5000))
    expect(running(control.hook)).toBe(true)
  } finally {
    process.kill(control.hook, 'SIGKILL')
    control.worker.kill('SIGKILL')
  }
})

test('a request that only names cleanup_job in a value (an env var called command) is still stopped when its worker dies', async () => {
  const before = connections
  const { worker, hook } = await startUnderWorker({ environmentVariables: { command: 'cleanup_job' } })
  try {
    expect(await waitUntil(() => connections > before, 20_000)).toBe(true)
    worker.kill('SIGKILL')
    expect(await waitUntil(() => !running(hook), 15_000)).toBe(true)
  } finally {
    if (running(hook)) process.kill(hook, 'SIGKILL')
  }
})
