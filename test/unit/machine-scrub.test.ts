// The reused machine's (pool member's) scrub, run by a real local shell through LocalRemote, against a stub `docker`
// that holds one tag with no digest of its own (one a job made: it must go). Another remover may
// take it first: an image gone meanwhile is what the scrub wants, one still there is a failure.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ask } from '../../src/remote/answer'
import { parseScrub, scrubScript } from '../../src/docker/machine-scrub'
import { shq } from '../../src/remote/quote'
import { LocalRemote } from './local-remote'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'rch-pool-scrub-'))
  mkdirSync(join(dir, 'home'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

/** A docker with one tag, `job/made:1`; `rmi` fails with `rmiError`, and the tag is gone afterwards unless `stays`. */
function dockerStub(rmiError: string, stays: boolean): string {
  const gone = shq(join(dir, 'gone'))
  return [
    `case "$1 $2" in`,
    `  "image ls") [ -e ${gone} ] || echo sha256:made job/made:1 ;;`,
    `  "image inspect") [ -e ${gone} ] && { echo "Error: No such image: $5" >&2; exit 1; }; case "$4" in *RepoTags*) echo 'job/made:1|' ;; *) echo sha256:made ;; esac ;;`,
    `  "rmi job/made:1") ${stays ? '' : `: > ${gone}; `}echo ${shq(rmiError)} >&2; exit 1 ;;`,
    `  *) ;;`,
    `esac`
  ].join('\n')
}

/**
 * A docker whose image B (`gone/away:1`, no digest of its own) is removed by someone else right after
 * the scrub's first listing. A (`library/good:1`) has its own digest; C (`job/poison:1`) is a retag a
 * job made. Answers inspect by ID or by tag, in the order asked, as docker does; records every rmi.
 */
function vanishingStub(): string {
  const listed = shq(join(dir, 'listed'))
  const rmi = shq(join(dir, 'rmi'))
  return [
    `rec() { case "$1" in sha256:a|library/good:1) r='library/good:1|library/good@sha256:1111';;`,
    `  sha256:b|gone/away:1) [ -e ${listed} ] && { echo "Error: No such image: $1" >&2; return 1; }; r='gone/away:1|';;`,
    `  sha256:c|job/poison:1) r='job/poison:1|';; *) echo "Error: No such image: $1" >&2; return 1;; esac;`,
    `  case "$2" in *RepoTags*) echo "$r";; *RepoDigests*) echo "\${r#*|}";; *) echo "\${1%%:*}";; esac; }`,
    `case "$1 $2" in`,
    `  "image ls") shift 2; f=; while [ $# -gt 0 ]; do [ "$1" = --format ] && f=$2; shift; done;`,
    `    b=yes; [ -e ${listed} ] && b=; : > ${listed};`,
    `    for x in "sha256:a library/good:1" \${b:+"sha256:b gone/away:1"} "sha256:c job/poison:1"; do`,
    `      case "$f" in *.ID*) echo "$x";; *) echo "\${x#* }";; esac; done ;;`,
    `  "image inspect") shift 2; f=$2; shift 2; s=0; for a in "$@"; do rec "$a" "$f" || s=1; done; exit $s ;;`,
    `  rmi*) shift; echo "$*" >> ${rmi} ;;`,
    `  *) ;;`,
    `esac`
  ].join('\n')
}

async function scrub(stub: string): Promise<ReturnType<typeof parseScrub>> {
  const remote = new LocalRemote(join(dir, 'remote'), {}, { docker: stub })
  // HOME of its own: the scrub removes $HOME/.docker.
  return parseScrub(await ask(remote, `HOME=${shq(join(dir, 'home'))}; ${scrubScript(join(dir, 'work'))}`, { label: 'scrub' }), 'scrub')
}

test('a tag removed by someone else while the scrub removes it: the scrub succeeds and counts it', async () => {
  const r = await scrub(dockerStub('Error response from daemon: No such image: job/made:1', false))
  expect(r.images).toBe(1)
})

test('positive control: a tag still there after rmi failed (an image in use) fails the scrub with exit 15', async () => {
  await expect(scrub(dockerStub('Error response from daemon: conflict: unable to remove repository reference', true))).rejects.toThrow(
    /exit code 15.*conflict/s
  )
})

test('an image removed by someone else between the listing and the inspect: every remaining tag is judged by its own digests', async () => {
  const r = await scrub(vanishingStub())
  // The first inspect fails on the vanished image; the second listing no longer has it.
  expect(readFileSync(join(dir, 'rmi'), 'utf8')).toBe('job/poison:1\n')
  expect(r.images).toBe(1)
})

test('an inspect that keeps failing (not an image gone) fails the scrub with exit 14 after three listings', async () => {
  const stub = [
    `case "$1 $2" in`,
    `  "image ls") echo x >> ${shq(join(dir, 'ls'))}; echo sha256:a library/good:1 ;;`,
    `  "image inspect") echo 'Cannot connect to the Docker daemon' >&2; exit 1 ;;`,
    `  *) ;;`,
    `esac`
  ].join('\n')
  await expect(scrub(stub)).rejects.toThrow(/exit code 14.*Cannot connect to the Docker daemon/s)
  expect(readFileSync(join(dir, 'ls'), 'utf8')).toBe('x\nx\nx\n')
})

// Job folders with files a container made as root: the SSH user's rm and sudo fail, and the scrub
// runs a kept image as root to remove them. As the job folder's own helper: never a pull, no
// network, and labelled with the scrub's scope, so that one whose rm never ends is the next scrub's.
test.each([
  ['with a scrub scope', 'label=ci.pool=1\n', ['--label', 'ci.pool=1']],
  ['without one (control: no label to give)', null, []]
])("the root helper for root-made job folders, %s: --pull never, --network none, the scope's label", async (_name, scope, label) => {
  const work = join(dir, 'work')
  mkdirSync(join(work, 'jobs', 'owner-job'), { recursive: true })
  if (scope) {
    mkdirSync(join(dir, 'home', '.config', 'remote-container-hooks'), { recursive: true })
    writeFileSync(join(dir, 'home', '.config', 'remote-container-hooks', 'scrub-scope'), scope)
  }
  const runs = join(dir, 'runs')
  const denied = join(dir, 'denied')
  const remote = new LocalRemote(
    join(dir, 'remote'),
    {},
    {
      docker: [
        `case "$1 $2" in`,
        `  "image ls") case "$*" in *Repository*) echo kept/image:1 ;; esac ;;`,
        `  run*) shift; for a in "$@"; do printf '%s\\n' "$a"; done > ${shq(runs)}; /bin/rm -rf ${shq(join(work, 'jobs'))} ;;`,
        `  *) ;;`,
        `esac`
      ].join('\n'),
      // The SSH user's first rm of the job folders is refused, as for files a root container made.
      rm: `case "$*" in *${join(work, 'jobs')}*) [ -e ${shq(denied)} ] || { : > ${shq(denied)}; exit 1; } ;; esac; exec /bin/rm "$@"`
    }
  )
  const r = parseScrub(await ask(remote, `HOME=${shq(join(dir, 'home'))}; ${scrubScript(work)}`, { label: 'scrub' }), 'scrub')
  expect(r.folders).toBe(1)
  const argv = readFileSync(runs, 'utf8').trim().split('\n')
  expect(argv.slice(0, argv.indexOf('-v'))).toEqual(['--rm', '--pull', 'never', '--user', '0', '--network', 'none', ...label])
  // The helper's image may be one a job chose: it gets the job folders alone, not the whole work root.
  expect(argv[argv.indexOf('-v') + 1]).toBe(`${join(work, 'jobs')}:/x/jobs`)
  expect(argv.slice(argv.indexOf('--entrypoint'))).toEqual(['--entrypoint', 'rm', 'kept/image:1', '-rf', '/x/jobs'])
})

// Plugins (privileged, invisible to `docker ps`) and the build cache (a later Dockerfile action would
// reuse a job's layers) go in a real member's scrub; a scoped one (a test machine's shared Engine)
// cannot narrow them, so it leaves them.
test.each([
  ['without a scope (a real member)', null, true],
  ['with a scope (control: a shared Engine)', 'label=ci.pool=1\n', false],
  ['with a scope of images only (a shared Engine too)', 'reference=rch-test/*\n', false]
])('plugins and the build cache, %s', async (_name, scope, removed) => {
  if (scope) {
    mkdirSync(join(dir, 'home', '.config', 'remote-container-hooks'), { recursive: true })
    writeFileSync(join(dir, 'home', '.config', 'remote-container-hooks', 'scrub-scope'), scope)
  }
  const calls = join(dir, 'calls')
  const stub = [`echo "$*" >> ${shq(calls)}`, `case "$1 $2" in`, `  "plugin ls") echo evil/plugin:latest ;;`, `  *) ;;`, `esac`].join('\n')
  await scrub(stub)
  const made = readFileSync(calls, 'utf8').trim().split('\n')
  const wanted = ['plugin ls -q', 'plugin rm -f evil/plugin:latest', 'builder prune -af']
  expect(wanted.filter((c) => made.includes(c))).toEqual(removed ? wanted : [])
  // positive control: the scrub did run its other removals (the containers' listing) either way
  expect(made.some((c) => c.startsWith('ps -aq'))).toBe(true)
})

test('a plugin that cannot be removed fails the scrub (the member is not clean)', async () => {
  const stub = [
    `case "$1 $2" in`,
    `  "plugin ls") echo evil/plugin:latest ;;`,
    `  "plugin rm") echo 'in use' >&2; exit 1 ;;`,
    `  *) ;;`,
    `esac`
  ].join('\n')
  await expect(scrub(stub)).rejects.toThrow(/exit code 18/)
})

// What a job can leave for the scrub's own docker commands and listing (it is root on the member).
describe('a member a job prepared for its scrub', () => {
  const calls = () => join(dir, 'calls')
  /** A docker that logs each call, and whether the job's ~/.docker was still there when it ran. */
  const logging = (extra = ''): string =>
    [
      `[ -e ${shq(join(dir, 'home', '.docker'))} ] && echo seen >> ${shq(join(dir, 'seen'))}; echo "$*" >> ${shq(calls())}`,
      `case "$1 $2" in`,
      extra,
      `  *) ;;`,
      `esac`
    ].join('\n')

  test("the job's ~/.docker (a context that lists nothing) is gone before the first docker command", async () => {
    mkdirSync(join(dir, 'home', '.docker', 'contexts'), { recursive: true })
    writeFileSync(join(dir, 'home', '.docker', 'config.json'), '{"currentContext":"x","aliases":{"builder":"buildx"}}')
    await scrub(logging())
    expect(existsSync(join(dir, 'seen'))).toBe(false)
    // positive control: docker was asked, and the folder is gone
    expect(readFileSync(calls(), 'utf8')).toMatch(/^ps -aq/m)
    expect(existsSync(join(dir, 'home', '.docker'))).toBe(false)
  })

  test('a container made after the listing goes in a second pass; one made again after that fails the scrub; control: none made', async () => {
    const made = shq(join(dir, 'made'))
    const gone = shq(join(dir, 'b-gone'))
    // "a" is listed first; removing it leaves "b", which it made meanwhile; "b" goes when removed.
    const twice = `  "ps -aq") if [ -e ${gone} ]; then :; elif [ -e ${made} ]; then echo b; else echo a; fi ;;\n  "rm -f") case "$*" in *" b"*) : > ${gone} ;; *) : > ${made} ;; esac ;;`
    expect((await scrub(logging(twice))).containers).toBe(2)
    // Before the other passes: made meanwhile, it could make a network, a volume or a tag after them.
    const order = readFileSync(calls(), 'utf8').split('\n')
    expect(order.indexOf('rm -f -v b')).toBeGreaterThan(-1)
    expect(order.indexOf('rm -f -v b')).toBeLessThan(order.findIndex((l) => l.startsWith('network ls')))
    rmSync(join(dir, 'made'))
    rmSync(join(dir, 'calls'))
    // Something that makes "b" again whenever it goes (a unit with Restart=always).
    const respawn = `  "ps -aq") if [ -e ${made} ]; then echo b; else echo a; fi ;;\n  "rm -f") : > ${made} ;;`
    await expect(scrub(logging(respawn))).rejects.toThrow(/exit code 20.*containers are made again while the scrub removes them/s)
    rmSync(join(dir, 'calls'))
    const once = shq(join(dir, 'removed'))
    const plain = `  "ps -aq") [ -e ${once} ] || echo a ;;\n  "rm -f") : > ${once} ;;`
    expect((await scrub(logging(plain))).containers).toBe(1)
  })

  test.each([
    ['active', true],
    ['pending', true],
    ['inactive (control)', false]
  ])('an Engine whose swarm state is %s: the scrub fails on it, as its services would start containers again', async (name, fails) => {
    const state = name.split(' ')[0]
    const info = `  "info --format") echo ${state} ;;`
    if (fails) await expect(scrub(logging(info))).rejects.toThrow(new RegExp(`exit code 21.*swarm mode \\(${state}\\)`, 's'))
    else expect((await scrub(logging(info))).containers).toBe(0)
  })

  test.each([
    ['a symlink to a folder elsewhere', () => symlinkSync(join(dir, 'elsewhere'), join(dir, 'work', 'jobs'))],
    ['a plain file', () => writeFileSync(join(dir, 'work', 'jobs'), 'x')]
  ])("the work root's jobs replaced by %s fails the scrub (the member would fail every later job)", async (_name, plant) => {
    mkdirSync(join(dir, 'elsewhere'))
    writeFileSync(join(dir, 'elsewhere', 'kept'), 'x')
    mkdirSync(join(dir, 'work'))
    plant()
    await expect(scrub(logging())).rejects.toThrow(/exit code 16.*jobs is a symlink or not a folder/s)
    expect(existsSync(join(dir, 'elsewhere', 'kept'))).toBe(true)
  })
})
