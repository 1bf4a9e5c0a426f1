// Host-key pinning from an OpenSSH known_hosts file: plain, [host]:port, comma lists and hashed (|1|)
// entries; @revoked keys are refused. No trust-on-first-use.
import { createHmac } from 'node:crypto'

interface Entry {
  marker: string | null
  patterns: string[]
  keyType: string
  key: Buffer
}

export function parseKnownHosts(text: string): Entry[] {
  const entries: Entry[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const parts = line.split(/\s+/)
    const marker = parts[0].startsWith('@') ? parts.shift()! : null
    if (parts.length < 3) continue
    entries.push({ marker, patterns: parts[0].split(','), keyType: parts[1], key: Buffer.from(parts[2], 'base64') })
  }
  return entries
}

function hostNames(host: string, port: number): string[] {
  return port === 22 ? [host, `[${host}]:22`] : [`[${host}]:${port}`]
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.') +
      '$',
    'i'
  )
  return re.test(name)
}

function patternMatches(pattern: string, names: string[]): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|')
    if (!salt || !hash) return false
    return names.some((n) => createHmac('sha1', Buffer.from(salt, 'base64')).update(n.toLowerCase()).digest('base64') === hash)
  }
  return names.some((n) => globMatch(pattern, n))
}

function entryMatches(e: Entry, names: string[]): boolean {
  let hit = false
  for (const p of e.patterns) {
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), names)) return false
    } else if (patternMatches(p, names)) hit = true
  }
  return hit
}

/** Keys pinned for host:port (and whether any key for it is revoked). */
export function pinnedKeys(text: string, host: string, port: number): { keys: Buffer[]; revoked: Buffer[] } {
  const names = hostNames(host, port)
  const keys: Buffer[] = []
  const revoked: Buffer[] = []
  for (const e of parseKnownHosts(text)) {
    if (e.marker === '@revoked') revoked.push(e.key)
    else if (e.marker === null && entryMatches(e, names)) keys.push(e.key)
  }
  return { keys, revoked }
}

/** Returns null when the presented key is pinned, else why it is refused. */
export function verifyHostKey(text: string, host: string, port: number, presented: Buffer): string | null {
  const { keys, revoked } = pinnedKeys(text, host, port)
  if (revoked.some((k) => k.equals(presented))) return 'the host key is marked @revoked'
  if (keys.length === 0) return `no key for ${hostNames(host, port).join(' or ')} in the known_hosts file`
  if (!keys.some((k) => k.equals(presented))) return 'the host key does not match the pinned key (possible man-in-the-middle)'
  return null
}

/**
 * Host-key algorithms to offer for host:port: only those of the pinned keys, so a server that also
 * has other key types presents the one we can check.
 */
export function hostKeyAlgorithms(text: string, host: string, port: number): string[] {
  const names = hostNames(host, port)
  const types = new Set<string>()
  for (const e of parseKnownHosts(text)) if (e.marker === null && entryMatches(e, names)) types.add(e.keyType)
  const out: string[] = []
  for (const t of types) out.push(...(t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]))
  return out
}
