// Old copies of the runner's externals on a VM that lasts (a static host, a pool member). Each
// runner upgrade brings a new content version (`<workRoot>/externals/<hash>`), and nothing else
// ever removes the old ones. Every prepare_job that finds its version touches that copy's
// `.rch-complete`, so its mtime is when a job last started with it; a copy no job has started with
// for `remote.externalsKeepDays` is removed, at most once a day per VM, in the background of the
// job-folder round trip (the job never waits for it).
//
// A job of another runner may be starting with an old copy just then. It touches before it looks;
// the collection moves a copy aside before it removes it, then looks at the mtime again and puts
// it back when it was touched meanwhile. A job that looked before the move found it touched by then.
// Jobs that run while their copy ages past the limit are not seen: the limit's floor is above
// GitHub's longest job (5 days on self-hosted runners). The first collection on a VM only marks
// every copy used (a runner still on an older build of the hook never marks its copy).
import { shq } from '../remote/quote'
import { HEX16_GLOB } from '../docker/job-folder'

/** Shell: touches a present copy's marker (its last use), then tells whether it is complete. */
export function externalsLookScript(dest: string, yes: string, no: string): string {
  const marker = shq(`${dest}/.rch-complete`)
  return `touch -c -h ${marker} 2>/dev/null; if [ -f ${marker} ]; then ${yes}; else ${no}; fi`
}

/** At most once per this many minutes per VM. */
const EVERY_MIN = 24 * 60

/**
 * Shell: starts the collection in the background, detached from the channel, unless `days` is 0.
 * Only folders named exactly as a content version are looked at, never through a symlink; `keep`
 * (the version this job uses) is never removed.
 */
export function externalsGcScript(workRoot: string, keep: string, days: number): string {
  return days > 0 ? `(${externalsGcBody(workRoot, keep, days)}) </dev/null >/dev/null 2>&1 &` : ''
}

/** Shell: the collection itself, in the foreground (tests run it so). */
export function externalsGcBody(workRoot: string, keep: string, days: number): string {
  const e = shq(`${workRoot}/externals`)
  const copies = `for d in ${HEX16_GLOB}; do [ -d "$d" ] && [ ! -L "$d" ] || continue; `
  return (
    `E=${e}; [ -d "$E" ] && [ ! -L "$E" ] || exit 0; cd -P "$E" || exit 0; ` +
    // A copy's age: its marker's mtime, or the folder's own without one.
    `aged() { if [ -f "$1/.rch-complete" ]; then m="$1/.rch-complete"; else m="$1"; fi; ` +
    `[ -n "$(find "$m" -maxdepth 0 -mmin +${days * 24 * 60} 2>/dev/null)" ]; }; ` +
    `[ -n "$(find .rch-gc -maxdepth 0 -mmin -${EVERY_MIN} 2>/dev/null)" ] && exit 0; ` +
    // One collection at a time (two jobs may start in the same second); a killed one's lock lapses.
    `find .rch-gc.lock -maxdepth 0 -mmin +${EVERY_MIN} -exec rmdir {} \\; 2>/dev/null; mkdir .rch-gc.lock 2>/dev/null || exit 0; ` +
    // The first collection on this VM only marks every copy used: a build of the hook before the
    // collection never marked the copies its jobs start with, and one may still run beside this one.
    `if [ ! -e .rch-gc ]; then ${copies}touch -c -h "$d/.rch-complete" 2>/dev/null; done; touch .rch-gc; rmdir .rch-gc.lock; exit 0; fi; ` +
    `touch .rch-gc; now=$(date +%s); ` +
    // Copies a killed collection moved aside (named with the time of the move), a day on: put back
    // when a job marked one since and its place is free, else removed. Younger ones are another's.
    `for t in .rch-gc-${HEX16_GLOB}-*; do [ -d "$t" ] && [ ! -L "$t" ] || continue; at=\${t##*-}; ` +
    `case $at in ''|*[!0-9]*) continue;; esac; [ $((now - at)) -gt ${EVERY_MIN * 60} ] || continue; ` +
    `d=\${t#.rch-gc-}; d=\${d%-*}; if ! aged "$t" && [ ! -e "$d" ]; then mv -T "$t" "$d" 2>/dev/null || rm -rf "$t"; else rm -rf "$t"; fi; done; ` +
    `${copies}[ "$d" = ${shq(keep)} ] && continue; aged "$d" || continue; ` +
    `t=".rch-gc-$d-$now"; mv -T "$d" "$t" 2>/dev/null || continue; ` +
    `if aged "$t"; then rm -rf "$t"; else mv -T "$t" "$d" 2>/dev/null || rm -rf "$t"; fi; done; rmdir .rch-gc.lock`
  )
}
