// What a well-formed value looks like, for every string the runner, the state or the config hands
// over that later becomes part of a docker argument, a remote path or a socket name. Pure
// predicates: the schemas in protocol.ts, state.ts and config.ts turn them into field errors.
import { isIPv6 } from 'node:net'
import { posix } from 'node:path'

/** Control characters end up as extra lines or truncated strings in shells, logs and docker. */
export const hasNul = (s: string): boolean => s.includes('\0')
export const hasNewline = (s: string): boolean => /[\r\n]/.test(s)
// eslint-disable-next-line no-control-regex -- control characters are exactly what this looks for
export const hasControl = (s: string): boolean => /[\x00-\x1f\x7f]/.test(s)

// docker's reference grammar (distribution/reference): [domain/]path[:tag][@digest].
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const TAG = '[\\w][\\w.-]{0,127}'
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}'
const IMAGE_REF = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::${TAG})?(?:@${DIGEST})?$`)
const NAME_MAX = 255

/** An image reference docker would parse as one (never an option: it cannot start with `-`). */
export function isImageRef(s: string): boolean {
  if (s.length > 1024 || !IMAGE_REF.test(s)) return false
  const name = s.split('@')[0].replace(/:[\w][\w.-]*$/, '')
  return name.length <= NAME_MAX
}

/** A registry to log in to: host[:port][/path], as `docker login` takes it (a scheme is allowed). */
export function isRegistryServer(s: string): boolean {
  if (s.length > 1024) return false
  const bare = s.replace(/^https?:\/\//, '')
  return new RegExp(`^${DOMAIN}(?:/[A-Za-z0-9._~-]+)*/?$`).test(bare)
}

/** docker's rule for named volumes. */
export const isVolumeName = (s: string): boolean => /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s)

/**
 * A volume a job may name: docker's local driver (the one the hook creates volumes with) also
 * refuses a one-character name, and its folder is one path component (255 bytes). Either would
 * fail only at `docker volume create`, after the job's machine was got and the files copied.
 */
export const isJobVolumeName = (s: string): boolean => isVolumeName(s) && s.length >= 2 && s.length <= 255

/** A container path for `-v` / Binds: absolute, and nothing that would split the spec. */
export const isMountTarget = (s: string): boolean => s.startsWith('/') && !/[:\0\r\n]/.test(s)

const portOk = (p: string): boolean => /^\d{1,5}$/.test(p) && Number(p) >= 1 && Number(p) <= 65535
/** How many ports past the first a range spans (0 for one port), or null when it is not one. */
const rangeSpan = (r: string): number | null => {
  const [a, b, ...rest] = r.split('-')
  if (rest.length || !portOk(a)) return null
  if (b === undefined) return 0
  return portOk(b) && Number(b) >= Number(a) ? Number(b) - Number(a) : null
}
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
// Without a zone (`%eth0`): docker's address parser takes none.
const isIpv6 = (s: string): boolean => /^[0-9a-fA-F:.]+$/.test(s) && isIPv6(s)

const isIpLiteral = (s: string): boolean => IPV4.test(s) || isIpv6(s)

/**
 * `docker run -p`: [ip:][hostPort:]containerPort[/proto], ports or ranges within 1–65535. As docker
 * parses it: the protocol in any case, and a host range beside a container range only of the same
 * length (docker refuses `80:80-90` at create, after the job's machine was got).
 */
export function isPortMapping(s: string): boolean {
  if (s.length > 128) return false
  // Past three parts docker takes all but the last two as the address, so an IPv6 one may also go
  // without brackets (`::1:8080:80`).
  const parts = s.split(':')
  if (parts.length > 3 && !s.startsWith('[')) {
    const ip = parts.slice(0, -2).join(':')
    return isIpv6(ip) && isPortMapping(`[${ip}]:${parts.slice(-2).join(':')}`)
  }
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?(?:([0-9-]*):)?([0-9-]+)(?:\/(tcp|udp|sctp))?$/i.exec(s)
  if (!m) return false
  const [, ip, host, container] = m
  if (ip && !isIpLiteral(ip.replace(/^\[|\]$/g, ''))) return false
  // docker splits at the colons: two parts are hostPort:containerPort, so `127.0.0.1:80` has the
  // address as its host port (refused at create); an address needs `ip::80` or `ip:8080:80`.
  if (ip && host === undefined) return false
  const span = rangeSpan(container)
  if (span === null) return false
  if (!host) return true
  const hostSpan = rangeSpan(host)
  // A host range beside one container port is the range docker picks a free port from.
  return hostSpan !== null && (span === 0 || hostSpan === span)
}

/** A DNS name or an IP literal; never something ssh or a shell could read as an option. */
export function isHostName(s: string): boolean {
  if (isIpLiteral(s)) return true
  return s.length <= 253 && /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(s)
}

export const isUserName = (s: string): boolean => /^[a-z_][a-z0-9_.-]*$/.test(s) && s.length <= 32

/** Absolute, already normalised (no `.`/`..`/`//`, no trailing slash) and free of control characters. */
export function isNormalAbsolute(p: string): boolean {
  if (hasControl(p) || !p.startsWith('/')) return false
  return p === '/' || (posix.normalize(p) === p && !p.endsWith('/'))
}

/** A relative path as the sync compares them: no empty, `.` or `..` parts (so no leading or trailing /), no NUL. */
export const isPlainRelPath = (p: string): boolean => !p.includes('\0') && p.split('/').every((c) => c !== '' && c !== '.' && c !== '..')

/** A single path component that is not `.` or `..` and has only portable characters. */
export const isSafeName = (s: string): boolean => /^[A-Za-z0-9._-]+$/.test(s) && s !== '.' && s !== '..'

/** Makes a literal string safe to embed in a RegExp. */
export const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export const HEX16 = /^[0-9a-f]{16}$/
export const CONTAINER_ID = /^[0-9a-f]{12,64}$/
export const EC2_INSTANCE_ID = /^i-[0-9a-f]{8,17}$/

/** Every remote path is built from a work root, inside and outside shell quoting: plain characters only. */
export function isWorkRoot(p: string): boolean {
  return /^\/[A-Za-z0-9._/-]+$/.test(p) && isNormalAbsolute(p)
}

/** `~/path`: under the SSH user's home on each machine, resolved when one is leased (pools of mixed images). */
export function isHomeWorkRoot(p: string): boolean {
  return p.startsWith('~/') && isWorkRoot(p.slice(1))
}

/**
 * Whether OpenSSH reads `path` as written: it expands %-tokens, ${VAR} and a leading ~ in a key or
 * known_hosts path, and in an option's value (`-o UserKnownHostsFile=`, `asOption`) also splits at
 * white space and takes quotes and backslashes as quoting.
 */
export const sshLiteral = (path: string, asOption = true): boolean =>
  !(asOption ? /[\s%$"'\\]/ : /[%$]/).test(path) && !path.startsWith('~')
