// How a container's mounts reach docker, in both ways the hook creates containers: CLI flags and
// the Engine API's create body.
//
// A named volume goes as a volume mount carrying the job's labels, not as `-v name:/target`:
// docker creates a volume that does not exist when the container is created, and a volume that
// prepare_job found existing (made by the job of another runner on the VM) can be removed by that
// job's cleanup before this job's containers are created. Created by `-v`, it would carry no label
// and no cleanup or `reap` would ever remove it; with `volume-label` it is this job's, and this
// job's cleanup removes it. A volume that exists keeps its own labels. The same holds for a
// container action's named volume, which nothing creates beforehand.
//
// The runner's externals copy on the VM goes as a bind mount too (`type=bind`), not `-v`: docker
// makes a missing `-v` source as an empty folder, and the copy may be missing for a moment when the
// VM's daily collection of old copies has just moved it aside (and is about to put it back). The job
// would then run with an empty /__e; with `type=bind` docker refuses the create, which the job
// reports.

export interface MountSpec {
  /** Remote path, volume name, or null for an anonymous volume. */
  source: string | null
  target: string
  readOnly: boolean
  /** A host path that must exist at create: docker refuses the create rather than make it. */
  existing?: boolean
}

/** A mount of a named volume (a source that is not an absolute path). */
export const namedVolume = (m: MountSpec): m is MountSpec & { source: string } => !!m.source && !m.source.startsWith('/')

/** Goes as `--mount` / `HostConfig.Mounts`: a named volume, or a host path that must exist. */
export const asMount = (m: MountSpec): m is MountSpec & { source: string } => namedVolume(m) || (!!m.source && !!m.existing)

/** The `-v` / `Binds` form, for a host path or an anonymous volume. */
export const bindOf = (m: MountSpec): string => (m.source ? `${m.source}:` : '') + m.target + (m.readOnly ? ':ro' : '')

/** `--mount` for `asMount`. Each field is quoted as docker's CSV reader takes it: a target may hold `,` or `"`. */
export function mountFlag(m: MountSpec & { source: string }, labels: Record<string, string>): string {
  const volume = namedVolume(m)
  const fields = [
    volume ? 'type=volume' : 'type=bind',
    `source=${m.source}`,
    `target=${m.target}`,
    ...(m.readOnly ? ['readonly'] : []),
    ...(volume ? Object.entries(labels).map(([k, v]) => `volume-label=${k}=${v}`) : [])
  ]
  return fields.map((f) => `"${f.replace(/"/g, '""')}"`).join(',')
}

/** The Engine API's `HostConfig.Mounts` entry for `asMount`, as `docker create --mount` sends it. */
export function mountBody(m: MountSpec & { source: string }, labels: Record<string, string>): object {
  const base = { Source: m.source, Target: m.target, ReadOnly: m.readOnly }
  return namedVolume(m) ? { Type: 'volume', ...base, VolumeOptions: { Labels: labels } } : { Type: 'bind', ...base }
}
