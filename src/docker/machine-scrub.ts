// The scrub that makes a reused machine (a pool member) clean for its next job: everything a job can
// leave through Docker (containers, networks, volumes, plugins, the build cache) or as the SSH user
// goes; the image cache stays (that is what a pool is for),
// except images a job built or retagged (a tag not backed by a digest pulled from its own repository
// could be a poisoned `node:20`). The handler hands it to the provider (ProviderEnv.scrub), which runs
// it as the SSH user while it still holds the lease, so no other job is on the machine meanwhile.
//
// Members that share one Docker Engine with other things (the project's test machine) may narrow
// what is listed with a scope file in the SSH user's home (`label=k=v`, `reference=pattern`); a real
// member has none and everything is in scope. Root on the member can defeat any scrub: see
// docs/security.md on maxJobsPerVm.
import { ask, expectEach, record, UnexpectedAnswer } from '../remote/answer'
import { shPath, shq } from '../remote/quote'
import type { Remote } from '../remote/remote'
import { LEASE_CALL } from '../remote/lease-call'

export const SCRUB_SCOPE_FILE = '.config/remote-container-hooks/scrub-scope'

export const SCRUB_COUNTS = ['containers', 'networks', 'volumes', 'images', 'folders', 'processes', 'tmp'] as const
export type ScrubReport = Record<(typeof SCRUB_COUNTS)[number], number>

/** Removes a list read from stdin with `cmd`, counting what was listed; a failed removal fails the scrub. */
const removeAll = (list: string, cmd: string, count: string): string =>
  `ids=$(${list}) || exit 11; ${count}=$(printf '%s' "$ids" | grep -c .); [ -z "$ids" ] || ${cmd} $ids >/dev/null || exit 12; `

export function scrubScript(workRoot: string): string {
  const w = shPath(workRoot)
  return (
    // The job's ~/.docker goes first: a context or config there (an endpoint that lists nothing, an
    // alias that runs the job's program) would steer every docker command below.
    `rm -rf "$HOME/.docker" || exit 17; unset DOCKER_CONFIG DOCKER_CONTEXT; ` +
    // Swarm mode (a job can start it): its services start their containers again after any removal.
    `sw=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null); case "$sw" in ''|inactive) ;; ` +
    `*) echo "the Docker Engine is in swarm mode ($sw): its services would start containers again" >&2; exit 21;; esac; ` +
    `S="$HOME"/${shq(SCRUB_SCOPE_FILE)}; lab=; ref=; ` +
    `if [ -f "$S" ]; then lab=$(sed -n 's/^label=//p' "$S" | head -1); ref=$(sed -n 's/^reference=//p' "$S" | head -1); fi; ` +
    `set --; [ -n "$lab" ] && set -- --filter "label=$lab"; ` +
    // Containers first (they hold networks and volumes); -v takes their anonymous volumes too.
    removeAll(`docker ps -aq "$@"`, 'docker rm -f -v', 'containers') +
    // Listed again at once: a container made meanwhile (a leftover's one-off child) goes before
    // the other passes, so it cannot make a network, a volume or a tag after they ran.
    `again=$(docker ps -aq "$@") || exit 11; if [ -n "$again" ]; then containers=$((containers + $(printf '%s' "$again" | grep -c .))); ` +
    `docker rm -f -v $again >/dev/null || exit 12; fi; ` +
    removeAll(`docker network ls -q --filter type=custom "$@"`, 'docker network rm', 'networks') +
    removeAll(`docker volume ls -q "$@"`, 'docker volume rm -f', 'volumes') +
    // Images: a tag stays only if its image has a digest from that tag's own repository. Tags are
    // judged one by one (an image may carry tags in and out of the scope), each with its own image's
    // tags and digests read by image ID, so an image removed meanwhile cannot shift which tag is
    // judged by whose digests; its inspect fails, and the listing is taken again (up to 3 times).
    `set --; [ -n "$ref" ] && set -- --filter "reference=$ref"; images=0; bad=; ` +
    `L=$(mktemp) || exit 13; O=$(mktemp) || { rm -f "$L"; exit 13; }; got=; for try in 1 2 3; do ` +
    `docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' "$@" > "$L" || { rm -f "$L" "$O"; exit 13; }; ` +
    `ids=$(awk '$2 !~ /<none>/ { print $1 }' "$L") || { rm -f "$L" "$O"; exit 13; }; [ -n "$ids" ] || { got=none; break; }; ` +
    `err=$(docker image inspect --format '{{join .RepoTags " "}}|{{join .RepoDigests " "}}' $ids 2>&1 > "$O") && { got=1; break; }; done; ` +
    `if [ "$got" = 1 ]; then bad=$(awk 'NR == FNR { if ($2 !~ /<none>/) scope[$2] = 1; next } { ` +
    `split($0, p, "|"); n = split(p[2], d, " "); delete ok; for (i = 1; i <= n; i++) { r = d[i]; sub(/@.*/, "", r); ok[r] = 1 } ` +
    `m = split(p[1], g, " "); for (j = 1; j <= m; j++) { t = g[j]; if (!(t in scope)) continue; r = t; sub(/:[^:/]*$/, "", r); if (!(r in ok)) print t } }' "$L" "$O") || got=; ` +
    `bad=$(printf '%s\\n' $bad | sort -u); fi; ` +
    `rm -f "$L" "$O"; [ -n "$got" ] || { printf '%s\\n' "$err" | tail -n 3 >&2; exit 14; }; ` +
    // A tag gone meanwhile (removed by someone else: "No such image") is what the scrub wants; one
    // still there after a failed rmi (an image in use) fails it.
    `if [ -n "$bad" ]; then images=$(printf '%s\\n' "$bad" | grep -c .); docker rmi $bad >/dev/null || ` +
    `{ left=$(docker image inspect --format '{{.Id}}' $bad 2>/dev/null); [ -z "$left" ] || exit 15; }; fi; ` +
    `docker image prune -f "$@" >/dev/null 2>&1; ` +
    // Managed plugins (a privileged process no `docker ps` shows) and the build cache (a later
    // job's Dockerfile action would reuse a layer a job made) go too. Neither can be narrowed to a
    // scope, so a scoped scrub (a test machine's Engine, shared) leaves them.
    `if [ -z "$lab" ] && [ -z "$ref" ]; then pl=$(docker plugin ls -q) || exit 18; [ -z "$pl" ] || docker plugin rm -f $pl >/dev/null || exit 18; ` +
    `docker builder prune -af >/dev/null || exit 19; fi; ` +
    // Listed again after the whole pass: one made since the listing by then (something keeps
    // making them: a leftover, swarm off, a unit with Restart=always) fails the scrub.
    `set --; [ -n "$lab" ] && set -- --filter "label=$lab"; left=$(docker ps -aq "$@") || exit 11; ` +
    `[ -z "$left" ] || { echo "containers are made again while the scrub removes them (something on the machine keeps making them)" >&2; exit 20; }; ` +
    // A jobs folder the hook did not make (a symlink, a file) would fail every later job's prepare_job.
    `if [ -L ${w}/jobs ] || { [ -e ${w}/jobs ] && [ ! -d ${w}/jobs ]; }; then echo "the work root's jobs is a symlink or not a folder" >&2; exit 16; fi; ` +
    // Job folders: files a container made as root need root (a container of a kept image) to go.
    `folders=0; if [ -d ${w}/jobs ] && [ ! -L ${w}/jobs ]; then folders=$(find ${w}/jobs -mindepth 1 -maxdepth 1 | grep -c .); ` +
    `rm -rf ${w}/jobs 2>/dev/null || sudo -n rm -rf ${w}/jobs 2>/dev/null || { ` +
    `img=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | head -1); ` +
    // As the job folder's helper (docker/job-folder.ts): never a pull, no network, and in the scrub's
    // scope, so that one whose rm never ends is removed by the next scrub. The image may be one a job
    // chose: it gets the job folders alone (their contents go; the mount point stays for the rm
    // after it), not the work root with the externals copy and the lease.
    `[ -n "$img" ] && docker run --rm --pull never --user 0 --network none \${lab:+--label "$lab"} -v ${w}/jobs:/x/jobs --entrypoint rm "$img" -rf /x/jobs >/dev/null 2>&1; ` +
    `rm -rf ${w}/jobs; } || exit 16; fi; ` +
    // The SSH user's processes in other sessions (sshd's own stay: they carry other clients' sessions,
    // and so do lease calls: see LEASE_CALL). Never as root: that would end the member's own services
    // (the config refuses root; this is the last guard).
    `processes=0; tmp=0; if [ "$(id -u)" != 0 ]; then ` +
    `me=$(ps -o sid= -p $$ | tr -d ' '); ` +
    // The marker is put together here: written whole, it would be in this scrub's own command line,
    // and a scrub session left hanging (a stuck removal) would be spared by the next.
    `mk=${shq(LEASE_CALL.trim().slice(0, 8))}; mk="$mk"${shq(LEASE_CALL.trim().slice(8))}; ` +
    `pids=$(ps -u "$(id -u)" -o pid=,sid=,comm= | awk -v me="$me" '$2 != me && $3 !~ /^sshd(-session)?$/ { print $1, $2 }' | ` +
    `while read -r p s; do { tr '\\0' ' ' < /proc/"$s"/cmdline; } 2>/dev/null | grep -qF "$mk" || echo "$p"; done); ` +
    `processes=$(printf '%s' "$pids" | grep -c .); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null; ` +
    // Temp files of the SSH user, except the folder that holds the work root (and the lease).
    `for d in /tmp /var/tmp /dev/shm; do for f in "$d"/* "$d"/.[!.]*; do ` +
    `[ -e "$f" ] || [ -L "$f" ] || continue; [ -O "$f" ] || continue; case ${w}/ in "$f"/*) continue;; esac; case "$f"/ in ${w}/*) continue;; esac; ` +
    `rm -rf "$f" 2>/dev/null && tmp=$((tmp + 1)); done; done; fi; ` +
    SCRUB_COUNTS.map((c) => `${record(`"$${c}"`)}; `).join('')
  )
}

export function parseScrub(records: string[], label: string): ScrubReport {
  if (records.length !== SCRUB_COUNTS.length)
    throw new UnexpectedAnswer(`${label}: unexpected answer: ${JSON.stringify(records.slice(0, 8))}`)
  expectEach(records, /^[0-9]{1,9}$/, label)
  return Object.fromEntries(SCRUB_COUNTS.map((c, i) => [c, Number(records[i])])) as ScrubReport
}

export function describeScrub(r: ScrubReport): string {
  const parts = SCRUB_COUNTS.filter((c) => r[c] > 0).map((c) => `${r[c]} ${c === 'tmp' ? 'temp files' : c}`)
  return parts.length ? parts.join(', ') : 'nothing left'
}

/** Scrubs `machine` (its work root at `workRoot`) and counts what went; throws when it is not clean. */
export async function scrubMachine(remote: Remote, workRoot: string, machine: string, signal?: AbortSignal): Promise<ScrubReport> {
  const label = `scrub ${machine}`
  return parseScrub(await ask(remote, scrubScript(workRoot), { label, timeoutMs: 300_000, signal }), label)
}
