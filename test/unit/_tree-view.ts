// What a sync keeps equal on both sides, as sorted lines: kinds, sizes, file modes, contents and
// link targets (not folder modes or times), under `roots`, leaving out `excludes`.
import { createHash } from 'node:crypto'
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'

export function treeView(base: string, roots: readonly string[], excludes: readonly string[] = []): string[] {
  const out: string[] = []
  const visit = (rel: string): void => {
    if (excludes.some((e) => rel === e || rel.startsWith(`${e}/`))) return
    const st = lstatSync(`${base}/${rel}`)
    if (st.isDirectory()) {
      out.push(`d ${rel}`)
      for (const n of readdirSync(`${base}/${rel}`)) visit(`${rel}/${n}`)
    } else if (st.isSymbolicLink()) out.push(`l ${rel} -> ${readlinkSync(`${base}/${rel}`)}`)
    else {
      const sum = createHash('sha256')
        .update(readFileSync(`${base}/${rel}`))
        .digest('hex')
        .slice(0, 12)
      out.push(`f ${rel} ${st.size} ${(st.mode & 0o777).toString(8)} ${sum}`)
    }
  }
  for (const r of roots) visit(r)
  return out.sort()
}
