// Removing a job's remote folder, including files root-run containers left there.
import { check, type Remote } from '../remote/remote'
import { shq } from '../remote/quote'

/**
 * Removes the remote job folder. Containers ran as root and may have left root-owned files the SSH
 * user cannot delete; then a short-lived root container does it.
 */
export async function removeJobFolder(remote: Remote, jobRoot: string, image: string | null): Promise<void> {
  const q = shq(jobRoot)
  const helper = image
    ? `docker run --rm --user 0 -v ${q}:/x --entrypoint rm ${shq(image)} -rf /x/w /x/docker-config-0 >/dev/null 2>&1; rm -rf ${q}`
    : `img=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | head -1); [ -n "$img" ] && docker run --rm --user 0 -v ${q}:/x --entrypoint rm "$img" -rf /x/w >/dev/null 2>&1; rm -rf ${q}`
  await check(remote, `[ ! -e ${q} ] || rm -rf ${q} 2>/dev/null || sudo -n rm -rf ${q} 2>/dev/null || { ${helper}; }`, { label: 'remove the job folder' })
}
