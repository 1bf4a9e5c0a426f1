// Image pulls are bounded: images.pullTimeoutSeconds ends a hung pull, and a cancel ends it (or a
// container action's build) at once; either way the remote channel is closed and the call fails.
import { buildImage, dockerConfig, pullImage } from '../../src/docker/cli'
import { Cancelled } from '../../src/errors'
import { longLineNote } from '../../src/line-tail'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'
import { LocalRemote } from './local-remote'

afterAll(cleanupTempDirs)

/** A docker that has no image and whose pull takes `secs` seconds (it creates dir/marker first). */
function remote(secs: number, dir = tempDir()): LocalRemote {
  return new LocalRemote(dir, {}, { docker: `case "$1" in image) exit 1;; pull) : > ${dir}/marker; sleep ${secs}; echo pulled;; esac` })
}

test('a pull that finishes in time succeeds (positive control)', async () => {
  await expect(pullImage(remote(0.2), 'img:1', null, '/nowhere', undefined, { timeoutMs: 10_000 })).resolves.toBe('pulled')
})

test('a hung pull fails after images.pullTimeoutSeconds, naming the pull', async () => {
  const t0 = Date.now()
  await expect(pullImage(remote(30), 'img:1', null, '/nowhere', undefined, { timeoutMs: 500 })).rejects.toThrow(
    'docker pull img:1: no result after 0.5 s'
  )
  expect(Date.now() - t0).toBeLessThan(10_000)
})

// Bounds of 10 s where the stand-in's pull or build would take 30 s: "at once" on a loaded machine too.

/** Starts `run` with a signal, waits for its `marker` file (the remote command is under way), cancels, and returns what it threw and how long after the cancel. */
async function cancelled(dir: string, run: (signal: AbortSignal) => Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const c = new AbortController()
  const going = run(c.signal).catch((e: unknown) => e)
  expect(await waitUntil(() => existsSync(`${dir}/marker`), 10_000, 10)).toBe(true)
  const t0 = Date.now()
  c.abort('SIGINT')
  const err = await going
  return { err, ms: Date.now() - t0 }
}

test('a cancel ends the pull at once with Cancelled', async () => {
  const dir = tempDir()
  const { err, ms } = await cancelled(dir, (signal) => pullImage(remote(30, dir), 'img:1', null, '/nowhere', undefined, { signal }))
  expect(err).toBeInstanceOf(Cancelled)
  expect((err as Error).message).toBe('cancelled by SIGINT')
  expect(ms).toBeLessThan(10_000)
})

test('a cancel ends a Dockerfile build at once with Cancelled (a build prints nothing while its RUN steps go on)', async () => {
  const dir = tempDir()
  const r = new LocalRemote(dir, {}, { docker: `case "$1" in build) : > ${dir}/marker; sleep 30; echo built;; esac` })
  const { err, ms } = await cancelled(dir, (signal) =>
    buildImage(r, 'rch-action-x:1', '/w/a/Dockerfile', '/w/a', [], () => undefined, signal)
  )
  expect(err).toBeInstanceOf(Cancelled)
  expect((err as Error).message).toBe('cancelled by SIGINT')
  expect(ms).toBeLessThan(10_000)
})

test('the pull output a hostile docker on the VM prints is held a bounded line at a time (a line without end is not buffered whole)', async () => {
  // 8 MiB without a newline, then a short line: the docker CLI on the VM is the job's to replace.
  const r = new LocalRemote(
    tempDir(),
    {},
    { docker: `case "$1" in image) exit 1;; pull) head -c 8388608 /dev/zero | tr '\\0' x; printf '\\nok\\n';; esac` }
  )
  const lines: string[] = []
  await expect(pullImage(r, 'img:1', null, '/nowhere', (l) => void lines.push(l), { timeoutMs: 20_000 })).resolves.toBe('pulled')
  expect(lines[lines.length - 1]).toBe('ok') // control: the lines after it still arrive
  // Control: the long line was really printed. It stands as a note, never in part (line-tail.ts).
  expect(lines).toEqual([longLineNote(4096), 'ok'])
})

test("a build's stderr line split across writes (and a character split across them) arrives whole; a last line without a newline arrives too", async () => {
  // The euro sign's three bytes are written in two parts, with a pause between, so they reach the hook as two chunks.
  const script = `printf 'step 1: a line '; sleep 0.2; printf 'written in two \\342\\202'; sleep 0.2; printf '\\254 parts\\nlast words' `
  const r = new LocalRemote(tempDir(), {}, { docker: `case "$1" in build) { ${script}; } >&2; exit 1;; esac` })
  const lines: string[] = []
  await expect(buildImage(r, 'rch-action-x:1', '/w/a/Dockerfile', '/w/a', [], (l) => void lines.push(l))).rejects.toThrow()
  expect(lines).toEqual(['step 1: a line written in two \u20ac parts', 'last words'])
})

test('control: lines written whole arrive one each, in order', async () => {
  const r = new LocalRemote(tempDir(), {}, { docker: `case "$1" in build) printf 'one\\ntwo\\n' >&2;; esac` })
  const lines: string[] = []
  await buildImage(r, 'rch-action-x:1', '/w/a/Dockerfile', '/w/a', [], (l) => void lines.push(l))
  expect(lines).toEqual(['one', 'two'])
})

test("a failed container's logs are read up to 1 MiB, whatever the VM's docker prints (control: a short log is shown)", async () => {
  const { containerLogs } = await import('../../src/docker/cli')
  const huge = new LocalRemote(tempDir(), {}, { docker: 'head -c 20000000 /dev/zero | tr "\\0" x' })
  await expect(containerLogs(huge, 'c1')).resolves.toMatch(/over 1048576 bytes: not shown/)
  const short = new LocalRemote(tempDir(), {}, { docker: 'echo "database ready"' })
  await expect(containerLogs(short, 'c1')).resolves.toBe('database ready\n')
})

describe('registry credentials', () => {
  const registry = { username: 'octo-user-7f3a', password: 'pw-9c1e-secret', serverUrl: 'https://registry.example.test:5000/v2' }

  test('reach the VM on stdin as a private docker config: neither the user name nor the password is on a command line', async () => {
    const dir = tempDir()
    const config = `${dir}/cfg`
    // The stub docker keeps its arguments and the config it was given (as a real pull would read it).
    const r = new LocalRemote(
      dir,
      {},
      { docker: `echo "$*" >> ${dir}/argv; [ "$1" = --config ] && cp "$2/config.json" ${dir}/seen.json; echo pulled` }
    )
    await expect(pullImage(r, 'registry.example.test:5000/app:1', registry, config, undefined, { timeoutMs: 20_000 })).resolves.toBe(
      'pulled'
    )
    const seen = JSON.parse(readFileSync(`${dir}/seen.json`, 'utf8')) as { auths: Record<string, { auth: string }> }
    expect(seen).toEqual({
      auths: { 'registry.example.test:5000': { auth: Buffer.from('octo-user-7f3a:pw-9c1e-secret').toString('base64') } }
    })
    expect(readFileSync(`${dir}/argv`, 'utf8')).toBe(`--config ${config} pull registry.example.test:5000/app:1\n`) // control: the stub ran
    for (const secret of [registry.username, registry.password]) {
      expect(r.commands.join('\n')).not.toContain(secret)
      expect(readFileSync(`${dir}/argv`, 'utf8')).not.toContain(secret)
    }
    expect(existsSync(config)).toBe(false) // the config is gone after the pull
  })

  test('are removed from the VM after a pull that fails too; while it ran, they were readable by the SSH user alone', async () => {
    const dir = tempDir()
    const config = `${dir}/cfg`
    // The stub docker keeps the config and its modes (as a real pull would read it), then fails as a refused login does.
    const r = new LocalRemote(
      dir,
      {},
      {
        docker: `[ "$1" = --config ] && cp "$2/config.json" ${dir}/seen.json && stat -c %a "$2" "$2/config.json" > ${dir}/modes; echo 'denied' >&2; exit 1`
      }
    )
    await expect(pullImage(r, 'registry.example.test:5000/app:1', registry, config, undefined, { timeoutMs: 20_000 })).rejects.toThrow(
      /docker pull registry\.example\.test:5000\/app:1.*exit code 1/
    )
    expect(readFileSync(`${dir}/seen.json`, 'utf8')).toContain('"auths"') // control: the config was there while the pull ran
    expect(readFileSync(`${dir}/modes`, 'utf8')).toBe('700\n600\n')
    expect(existsSync(config)).toBe(false)
  })

  test('are removed from the VM after a pull that is cancelled (the VM command outlives its closed channel, as under sshd)', async () => {
    const dir = tempDir()
    const config = `${dir}/cfg`
    const bin = `${dir}/bin`
    mkdirSync(bin)
    // A docker whose pull hangs; it notes that it started with the config in place.
    writeFileSync(
      `${bin}/docker`,
      `#!/bin/sh
[ -e "$2/config.json" ] && : > ${dir}/marker
exec sleep 30
`
    )
    chmodSync(`${bin}/docker`, 0o755)
    // sshd closes a command's pipes when its channel closes and signals nothing (no terminal):
    // this remote does the same, where LocalRemote ends the whole process group.
    const started: number[] = []
    const r: Remote = {
      async openExec(command) {
        const c = spawn('/bin/sh', ['-c', command], { env: { PATH: `${bin}:/usr/bin:/bin` }, detached: true })
        started.push(c.pid!)
        const done = new Promise<{ code: number | null; signal: string | null }>((res) =>
          c.on('close', (code, signal) => res({ code, signal }))
        )
        return { stdin: c.stdin, stdout: c.stdout, stderr: c.stderr, done }
      },
      openSocket: () => Promise.reject(new Error('no sockets here')),
      close: () => undefined
    }
    try {
      const { err } = await cancelled(dir, (signal) =>
        pullImage(r, 'registry.example.test:5000/app:1', registry, config, undefined, { signal })
      )
      expect(err).toBeInstanceOf(Cancelled)
      expect(await waitUntil(() => !existsSync(config), 10_000)).toBe(true)
    } finally {
      for (const pid of started)
        try {
          process.kill(-pid, 'SIGKILL')
        } catch {
          // already gone
        }
    }
  })

  test("Docker Hub's credentials go under the key docker login uses for it", () => {
    expect(JSON.parse(dockerConfig({ username: 'u', password: 'p', serverUrl: '' }))).toEqual({
      auths: { 'https://index.docker.io/v1/': { auth: Buffer.from('u:p').toString('base64') } }
    })
    const key = (serverUrl: string): string[] =>
      Object.keys((JSON.parse(dockerConfig({ username: 'u', password: 'p', serverUrl })) as { auths: object }).auths)
    for (const hub of ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'Docker.io'])
      expect(key(hub)).toEqual(['https://index.docker.io/v1/'])
    expect(key('ghcr.io')).toEqual(['ghcr.io'])
    expect(key('registry-1.docker.io')).toEqual(['registry-1.docker.io']) // not a name the CLI takes for Hub
    expect(key('Registry.Example.test')).toEqual(['Registry.Example.test']) // keys are matched as written
    expect(key('https://registry.example.test:5000/v2/')).toEqual(['registry.example.test:5000'])
  })
})
