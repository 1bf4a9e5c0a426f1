// The pool member's scrub, run by a real local shell through LocalRemote, against a stub `docker`
// that holds one tag with no digest of its own (one a job made: it must go). Another remover may
// take it first: an image gone meanwhile is what the scrub wants, one still there is a failure.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ask } from '../../src/remote/answer'
import { parseScrub, scrubScript } from '../../src/providers/pool-scrub'
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
    `  "image ls") [ -e ${gone} ] || echo job/made:1 ;;`,
    `  "image inspect") [ -e ${gone} ] && { echo "Error: No such image: $5" >&2; exit 1; }; case "$3" in --format) case "$4" in *RepoDigests*) echo ;; *) echo sha256:abc ;; esac ;; esac ;;`,
    `  "rmi job/made:1") ${stays ? '' : `: > ${gone}; `}echo ${shq(rmiError)} >&2; exit 1 ;;`,
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
