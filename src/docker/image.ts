// Image-name helpers: service aliases and registry hosts.

/** `ghcr.io/org/redis:7` → `redis`; `redis@sha256:…` → `redis`. */
export function imageBaseName(image: string): string {
  const noDigest = image.split('@')[0]
  const last = noDigest.split('/').pop() ?? noDigest
  const name = last.split(':')[0]
  return name.toLowerCase().replace(/[^a-z0-9_.-]/g, '-') || 'service'
}

/** Network aliases for each service: the base name for the first of an image, `name-N` for all. */
export function serviceAliases(images: readonly string[]): string[][] {
  const seen = new Map<string, number>()
  return images.map((img) => {
    const base = imageBaseName(img)
    const n = (seen.get(base) ?? 0) + 1
    seen.set(base, n)
    return n === 1 ? [base, `${base}-1`] : [`${base}-${n}`]
  })
}
