// Image-name helpers: service aliases, registry hosts, and names docker could take for an image id.

/** `registry.example.com/org/redis:7` → `redis`; `redis@sha256:…` → `redis`. */
export function imageBaseName(image: string): string {
  const noDigest = image.split('@')[0]
  const last = noDigest.split('/').pop() ?? noDigest
  const name = last.split(':')[0]
  return name.toLowerCase().replace(/[^a-z0-9_.-]/g, '-') || 'service'
}

/** The job container's alias (and its container name's suffix): never a service's. */
export const JOB_ALIAS = 'job'

/** Network aliases for each service: the base name for the first of an image, `name-N` for all; never repeated. */
export function serviceAliases(images: readonly string[]): string[][] {
  const used = new Set<string>([JOB_ALIAS])
  const next = new Map<string, number>()
  return images.map((img) => {
    const base = imageBaseName(img)
    const out: string[] = []
    if (!used.has(base)) out.push(base)
    let n = next.get(base) ?? 1
    while (used.has(`${base}-${n}`) || images.some((i) => imageBaseName(i) === `${base}-${n}`)) n++
    out.push(`${base}-${n}`)
    next.set(base, n + 1)
    out.forEach((a) => used.add(a))
    return out
  })
}

/**
 * The name as docker must look it up. An untagged name made only of hex digits (`cafe`) that names
 * no image docker takes for the prefix of an image id: `image: cafe` would run whatever local image's
 * id starts so (one a job left on a shared host) instead of pulling. With its implied `:latest`
 * spelled out, it is only ever a name. Every other name is sent as given. (docker refuses a name of
 * 64 hex digits, a full image id, either way: that is not a repository name.)
 */
export function nameOnly(image: string): string {
  return /^[0-9a-f]+$/.test(image) ? `${image}:latest` : image
}
