// Attack: a step replaces its file-command files (GITHUB_PATH, GITHUB_ENV, GITHUB_OUTPUT,
// GITHUB_STEP_SUMMARY) with a symlink to a runner secret, a FIFO or a folder. If the pull-back
// recreated that on the host, the runner would read the secret into the next step's PATH/env, its
// outputs or the uploaded summary (or hang on the FIFO). Defense: these must be regular files; the
// step fails with an error naming the file and nothing of it reaches the host.
import { lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { errors, HostileJob, MODES, remoteStat, withJob } from './harness'
import { testImages } from '../helpers/testenv'

const FILES = ['GITHUB_PATH', 'GITHUB_ENV', 'GITHUB_OUTPUT', 'GITHUB_STEP_SUMMARY'] as const

function hostKind(path: string): string {
  try {
    const st = lstatSync(path)
    return st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isFIFO() ? 'fifo' : 'other'
  } catch {
    return 'absent'
  }
}

describe.each(MODES)('file commands are regular files on the runner host (%s)', (mode) => {
  const job = new HostileJob(mode)
  beforeAll(() => job.prepare())
  afterAll(() => job.finish())

  test('control: a well-behaved step writes its outputs and they come back', async () => {
    const { r, fc } = await job.step('echo "ok=1" >> "$GITHUB_OUTPUT"\n')
    expect(errors(r)).toEqual([])
    expect(r.code).toBe(0)
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('ok=1\n')
  })

  test.each(FILES)('%s replaced by a symlink to the runner credentials', async (name) => {
    const { r, fc } = await job.step(`ln -sf ../../../.credentials "$${name}"\n`)
    const file = basename(fc.files[name])
    // Positive control: on the VM the file-command file really is that symlink.
    expect(remoteStat(`${job.remoteWork}/_temp/_runner_file_commands/${file}`)).toMatchObject({
      kind: 'symlink',
      target: '../../../.credentials'
    })
    // ...and on the host it would resolve to the canary.
    expect(readFileSync(join(fc.files[name], '..', '../../../.credentials'), 'utf8')).toContain(job.canaries.secret)

    expect(r.code).not.toBe(0)
    expect(errors(r).join('\n')).toContain(file)
    expect(['file', 'absent']).toContain(hostKind(fc.files[name]))
    if (hostKind(fc.files[name]) === 'file') expect(readFileSync(fc.files[name], 'utf8')).not.toContain(job.canaries.secret)
    expect(job.canaries.changes()).toEqual([])
  })

  test('GITHUB_ENV replaced by a FIFO', async () => {
    const { r, fc } = await job.step('rm -f "$GITHUB_ENV"; mkfifo "$GITHUB_ENV"\n')
    const file = basename(fc.files.GITHUB_ENV)
    expect(remoteStat(`${job.remoteWork}/_temp/_runner_file_commands/${file}`)?.kind).toBe('fifo')
    expect(r.code).not.toBe(0)
    expect(errors(r).join('\n')).toContain(file)
    expect(['file', 'absent']).toContain(hostKind(fc.files.GITHUB_ENV))
    expect(job.canaries.changes()).toEqual([])
  })

  // The next two leave the job's folder unusable (a symlink in place of the folder, or a folder of
  // root's that the SSH user cannot remove), so each runs in a job of its own.
  test('the file-command folder itself replaced by a symlink', () =>
    withJob(mode, async (job) => {
      const { r, fc } = await job.step('d=/__w/_temp/_runner_file_commands; rm -rf "$d"; ln -s ../../.. "$d"\n')
      expect(remoteStat(`${job.remoteWork}/_temp/_runner_file_commands`)).toMatchObject({ kind: 'symlink', target: '../../..' })
      expect(r.code).not.toBe(0)
      expect(errors(r).join('\n')).toContain('_runner_file_commands')
      expect(hostKind(join(fc.files.GITHUB_ENV, '..'))).toBe('dir')
      expect(job.canaries.changes()).toEqual([])
    }))

  // _temp as a symlink into the workspace moved the file-command files there, out of the check's
  // sight, where a symlink to another repository's folder in _work was allowed.
  test('_temp itself replaced by a symlink into the workspace', () =>
    withJob(mode, async (job) => {
      const other = join(job.runner.work, 'other')
      mkdirSync(other, { recursive: true })
      writeFileSync(join(other, 'secret.txt'), `OTHER=${job.canaries.secret}\n`)
      // /__w/_temp is a mount of its own in the job container: the step swaps it through the Docker
      // socket, in a container of its own that mounts the job's folder on the VM.
      const swap = `
const http = require('http')
const call = (method, path, body) => new Promise((resolve, reject) => {
  const r = http.request({ socketPath: '/var/run/docker.sock', method, path, headers: { 'Content-Type': 'application/json' } }, (s) => {
    let d = ''
    s.on('data', (c) => (d += c))
    s.on('end', () => resolve(d ? JSON.parse(d) : {}))
  })
  r.on('error', reject)
  r.end(body ? JSON.stringify(body) : undefined)
})
;(async () => {
  const { Id } = await call('POST', '/containers/create', { Image: ${JSON.stringify(testImages.glibc)}, Cmd: ['sh', '-c', 'rm -rf /x/_temp && ln -s repo/t /x/_temp'], HostConfig: { Binds: [${JSON.stringify(job.remoteWork)} + ':/x'] } })
  await call('POST', '/containers/' + Id + '/start')
  await call('POST', '/containers/' + Id + '/wait')
  await call('DELETE', '/containers/' + Id + '?force=1')
})()
`
      const { r, fc } = await job.step(
        'f=$(basename "$GITHUB_ENV"); d=/__w/repo/t/_runner_file_commands; mkdir -p "$d"; ' +
          'ln -s ../../../other/secret.txt "$d/$f"\n' +
          `cat > /tmp/swap.js <<'EOF'\n${swap}\nEOF\n/__e/node20/bin/node /tmp/swap.js\n`
      )
      const file = basename(fc.files.GITHUB_ENV)
      // Positive control: on the VM, GITHUB_ENV now resolves through _temp to the link into the other repository.
      expect(remoteStat(`${job.remoteWork}/_temp`)).toMatchObject({ kind: 'symlink', target: 'repo/t' })
      expect(remoteStat(`${job.remoteWork}/repo/t/_runner_file_commands/${file}`)).toMatchObject({
        kind: 'symlink',
        target: '../../../other/secret.txt'
      })
      expect(r.code).not.toBe(0)
      expect(errors(r).join('\n')).toContain('_temp is a symlink')
      expect(hostKind(join(job.runner.work, '_temp'))).toBe('dir')
      if (hostKind(fc.files.GITHUB_ENV) !== 'absent') expect(readFileSync(fc.files.GITHUB_ENV, 'utf8')).not.toContain(job.canaries.secret)
      expect(job.canaries.changes()).toEqual([])
    }))

  test('GITHUB_OUTPUT replaced by a folder', () =>
    withJob(mode, async (job) => {
      const { r, fc } = await job.step('rm -f "$GITHUB_OUTPUT"; mkdir "$GITHUB_OUTPUT"; echo x > "$GITHUB_OUTPUT/y"\n')
      const file = basename(fc.files.GITHUB_OUTPUT)
      expect(remoteStat(`${job.remoteWork}/_temp/_runner_file_commands/${file}`)?.kind).toBe('dir')
      expect(r.code).not.toBe(0)
      expect(errors(r).join('\n')).toContain(file)
      expect(['file', 'absent']).toContain(hostKind(fc.files.GITHUB_OUTPUT))
      expect(job.canaries.changes()).toEqual([])
    }))
})
