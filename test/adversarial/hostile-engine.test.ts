// Attack: the job is root on the VM, so it can put its own listener behind the Docker socket the
// hook talks to, and answer a step's exit-status request with what it likes. An exit status of 256
// became the hook's exit code, which the process wraps to 0: a failed (or never-finished) step
// passed. Defense: an exit status must be an integer from 0 to 255, else the step fails naming it.
//
// The hostile socket is a proxy in front of the real engine (the VM is this machine), named in the
// job's `remote.dockerSocket`: in "pass" mode it forwards everything (positive control), in
// "exit256" mode it answers every exec inspect itself.
//
// Attack 2: the same socket (left by an earlier job on a static host or pool member) rewrites the
// published ports a container inspect reports. They go to the runner as `job.services.<id>.ports`,
// which a services-only job's steps put into commands run on the runner host: a port of
// `5432$(…)` would run the VM's text there. Defense: ports must be numbers, else prepare_job fails
// naming the answer and undoes what it made; in "pass" mode the same job starts (positive control).
//
// Attack 4: the same socket answers with an error whose message holds a line break and a line in
// the form of the hook's own log entries, a carriage return and terminal escapes: it forged an entry
// of hook.log (any time, pid or level) and reached the terminal of whoever reads the file. Defense:
// control characters become spaces and a line break only continues the entry, indented.
//
// Attack 3: an engine error of 8 MiB of `%` (each escaped to three characters in an ::error::
// line) became a 24 MiB line in the step log and 8 MiB in hook.log per failing step (never
// rotated). Defense: messages are cut at MESSAGE_MAX after masking.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { errors, HostileJob, type Mode } from './harness'
import { readFileSync, statSync } from 'node:fs'
import { leftovers, NOTHING, testVm } from '../helpers/conformance'
import { testImages } from '../helpers/testenv'
import type { HookRun } from '../helpers/fake-runner'

const DIR = mkdtempSync('/var/tmp/rch-hostile-engine-')
const FORGED_ENTRY = '2030-01-01T00:00:00.000Z 4242 info cleaned up every host'
const SOCK = join(DIR, 'docker.sock')
let mode: 'pass' | 'exit256' | 'ports' | 'path' | 'bigerror' | 'forge' = 'pass'
/** The request lines the proxy saw, and how many it answered itself. */
const seen: string[] = []
let forged = 0
const open = new Set<Socket>()
let server: Server

beforeAll(async () => {
  chmodSync(DIR, 0o755)
  server = createServer((client) => {
    open.add(client)
    client.on('close', () => open.delete(client))
    client.on('error', () => undefined)
    let head = Buffer.alloc(0)
    const onData = (c: Buffer): void => {
      head = Buffer.concat([head, c])
      if (head.indexOf('\r\n\r\n') < 0) return
      client.pause()
      client.off('data', onData)
      const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1')
      seen.push(line)
      if (mode === 'exit256' && /^GET \S*\/exec\/[0-9a-f]+\/json /.test(line)) {
        forged++
        const body = '{"Running":false,"ExitCode":256}'
        client.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
        return
      }
      if ((mode === 'bigerror' || mode === 'forge') && /^POST \S*\/containers\/[0-9a-f]+\/exec /.test(line)) {
        forged++
        const body = JSON.stringify({
          message:
            mode === 'forge'
              ? `exec refused\n${FORGED_ENTRY}\r${FORGED_ENTRY}\u001b[2K\u0000 done`
              : `exec refused: ${'%'.repeat(8 * 1024 * 1024)}`
        })
        client.end(`HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
        return
      }
      const inspect = /^GET (\S*\/containers\/[0-9a-f]+\/json) /.exec(line)
      if ((mode === 'ports' || mode === 'path') && inspect) {
        // The real answer, with a port whose number carries a command, or a PATH with a line break.
        request({ socketPath: '/var/run/docker.sock', path: inspect[1] }, (res) => {
          const parts: Buffer[] = []
          res.on('data', (c: Buffer) => parts.push(c))
          res.on('end', () => {
            const info = JSON.parse(Buffer.concat(parts).toString('utf8'))
            if (mode === 'ports')
              info.NetworkSettings.Ports = { '5432/tcp': [{ HostIp: '0.0.0.0', HostPort: '5432$(touch /tmp/rch-pwned)' }] }
            else info.Config.Env = ['PATH=/usr/bin\n/bin']
            forged++
            const body = Buffer.from(JSON.stringify(info))
            client.write(`HTTP/1.1 ${res.statusCode} OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`)
            client.end(body)
          })
        })
          .on('error', () => client.destroy())
          .end()
        return
      }
      const up = connect('/var/run/docker.sock')
      open.add(up)
      up.on('close', () => open.delete(up))
      up.on('error', () => client.destroy())
      up.write(head)
      client.pipe(up)
      up.pipe(client)
    }
    client.on('data', onData)
  })
  await new Promise<void>((r) => server.listen(SOCK, r))
  // The VM's SSH user opens it through sshd's forwarding, as it would the real one.
  chmodSync(SOCK, 0o666)
})

afterAll(async () => {
  for (const s of open) s.destroy()
  await new Promise<void>((r) => server.close(() => r()))
  rmSync(DIR, { recursive: true, force: true })
})

describe.each(['agent', 'no-agent'] as Mode[])('a Docker socket that forges exit statuses (%s)', (m) => {
  let job: HostileJob
  beforeAll(async () => {
    mode = 'pass'
    forged = 0
    job = new HostileJob(m, { config: { remote: { workRoot: testVm().workRoot, dockerSocket: SOCK } } })
    await job.prepare()
  })
  afterAll(async () => {
    mode = 'pass'
    await job.finish()
  })

  test("an exit status of 256 fails the step, naming it, never exit 0; the same proxy passing answers through gives the step's own status (positive control)", async () => {
    // The job's first step goes by exec in either mode (with the agent, later ones go through the
    // step shell, which reports the status itself).
    mode = 'exit256'
    const { r } = await job.step('exit 0\n')
    mode = 'pass'
    expect(forged).toBeGreaterThan(0)
    expect(r.code).not.toBe(0)
    expect(errors(r).join('\n')).toContain('the exit status 256 is not an integer from 0 to 255')
    expect(job.canaries.changes()).toEqual([])
    const before = seen.length
    const ok = await job.step('echo through-the-proxy\n')
    expect({ code: ok.r.code, errors: errors(ok.r) }).toEqual({ code: 0, errors: [] })
    expect(ok.r.stdout).toContain('through-the-proxy')
    const failed = await job.step('exit 3\n')
    expect(failed.r.code).toBe(3)
    // the hook's calls really went through the proxy
    expect(seen.length).toBeGreaterThan(before)
  })
})

test('prepare_job facing forged published ports fails naming the answer and leaves nothing; the same job through the passing proxy starts (positive control)', async () => {
  const job = new HostileJob('agent', { config: { remote: { workRoot: testVm().workRoot, dockerSocket: SOCK } } })
  try {
    mode = 'ports'
    forged = 0
    const spec = { container: job.runner.jobContainer(testImages.glibc, { portMappings: ['5432'] }), services: [] }
    const r = await job.runner.prepare(spec)
    mode = 'pass'
    expect(forged).toBeGreaterThan(0)
    expect(r.code).not.toBe(0)
    expect(r.response?.state).toBeUndefined()
    expect(errors(r).join('\n')).toContain('container inspect: NetworkSettings.Ports is missing or not of the expected type')
    expect(JSON.stringify(r.response ?? {})).not.toContain('rch-pwned')
    expect(await leftovers(job.runner)).toEqual(NOTHING)
    const ok = await job.runner.prepare(spec)
    expect(ok.code).toBe(0)
    const ports = (ok.response?.context as { container?: { ports?: Record<string, string> } }).container?.ports ?? {}
    expect(Object.keys(ports)).toEqual(['5432'])
    expect(ports['5432']).toMatch(/^[1-9][0-9]*$/)
  } finally {
    mode = 'pass'
    await job.finish()
  }
})

test("prepare_job whose job container's PATH its state could not keep fails at once, naming the field, and leaves nothing (control: the passing proxy above)", async () => {
  // Before, prepare_job passed and every step then failed with "invalid state from the runner".
  const job = new HostileJob('no-agent', { config: { remote: { workRoot: testVm().workRoot, dockerSocket: SOCK } } })
  try {
    mode = 'path'
    forged = 0
    const r = await job.runner.prepare({ container: job.runner.jobContainer(testImages.glibc), services: [] })
    mode = 'pass'
    expect(forged).toBeGreaterThan(0)
    expect(r.code).not.toBe(0)
    expect(errors(r).join('\n')).toContain("the job's state would be refused by its next command: state.container.path")
    expect(await leftovers(job.runner)).toEqual(NOTHING)
  } finally {
    mode = 'pass'
    await job.finish()
  }
})

/**
 * A step whose exec the hostile engine answers in `how`, with the job's hook.log in a folder of its
 * own: `check` gets the failed step and what it added to hook.log; then the passing proxy runs the
 * next step (control: the job goes on).
 */
async function engineErrorStep(
  how: 'bigerror' | 'forge',
  logs: string,
  check: (r: HookRun, logFile: string, before: number) => void
): Promise<void> {
  const logFile = join(DIR, logs, 'hook.log')
  const job = new HostileJob('agent', { config: { remote: { workRoot: testVm().workRoot, dockerSocket: SOCK }, log: { file: logFile } } })
  try {
    await job.prepare()
    const before = statSync(logFile).size
    mode = how
    forged = 0
    const { r } = await job.step('exit 0\n')
    mode = 'pass'
    expect(forged).toBeGreaterThan(0)
    expect(r.code).not.toBe(0)
    check(r, logFile, before)
    const ok = await job.step('echo fine\n')
    expect(ok.r.code).toBe(0)
  } finally {
    mode = 'pass'
    await job.finish()
  }
}

test('an engine error of 8 MiB is cut in the step log and in hook.log; the passing proxy runs the step (control)', () =>
  engineErrorStep('bigerror', 'logs', (r, logFile, before) => {
    const lines = errors(r)
    expect(lines.join('\n')).toContain('exec refused: … (')
    expect(lines.join('\n')).toContain('characters not shown')
    expect(`${r.stdout}${r.stderr}`.length).toBeLessThan(200_000)
    expect(statSync(logFile).size - before).toBeLessThan(200_000)
  }))

test('an engine error with line breaks, a line shaped as a log entry and terminal escapes makes no entry of its own in hook.log; the passing proxy runs the step (control)', () =>
  engineErrorStep('forge', 'logs-forge', (_r, logFile, before) => {
    const added = readFileSync(logFile, 'utf8').slice(before)
    // Positive control: the machine's text was written, and in its raw form it splits into entries.
    expect(added).toContain(`    ${FORGED_ENTRY}`)
    expect(`x\n${FORGED_ENTRY}\r${FORGED_ENTRY}`.split(/[\r\n]/).filter((l) => l.startsWith('2030-'))).toHaveLength(2)
    expect(added.split('\n').filter((l) => l.startsWith(FORGED_ENTRY.slice(0, 10)))).toEqual([])
    // eslint-disable-next-line no-control-regex -- the control characters are what must be gone
    expect(added).not.toMatch(/[\u0000\u001b\r]/)
  }))
