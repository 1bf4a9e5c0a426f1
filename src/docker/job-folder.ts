// A job's remote folder: its exact name, creating it private, and removing it (including files
// root-run containers left there). A job folder path is only ever built from the configured work
// root and checked against the exact pattern before it reaches a shell, so nothing the remote
// prints can become an argument to `rm`.
import { HookError } from '../errors'
import { check, type Remote } from '../remote/remote'
import { shq } from '../remote/quote'
import { escapeRe, HEX16 } from '../input-rules'
import { LABEL_JOB, LABEL_OWNER } from '../labels'
import { nameOnly } from './image'

/** A shell glob matching exactly 16 lower-case hex digits. */
export const HEX16_GLOB = '[0-9a-f]'.repeat(16)

/** `<owner>-<job id>`, both 16 hex digits. */
export function jobFolderName(owner: string, jobId: string): string {
  if (!HEX16.test(owner) || !HEX16.test(jobId))
    throw new HookError(`not a job folder name: owner ${JSON.stringify(owner)}, job ${JSON.stringify(jobId)}`)
  return `${owner}-${jobId}`
}

/** The job's remote folder, `<workRoot>/jobs/<owner>-<job id>`: the one place that builds it. */
export const jobFolder = (workRoot: string, owner: string, jobId: string): string => `${workRoot}/jobs/${jobFolderName(owner, jobId)}`

/** Matches `<workRoot>/jobs/<16 hex>-<16 hex>` and nothing else (no `..`, no extra slashes). */
function jobFolderPattern(workRoot: string): RegExp {
  return new RegExp(`^${escapeRe(workRoot)}/jobs/[0-9a-f]{16}-[0-9a-f]{16}$`)
}

export function assertJobFolder(workRoot: string, jobRoot: string): void {
  if (!jobFolderPattern(workRoot).test(jobRoot)) {
    throw new HookError(`refusing to touch ${JSON.stringify(jobRoot.slice(0, 200))}: not a job folder of ${workRoot}/jobs`)
  }
}

/**
 * Shell: fails unless `<workRoot>/jobs` is a real folder (not a symlink to somewhere else), then
 * makes it 0700. Job files hold step scripts and env files; other users of the host must not read them.
 */
export function privateJobsDirScript(workRoot: string): string {
  const jobs = shq(`${workRoot}/jobs`)
  return `{ [ ! -L ${jobs} ] || { echo "${workRoot}/jobs is a symlink" >&2; exit 1; }; } && mkdir -p ${jobs} && chmod 700 ${jobs}`
}

/**
 * Shell: creates a new job folder (0700, with its `w` subfolder) under umask 077; fails if it exists
 * (a fresh random name cannot, so something planted it). The job folder keeps other users of the
 * host out; `w` itself is 0755 because it is the containers' /__w, and a container running as
 * another user than the SSH user must still enter it (a bind mount skips the parents' modes).
 */
export function createJobFolderScript(workRoot: string, jobRoot: string): string {
  assertJobFolder(workRoot, jobRoot)
  return `umask 077 && ${privateJobsDirScript(workRoot)} && mkdir ${shq(jobRoot)} && chmod 700 ${shq(jobRoot)} && mkdir -m 755 ${shq(`${jobRoot}/w`)}`
}

/**
 * Removes a job folder. Containers ran as root and may have left root-owned files the SSH user
 * cannot delete; then a short-lived root container does it. A symlink in the job folder's place is
 * removed itself, never followed (docker would follow it for a bind mount).
 */
export async function removeJobFolder(remote: Remote, workRoot: string, jobRoot: string, image: string | null): Promise<void> {
  assertJobFolder(workRoot, jobRoot)
  const q = shq(jobRoot)
  const jobs = shq(`${workRoot}/jobs`)
  // The job's image (the job chose it) runs as root here: labelled as the job's, so that if its
  // `rm` never ends, the removal by labels that comes next (or the runner's next job) ends it; no
  // network, and never a pull.
  const [owner, jobId] = jobRoot.slice(jobRoot.lastIndexOf('/') + 1).split('-')
  const run = `docker run --rm --pull never --network none --label ${shq(`${LABEL_OWNER}=${owner}`)} --label ${shq(`${LABEL_JOB}=${jobId}`)} --user 0 -v ${q}:/x --entrypoint rm`
  const helper = image
    ? `${run} ${shq(nameOnly(image))} -rf /x/w /x/docker-config-0 >/dev/null 2>&1; rm -rf ${q}`
    : `img=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | head -1); [ -n "$img" ] && ${run} "$img" -rf /x/w >/dev/null 2>&1; rm -rf ${q}`
  await check(
    remote,
    `if [ -L ${jobs} ]; then echo "${workRoot}/jobs is a symlink" >&2; exit 1; ` +
      `elif [ -L ${q} ]; then rm -f ${q}; ` +
      `elif [ -e ${q} ]; then rm -rf ${q} 2>/dev/null || sudo -n rm -rf ${q} 2>/dev/null || { ${helper}; }; fi`,
    { label: 'remove the job folder' }
  )
}

/**
 * `owned` (removing a job's containers, networks and volumes), then `folders` even when that
 * failed: a job folder is never kept because something the job's code holds on to could not go.
 * The first failure is rethrown as it was (its kind decides retries); a second one goes to `also`.
 */
export async function thenFolders<T>(owned: Promise<T>, folders: () => Promise<void>, also: (e: unknown) => void): Promise<T> {
  const r = await owned.then(
    (value) => ({ value }),
    (error: unknown) => ({ error })
  )
  // A folders() that throws before its promise is treated as one that rejects.
  const run = (): Promise<void> => Promise.resolve().then(folders)
  if (!('error' in r)) {
    await run()
    return r.value
  }
  await run().catch(also)
  throw r.error
}

/**
 * thenFolders for a report line: when `owned` failed, its error (same object, so its kind) also
 * says what became of the job folder, which was tried all the same.
 */
export async function thenFoldersReported<T>(owned: Promise<T>, folders: () => Promise<void>): Promise<T> {
  let ownedFailed = false
  let folderError: { e: unknown } | null = null
  const marked = owned.catch((e: unknown) => {
    ownedFailed = true
    throw e
  })
  try {
    return await thenFolders(marked, folders, (e) => (folderError = { e }))
  } catch (e) {
    if (!ownedFailed) throw e
    const f = folderError as { e: unknown } | null
    const tail = f
      ? `; the job folder could not be removed either: ${f.e instanceof Error ? f.e.message : String(f.e)}`
      : '; the job folder was removed'
    if (e instanceof Error) {
      e.message += tail
      throw e
    }
    throw new Error(`${String(e)}${tail}`, { cause: e })
  }
}
