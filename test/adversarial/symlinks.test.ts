// Attack: links made in the job container come back to the runner host. A symlink whose target
// leaves `_work` (relative `../..` or absolute) would let the runner (hashFiles, local actions,
// artifacts, the next pull-back) read or write outside the job's area; a symlink planted in one step
// must never redirect a later write; hardlinks must not arrive as links. `_work` also holds other
// repositories' folders, which a link would open to the runner's reads (hashFiles of a secret file
// there is an oracle for its content). `_actions` holds what the runner unpacked from the job's
// actions, symlinks included, which may lead anywhere: a link into it is judged by its text only.
// Defense: only symlinks that stay inside the folders synced back (the repository's folder and
// `_temp`) are created; parents are resolved without following symlinks.
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { errors, HostileJob, MODES, remoteStat } from './harness'

describe.each(MODES)('links from the VM (%s)', (mode) => {
  const job = new HostileJob(mode)
  beforeAll(() => job.prepare())
  afterAll(() => job.finish())

  test('symlinks that leave _work are not created on the runner host', async () => {
    const { r } = await job.step(
      'cd /__w/repo/repo\n' +
        'ln -s ../../.. up\n' + // _work/repo/repo/../../.. = the runner root
        'ln -s /etc abs\n' +
        'ln -s ../../../.credentials creds\n' +
        'ln -s ../../_temp/x/../../.. sneaky\n' +
        'ln -s ../../other/other/.env other\n' + // another repository's folder in _work
        'ln -s ../.. work\n' + // _work itself, and so every folder in it
        'ln -s ../../_actions/a/esc/.env actions\n' + // through a link an action brought, anywhere
        'ln -s ../../_temp/x tmp\n' + // the folders synced back: allowed
        'ln -s ../repo/x inside\n' +
        'echo data > plain.txt\n'
    )
    const ws = job.runner.workspace
    // Positive control: the VM has every one of them.
    for (const n of ['up', 'abs', 'creds', 'sneaky', 'other', 'work', 'actions', 'tmp', 'inside'])
      expect(remoteStat(`${job.remoteWork}/repo/repo/${n}`)?.kind).toBe('symlink')

    expect(errors(r)).toEqual([])
    expect(r.code).toBe(0)
    for (const n of ['up', 'abs', 'creds', 'sneaky', 'other', 'work', 'actions'])
      expect(existsSync(join(ws, n)) || isLink(join(ws, n))).toBe(false)
    expect(readlinkSync(join(ws, 'tmp'))).toBe('../../_temp/x')
    expect(readlinkSync(join(ws, 'inside'))).toBe('../repo/x')
    expect(readFileSync(join(ws, 'plain.txt'), 'utf8')).toBe('data\n')
    expect(job.canaries.changes()).toEqual([])
  })

  test('a symlink planted in one step does not redirect a later write', async () => {
    const first = await job.step('cd /__w/repo/repo && ln -s ../../_temp redirect\n')
    expect(first.r.code).toBe(0)
    expect(readlinkSync(join(job.runner.workspace, 'redirect'))).toBe('../../_temp')
    const { r } = await job.step('cd /__w/repo/repo && rm redirect && mkdir redirect && echo planted > redirect/evil.txt\n')
    expect(remoteStat(`${job.remoteWork}/repo/repo/redirect`)?.kind).toBe('dir')
    expect(r.code).toBe(0)
    expect(existsSync(join(job.runner.work, '_temp', 'evil.txt'))).toBe(false)
    expect(lstatSync(join(job.runner.workspace, 'redirect')).isDirectory()).toBe(true)
    expect(readFileSync(join(job.runner.workspace, 'redirect', 'evil.txt'), 'utf8')).toBe('planted\n')
  })

  test('hardlinks arrive as separate regular files', async () => {
    const { r } = await job.step('cd /__w/repo/repo && echo one > h1 && ln h1 h2 && mkdir -p sub && ln h1 sub/h3\n')
    expect(remoteStat(`${job.remoteWork}/repo/repo/h2`)?.kind).toBe('file')
    expect(lstatSync(`${job.remoteWork}/repo/repo/h2`).nlink).toBe(3)
    expect(r.code).toBe(0)
    for (const p of [join(job.runner.workspace, 'h1'), join(job.runner.workspace, 'h2'), join(job.runner.workspace, 'sub', 'h3')]) {
      expect(lstatSync(p).isFile()).toBe(true)
      expect(lstatSync(p).nlink).toBe(1)
      expect(readFileSync(p, 'utf8')).toBe('one\n')
    }
  })

  test('FIFOs and sockets in the workspace are not created on the runner host', async () => {
    // perl-base is in every Debian image: a Unix socket left bound in the workspace.
    const { r } = await job.step(
      'cd /__w/repo/repo && mkfifo pipe && perl -MIO::Socket::UNIX -e \'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "sock", Listen => 1) or die $!\' && echo fine > after-pipe.txt\n'
    )
    // Positive control: both are there on the VM.
    expect(remoteStat(`${job.remoteWork}/repo/repo/pipe`)?.kind).toBe('fifo')
    expect(lstatSync(`${job.remoteWork}/repo/repo/sock`).isSocket()).toBe(true)
    expect(r.code).toBe(0)
    expect(existsSync(join(job.runner.workspace, 'pipe'))).toBe(false)
    expect(existsSync(join(job.runner.workspace, 'sock'))).toBe(false)
    expect(readFileSync(join(job.runner.workspace, 'after-pipe.txt'), 'utf8')).toBe('fine\n')
  })
})

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink()
  } catch {
    return false
  }
}
