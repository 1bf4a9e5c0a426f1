// The folders a SafeTree (safe-fs.ts) has found to be real directories, by relative path, with
// their inodes. Forgetting must cost what was known under a path, not what is known in all: a step
// that deleted a file in each of 100,000 folders made each removal scan every remembered folder.
// A folder is remembered only below a remembered parent (SafeTree finds them top down), so a path
// that is not remembered has nothing remembered under it.

export class KnownFolders {
  private readonly ino = new Map<string, number>()
  private readonly children = new Map<string, Set<string>>()
  private readonly byIno = new Map<number, Set<string>>()

  has(rel: string): boolean {
    return this.ino.has(rel)
  }

  get size(): number {
    return this.ino.size
  }

  /**
   * `rel` is a real directory with inode `ino`. Not remembered when its parent is not (nothing
   * would forget it with the parent); remembered again under another inode, what was known under it
   * is forgotten (it is another folder now).
   */
  add(rel: string, ino: number): void {
    const old = this.ino.get(rel)
    if (old === ino) return
    if (old !== undefined) this.drop(rel)
    const slash = rel.lastIndexOf('/')
    const parent = slash > 0 ? rel.slice(0, slash) : null
    if (parent !== null && !this.ino.has(parent)) return
    this.ino.set(rel, ino)
    setOf(this.byIno, ino).add(rel)
    if (parent !== null) setOf(this.children, parent).add(rel)
  }

  /** Forgets `rel` and what is under it; with `aliasIno`, also every folder remembered with that inode, and what is under those. */
  forget(rel: string, aliasIno?: number): void {
    this.drop(rel)
    if (aliasIno !== undefined) for (const k of [...(this.byIno.get(aliasIno) ?? [])]) this.drop(k)
  }

  private drop(top: string): void {
    if (!this.ino.has(top)) return
    const slash = top.lastIndexOf('/')
    if (slash > 0) this.children.get(top.slice(0, slash))?.delete(top)
    // A stack, not recursion: paths may be thousands of folders deep.
    const todo = [top]
    for (let rel = todo.pop(); rel !== undefined; rel = todo.pop()) {
      const kids = this.children.get(rel)
      if (kids) for (const k of kids) todo.push(k) // not a spread: a folder may hold 100,000
      this.children.delete(rel)
      const ino = this.ino.get(rel)!
      this.ino.delete(rel)
      const same = this.byIno.get(ino)!
      same.delete(rel)
      if (!same.size) this.byIno.delete(ino)
    }
  }
}

function setOf<K, V>(m: Map<K, Set<V>>, k: K): Set<V> {
  let s = m.get(k)
  if (!s) m.set(k, (s = new Set()))
  return s
}
