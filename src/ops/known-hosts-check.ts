// Static hosts' pinned keys, checked without a network: every known_hosts file a host names parses,
// and pins a key for that host. The hook never trusts a key on first use, so a missing pin fails
// every job on that host.
import { readFileSync } from 'node:fs'
import type { StaticConfig } from '../config'
import { parseKnownHosts, pinnedKeys } from '../remote/known-hosts'
import type { Problem } from './problem'

/** Every host's known_hosts file, of a valid configuration. */
export function hostsKnownHostsProblems(p: StaticConfig): Problem[] {
  return p.hosts.flatMap((h, i) => knownHostsProblems(`provider.hosts.${i}.knownHostsFile`, h.knownHostsFile, h.host, h.port))
}

/**
 * The same, of a provider section the hook's validation refused for something else (every problem
 * of the file at once, not one round per kind): hosts whose address or file is flagged already, or
 * is not there to judge, are passed over.
 */
export function rawHostsKnownHostsProblems(provider: Readonly<Record<string, unknown>>, found: Problem[]): Problem[] {
  if (!Array.isArray(provider.hosts)) return []
  return (provider.hosts as (Record<string, unknown> | null)[]).flatMap((h, i) => {
    const field = `provider.hosts.${i}`
    const port = h?.port ?? 22
    if (found.some((p) => [field, `${field}.host`, `${field}.port`, `${field}.knownHostsFile`].includes(p.field))) return []
    if (typeof h?.host !== 'string' || typeof h.knownHostsFile !== 'string' || typeof port !== 'number') return []
    try {
      return knownHostsProblems(`${field}.knownHostsFile`, h.knownHostsFile, h.host, port)
    } catch {
      return []
    }
  })
}

/** What is wrong with a known_hosts file for host:port: unparsable lines, or no usable pinned key. */
export function knownHostsProblems(field: string, file: string, host: string, port: number): Problem[] {
  const text = readFileSync(file, 'utf8')
  const out: Problem[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (!line || line.startsWith('#')) return
    const [entry] = parseKnownHosts(line)
    if (!entry || !keyBlobMatches(entry.keyType, entry.key))
      out.push({ field, message: `${file} line ${i + 1} is not a known_hosts entry (hosts, key type, base64 key)` })
  })
  const { keys } = pinnedKeys(text, host, port)
  const name = port === 22 ? host : `[${host}]:${port}`
  if (keys.length === 0)
    out.push({
      field,
      message: `${file} pins no key for ${name}: the hook never trusts a key on first use (add the host's key, checked out of band)`
    })
  return out
}

/** An SSH public key blob starts with its own type name: a line whose blob does not is damaged. */
function keyBlobMatches(type: string, blob: Buffer): boolean {
  if (blob.length < 4) return false
  const n = blob.readUInt32BE(0)
  return n > 0 && 4 + n <= blob.length && blob.subarray(4, 4 + n).toString('latin1') === type
}
