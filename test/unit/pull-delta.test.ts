// pull() with sync.deltaListing: the VM lists only what changed since the last listing. A "VM" that
// is a local folder, run by the real /bin/sh, find and tar; random steps change it between pulls,
// and after every pull the runner's copy must be what the VM has.
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync
} from 'node:fs'
import { spawnSync } from 'node:child_process'
import { loadBase, manifestLockOf, saveBase, UNSURE } from '../../src/sync/manifest'
import { LONG_COPY_MS, pull, recordBase, type SyncTarget } from '../../src/sync/sync'
import { MAX_CHANGED_DIRS } from '../../src/sync/tree'
import { cleanupTempDirs, plantAtNextPids, sh, tempDir } from './_helpers'
import { LocalRemote } from './local-remote'
import { rng } from '../soak/rng'
import { member, tarOf } from './_tar'
import { treeView } from './_tree-view'
import { settlesWithin } from '../helpers/wait'

afterAll(cleanupTempDirs)

const ROOTS = ['_temp', 'ws']
const EXCLUDES = ['_temp/_runner_hook_responses', 'ws/cache']

interface World {
  host: string
  vm: string
  top: string
  target(over?: Partial<SyncTarget> & { stubs?: Record<string, string> }): SyncTarget
}

function world(): World {
  const top = tempDir()
  const host = `${top}/host`
  const vm = `${top}/job/w`
  for (const d of [host, `${vm}/_temp/_runner_file_commands`, `${vm}/ws`, `${top}/local`]) mkdirSync(d, { recursive: true })
  return {
    host,
    vm,
    top,
    target: ({ stubs, ...over } = {}) => ({
      remote: new LocalRemote(`${top}/remote-${Math.random().toString(36).slice(2)}`, {}, stubs),
      hostWork: host,
      remoteWork: vm,
      manifestFile: `${top}/local/base.json`,
      excludes: EXCLUDES,
      deltaListing: true,
      ...over
    })
  }
}

/** What sync keeps equal on both sides (test/unit/_tree-view.ts). */
const describeTree = (base: string): string[] => treeView(base, ROOTS, EXCLUDES)

/** The clock past a listing's reach-back (2 s) and its whole second: what exists now is old to the next listing. */
function ageTree(): void {
  const until = Date.now() + 3100
  while (Date.now() < until) sh('sleep 0.1')
}

/** One change a step could make to the VM's copy, picked at random among what exists. */
function randomChange(vm: string, rnd: () => number, n: number): string {
  const all = (kind: 'f' | 'd' | 'l'): string[] =>
    describeTree(vm)
      .filter((l) => l.startsWith(`${kind} ws`) || (kind !== 'd' && l.startsWith(`${kind} _temp/x`)))
      .map((l) => l.split(' ')[1])
  const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[Math.floor(rnd() * xs.length)] : undefined)
  const files = all('f')
  const dirs = all('d')
  const links = all('l')
  const dir = pick(dirs) ?? 'ws'
  const at = (rel: string): string => `${vm}/${rel}`
  const ops: Array<() => string | null> = [
    () => (writeFileSync(at(`${dir}/n${n}`), `new ${n}`), `add ${dir}/n${n}`),
    () => (writeFileSync(at('_temp/x' + n), `t${n}`), `add _temp/x${n}`),
    () => {
      const f = pick(files)
      return f ? (writeFileSync(at(f), `${readFileSync(at(f), 'utf8')}+${n}`), `append ${f}`) : null
    },
    () => {
      // Same size, other bytes, and an mtime set far back: only ctime tells.
      const f = pick(files)
      if (!f) return null
      const old = readFileSync(at(f))
      writeFileSync(at(f), Buffer.from(old.map((b) => b ^ 1)))
      utimesSync(at(f), 1_000_000_000 + n, 1_000_000_000 + n)
      return `rewrite+backdate ${f}`
    },
    () => {
      const f = pick(files)
      return f ? (chmodSync(at(f), rnd() < 0.5 ? 0o600 : 0o755), `chmod ${f}`) : null
    },
    () => {
      const f = pick([...files, ...links])
      return f ? (rmSync(at(f)), `rm ${f}`) : null
    },
    () => {
      const f = pick(files)
      return f ? (renameSync(at(f), at(`${dir}/r${n}`)), `mv ${f} ${dir}/r${n}`) : null
    },
    () => (mkdirSync(at(`${dir}/m${n}/s`), { recursive: true }), writeFileSync(at(`${dir}/m${n}/s/f`), `${n}`), `mkdir ${dir}/m${n}/s`),
    () => {
      const d = pick(dirs.filter((x) => x !== 'ws'))
      return d ? (rmSync(at(d), { recursive: true }), `rm -r ${d}`) : null
    },
    () => {
      // A renamed folder with folders in it: their ctime does not move (the pull lists all then).
      const d = pick(dirs.filter((x) => x !== 'ws'))
      return d ? (renameSync(at(d), at(`ws/R${n}`)), `mv ${d} ws/R${n}`) : null
    },
    () => {
      // A tree moved over another (rm -rf dist && mv dist.new dist): the folders in it keep their ctimes.
      const [a, b] = [pick(dirs.filter((x) => x !== 'ws')), pick(dirs.filter((x) => x !== 'ws'))]
      if (!a || !b || a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`)) return null
      rmSync(at(b), { recursive: true })
      renameSync(at(a), at(b))
      return `mv ${a} over ${b}`
    },
    () => {
      const f = pick(files)
      return f ? (rmSync(at(f)), mkdirSync(at(f)), writeFileSync(at(`${f}/in`), 'in'), `file->dir ${f}`) : null
    },
    () => {
      const d = pick(dirs.filter((x) => x !== 'ws'))
      return d ? (rmSync(at(d), { recursive: true }), writeFileSync(at(d), 'was a dir'), `dir->file ${d}`) : null
    },
    () => {
      const f = pick(files)
      return f ? (symlinkSync(f.slice(f.lastIndexOf('/') + 1), at(`${f}.ln${n}`)), `ln -s ${f}.ln${n}`) : null
    },
    () => {
      const l = pick(links)
      return l ? (rmSync(at(l)), symlinkSync(`t${n}`, at(l)), `retarget ${l}`) : null
    },
    () => {
      const f = pick(files)
      return f ? (linkSync(at(f), at(`${dir}/h${n}`)), `ln ${f} ${dir}/h${n}`) : null
    },
    () => (writeFileSync(at(`ws/cache/c${n}`), 'excluded'), `excluded ws/cache/c${n}`)
  ]
  for (;;) {
    const done = ops[Math.floor(rnd() * ops.length)]()
    if (done) return done
  }
}

function seedTree(vm: string): void {
  for (let d = 0; d < 4; d++) {
    mkdirSync(`${vm}/ws/d${d}/sub`, { recursive: true })
    // Sizes differ by folder: a tree moved over another must differ by more than its ctimes.
    for (let f = 0; f < 6; f++) writeFileSync(`${vm}/ws/d${d}/f${f}`, `d${d} f${f}${'.'.repeat(d)}`)
    writeFileSync(`${vm}/ws/d${d}/sub/s`, `s${d}${'.'.repeat(d)}`)
  }
  mkdirSync(`${vm}/ws/cache`)
  writeFileSync(`${vm}/_temp/_runner_file_commands/set_env_0`, '')
  symlinkSync('f0', `${vm}/ws/d0/link`)
  writeFileSync(`${vm}/rootfile`, 'a root that is a file')
}

/** Seeded worlds, aged once for the whole file (each test takes its own). */
const aged: World[] = []
beforeAll(() => {
  for (let i = 0; i < 19; i++) {
    const w = world()
    seedTree(w.vm)
    aged.push(w)
  }
  ageTree()
})
const agedWorld = (): World => aged.pop()!

describe('pull: the delta listing against the VM it lists', () => {
  it('after each of 60 rounds of random changes the runner has what the VM has, and most pulls listed only the changes', async () => {
    const w = agedWorld()
    expect((await pull(w.target(), ROOTS)).listed).toBe('all') // no listing before: everything
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
    const seed = Number(process.env.RCH_PULL_SEED ?? 0x5eed8)
    const rnd = rng(seed).next
    const listed: string[] = []
    for (let round = 0; round < 60; round++) {
      const did: string[] = []
      for (let k = 0, n = 1 + Math.floor(rnd() * 3); k < n; k++) did.push(randomChange(w.vm, rnd, round * 10 + k))
      const s = await pull(w.target(), ROOTS)
      listed.push(s.listed!)
      const host = describeTree(w.host)
      const vm = describeTree(w.vm)
      if (JSON.stringify(host) !== JSON.stringify(vm)) throw new Error(`seed ${seed}, round ${round} after ${did.join('; ')}`)
      expect(host).toEqual(vm)
    }
    // Pulls fall back to a full listing only after a folder was renamed.
    expect(listed.filter((l) => l === 'changes').length).toBeGreaterThan(30)
  }, 60_000)

  it('lists the old tree once: later listings carry only what changed (the find output is counted)', async () => {
    const w = agedWorld()
    // A find that keeps a copy of what it printed (exit status kept).
    const log = `${w.top}/find.log`
    const real = sh('command -v find').stdout.toString().trim()
    const stubs = { find: `${real} "$@" > "${log}.one"; rc=$?; cat "${log}.one" >> "${log}"; cat "${log}.one"; exit $rc` }
    const records = (): number => {
      const n = readFileSync(log).toString('latin1').split('\0').length - 1
      rmSync(log)
      return n
    }
    expect((await pull(w.target({ stubs }), ROOTS)).listed).toBe('all')
    const full = records()
    writeFileSync(`${w.vm}/ws/d1/f2`, 'changed in place, in an old folder')
    expect((await pull(w.target({ stubs }), ROOTS)).listed).toBe('changes')
    const delta = records()
    expect(readFileSync(`${w.host}/ws/d1/f2`, 'utf8')).toBe('changed in place, in an old folder')
    // 41 entries listed in full; then the 11 folders and the one changed file (6 fields each, and the stamp).
    expect(full).toBe(1 + 6 * 41)
    expect(delta).toBe(1 + 6 * 12)
  }, 30_000)
})

describe('pull: when the delta listing lists everything instead', () => {
  async function listedAfter(w: World, change: () => void | Promise<void>, over: Partial<SyncTarget> = {}): Promise<string> {
    expect((await pull(w.target(over), ROOTS)).listed).toBe('all')
    await change()
    const s = await pull(w.target(over), ROOTS)
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
    return s.why ? `${s.listed}: ${s.why}` : s.listed!
  }

  it('control: a change in place is listed as a change', async () => {
    const w = agedWorld()
    expect(await listedAfter(w, () => writeFileSync(`${w.vm}/ws/d0/f0`, 'x'))).toBe('changes')
  })

  it('sync.deltaListing false', async () => {
    const w = agedWorld()
    expect(await listedAfter(w, () => writeFileSync(`${w.vm}/ws/d0/f0`, 'x'), { deltaListing: false })).toBe('all')
  })

  /** Changes what the last listing recorded about its time (since.json, next to the base). */
  const editTimes = (w: World, edit: (t: { since: number; stamp: number; up: number | null }) => void): void => {
    const file = `${w.top}/local/since.json`
    const f = JSON.parse(readFileSync(file, 'utf8')) as { roots: Record<string, { since: number; stamp: number; up: number | null }> }
    for (const t of Object.values(f.roots)) edit(t)
    writeFileSync(file, JSON.stringify(f))
  }

  it("the VM's clock went back since the last listing (what changed meanwhile may carry older times)", async () => {
    const w = agedWorld()
    const listed = await listedAfter(w, () => {
      // As if the last listing's clock had been an hour ahead of the one now.
      editTimes(w, (t) => {
        t.stamp += 3600
        t.since += 3600
      })
      writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    })
    expect(listed).toBe("all: the VM's clock went back")
  })

  it("the VM's uptime was not known at the last listing", async () => {
    const w = agedWorld()
    expect(await listedAfter(w, () => editTimes(w, (t) => (t.up = null)))).toBe("all: the VM's uptime is unknown")
  })

  it('a tree was moved over a folder the last listing saw (rm -rf dist && mv dist.new dist)', async () => {
    const w = agedWorld()
    const listed = await listedAfter(w, () => {
      rmSync(`${w.vm}/ws/d1`, { recursive: true })
      renameSync(`${w.vm}/ws/d2`, `${w.vm}/ws/d1`)
    })
    expect(listed).toBe('all: ws/d1/sub is not the folder the last listing saw there')
  })

  it(`more than ${MAX_CHANGED_DIRS} folders changed`, async () => {
    const w = agedWorld()
    const listed = await listedAfter(w, () => {
      for (let i = 0; i <= MAX_CHANGED_DIRS; i++) mkdirSync(`${w.vm}/ws/d3/many${i}`)
    })
    expect(listed).toBe(`all: more than ${MAX_CHANGED_DIRS} folders changed`)
  })

  it('the base holds a path an early push left unsure', async () => {
    const w = agedWorld()
    const listed = await listedAfter(w, async () => {
      await saveBase(w.target().manifestFile, { set: new Map([['_temp/step.sh', UNSURE]]), remove: new Set() })
      writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    })
    expect(listed).toBe('all')
  })

  it('a folder whose name has a newline in it changed', async () => {
    const w = agedWorld()
    expect(await listedAfter(w, () => mkdirSync(`${w.vm}/ws/d0/a\nb`))).toBe('all: a changed folder has a newline in its name')
  })

  it('a folder was renamed with folders in it', async () => {
    const w = agedWorld()
    expect(await listedAfter(w, () => renameSync(`${w.vm}/ws/d0`, `${w.vm}/ws/moved`))).toBe(
      'all: ws/moved/sub is not the folder the last listing saw there'
    )
  })

  it('a root that is a file, left alone and then removed, is removed on the runner', async () => {
    const w = agedWorld()
    const roots = [...ROOTS, 'rootfile']
    expect((await pull(w.target(), roots)).listed).toBe('all')
    expect(readFileSync(`${w.host}/rootfile`, 'utf8')).toBe('a root that is a file')
    writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    expect((await pull(w.target(), roots)).listed).toBe('changes')
    expect(readFileSync(`${w.host}/rootfile`, 'utf8')).toBe('a root that is a file') // control: unchanged, kept
    rmSync(`${w.vm}/rootfile`)
    const s = await pull(w.target(), roots)
    expect(s.listed).toBe('changes')
    expect(s.deleted).toBe(1)
    expect(() => lstatSync(`${w.host}/rootfile`)).toThrow()
  })

  it('a changed folder removed between the walk and the listing of its entries: its entries go, and it goes with the next pull', async () => {
    const w = agedWorld()
    await pull(w.target(), ROOTS)
    const real = sh('command -v find').stdout.toString().trim()
    // ws/d2 goes right after the walk, before the listing of the changed folders' entries.
    const stubs = { find: `${real} "$@"; rc=$?\ncase "$1" in ../.rch-list-stamp.*) rm -rf ${w.vm}/ws/d2 ;; esac\nexit $rc` }
    writeFileSync(`${w.vm}/ws/d2/new`, 'n')
    expect((await pull(w.target({ stubs }), ROOTS)).listed).toBe('changes')
    expect(readdirSync(`${w.host}/ws/d2`)).toEqual(['sub'])
    await pull(w.target(), ROOTS)
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
  })

  it('a pull refused half-way does not record the folders it wrote as known: the next pull lists everything again', async () => {
    const w = agedWorld()
    await pull(w.target(), ROOTS)
    renameSync(`${w.vm}/ws/d2`, `${w.vm}/ws/out`) // an old tree at a new path
    // The VM's tar sends the two folders asked for, then a member nobody asked for.
    writeFileSync(
      `${w.top}/evil.tar`,
      tarOf(member({ name: 'ws/out', type: '5' }), member({ name: 'ws/out/sub', type: '5' }), member({ name: 'ws/zzz' }, 'x'))
    )
    const realTar = sh('command -v tar').stdout.toString().trim()
    const stubs = { tar: `case "$1" in -c) cat ${w.top}/evil.tar; exit 0;; esac\nexec ${realTar} "$@"` }
    await expect(pull(w.target({ stubs }), ROOTS)).rejects.toThrow(/was not asked for/)
    expect(readdirSync(`${w.host}/ws/out`)).toEqual(['sub']) // the folders were written
    const s = await pull(w.target(), ROOTS)
    expect(s.why).toBe('ws/out/sub is not the folder the last listing saw there')
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
  })

  it("FIFOs a job planted at every stamp and changed-folders name it could guess (the listing shell's pid) do not hang the pull", async () => {
    const w = agedWorld()
    await pull(w.target(), ROOTS)
    // For the next pids, both files a listing makes beside the job folder w, in its parent.
    plantAtNextPids((p) => [`${w.top}/job/.rch-list-stamp.${p}`, `${w.top}/job/.rch-list-changed.${p}`])
    // Positive controls: a stamp opened by the shell's pid, and find's -fprintf to the changed-folders
    // file by the shell's pid, as before, each block on a FIFO there (planted, or made here when the
    // shell's pid fell outside the planted ones).
    const blocked = spawnSync('sh', ['-c', 'mkfifo ../.rch-list-stamp.$$ 2>/dev/null; true > ../.rch-list-stamp.$$'], {
      cwd: w.vm,
      timeout: 2_000
    })
    expect(blocked.signal).toBe('SIGTERM')
    const blockedFind = spawnSync(
      'sh',
      // exec: the timeout's signal reaches find itself, which would otherwise stay blocked for ever.
      ['-c', "mkfifo ../.rch-list-changed.$$ 2>/dev/null; exec find . -maxdepth 0 -fprintf ../.rch-list-changed.$$ '%p'"],
      { cwd: w.vm, timeout: 2_000 }
    )
    expect(blockedFind.signal).toBe('SIGTERM')
    writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    const s = await pull(w.target(), ROOTS)
    expect(`${s.listed}: ${s.why ?? ''}`).toBe('changes: ')
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
  }, 20_000)

  it('a delta listing that fails is made again in full', async () => {
    const w = agedWorld()
    await pull(w.target(), ROOTS)
    writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    const real = sh('command -v find').stdout.toString().trim()
    const stubs = { find: `case " $* " in *" -newerct "*) echo 'find: no room' >&2; exit 1;; esac\nexec ${real} "$@"` }
    const s = await pull(w.target({ stubs }), ROOTS)
    expect(`${s.listed}: ${s.why}`).toMatch(/^all: the listing of the changes failed: .*no room/)
    expect(describeTree(w.host)).toEqual(describeTree(w.vm))
  })

  it('an exclude with characters find would take for a pattern is pruned as the path it names', async () => {
    const w = agedWorld()
    const excludes = [...EXCLUDES, 'ws/c[1]']
    mkdirSync(`${w.vm}/ws/c[1]/x`, { recursive: true })
    writeFileSync(`${w.vm}/ws/c[1]/x/f`, 'excluded')
    mkdirSync(`${w.vm}/ws/c1`)
    writeFileSync(`${w.vm}/ws/c1/g`, 'not excluded') // what the unescaped pattern would have pruned
    await pull(w.target({ excludes }), ROOTS)
    writeFileSync(`${w.vm}/ws/d0/f0`, 'x')
    const s = await pull(w.target({ excludes }), ROOTS)
    expect(s.listed).toBe('changes')
    expect(s.why).toBeUndefined()
    expect(() => lstatSync(`${w.host}/ws/c[1]`)).toThrow()
    expect(readFileSync(`${w.host}/ws/c1/g`, 'utf8')).toBe('not excluded')
  })

  it('the excludes are not those of the last listing', async () => {
    const w = agedWorld()
    await pull(w.target(), ROOTS)
    writeFileSync(`${w.vm}/ws/cache/c`, 'was excluded')
    const s = await pull(w.target({ excludes: ['_temp/_runner_hook_responses'] }), ROOTS)
    expect(s.listed).toBe('all')
    expect(readFileSync(`${w.host}/ws/cache/c`, 'utf8')).toBe('was excluded')
  })
})

describe('a base grown by delta listings', () => {
  it('is kept within what one full listing may carry: the pull that would pass it is refused, naming the key, and copies nothing', async () => {
    const w = agedWorld()
    const big = Number.MAX_SAFE_INTEGER
    const limits = {
      stepBytes: big,
      stepFiles: big,
      jobBytes: big,
      jobFiles: big,
      listingEntries: 1e6,
      listingBytes: 4096,
      fileCommandBytes: big
    }
    const target = (): SyncTarget => ({ ...w.target(), limits })
    expect((await pull(target(), ROOTS)).listed).toBe('all')
    // Room for three steps' paths (1,065 each) over what the base holds now; each delta listing
    // (the folders walked, the new folder's entries with their fields) stays well within it.
    let held = 0
    for (const p of loadBase(target().manifestFile).keys()) held += p.length
    limits.listingBytes = held + 4000
    // What a push records outside the pulled folders (_actions) is no part of their listing: not counted.
    await saveBase(target().manifestFile, {
      set: new Map(Array.from({ length: 50 }, (_, i) => [`_actions/${`a${i}-`.padEnd(100, 'x')}`, { t: 'f', l: 'l', r: 'r' }] as const)),
      remove: new Set()
    })
    // Each step adds a folder of ten files of 100-character names: each delta listing is small
    // (the new folder's entries, the names in ws), the base grows.
    let refused: unknown = null
    let step = 0
    while (!refused && step < 10) {
      step++
      mkdirSync(`${w.vm}/ws/s${step}`)
      for (let i = 0; i < 10; i++) writeFileSync(`${w.vm}/ws/s${step}/${`f${i}-`.padEnd(100, 'x')}`, 'x')
      // Past the listing's reach-back before it is listed: the next listing lists only the next folder.
      ageTree()
      refused = await pull(target(), ROOTS).then(
        (s) => (expect(s.listed).toBe('changes'), null),
        (e: unknown) => e
      )
    }
    expect(step).toBe(4)
    expect((refused as Error).message).toBe(
      `sync.limits.listingBytes: the synced folders' paths would add up to ${held + 4 * (5 + 10 * 106)} bytes, over the ${held + 4000} one listing of them may carry; nothing was copied back`
    )
    expect(existsSync(`${w.host}/ws/s${step}`)).toBe(false)
    expect(readdirSync(`${w.host}/ws/s${step - 1}`)).toHaveLength(10)
    // Control: a full listing of the same tree is refused by the same key.
    await expect(pull({ ...target(), deltaListing: false }, ROOTS)).rejects.toThrow(/^sync\.limits\.listingBytes: /)
  })
})

describe('the first pull after a copy (recordBase)', () => {
  async function firstPull(copyMs: number): Promise<string | undefined> {
    const w = world()
    mkdirSync(`${w.host}/_temp/_runner_file_commands`, { recursive: true })
    for (const side of [w.host, w.vm])
      for (let i = 0; i < 5; i++) {
        mkdirSync(`${side}/ws/d${i}`, { recursive: true })
        writeFileSync(`${side}/ws/d${i}/f`, `${i}`)
      }
    await recordBase(w.target(), ROOTS, undefined, copyMs)
    writeFileSync(`${w.vm}/ws/d0/f`, 'changed by a step')
    const s = await pull(w.target(), ROOTS)
    expect(readFileSync(`${w.host}/ws/d0/f`, 'utf8')).toBe('changed by a step')
    return s.why ? `${s.listed}: ${s.why}` : s.listed
  }

  it('after a copy of a few seconds it lists everything, once: what the copy wrote is within the listing margin', async () => {
    expect(await firstPull(LONG_COPY_MS - 1)).toBe('all')
  })

  it('control: after a long copy it lists only the changes', async () => {
    expect(await firstPull(LONG_COPY_MS)).toBe('changes')
  })
})

describe('a pull cancelled while it waits for the job folder lock', () => {
  test('changes nothing on the host (control: the same pull, not cancelled, deletes and fetches)', async () => {
    const w = world()
    mkdirSync(`${w.vm}/ws`, { recursive: true })
    writeFileSync(`${w.vm}/ws/a`, 'a')
    await pull(w.target(), ROOTS)
    expect(readFileSync(`${w.host}/ws/a`, 'utf8')).toBe('a')
    rmSync(`${w.vm}/ws/a`)
    writeFileSync(`${w.vm}/ws/c`, 'c')
    // The pull's budget is counted under the base's lock: held here, as by another pull.
    const lock = manifestLockOf(`${w.top}/local/base.json`)
    writeFileSync(lock, `${process.pid} held-by-test\n`, { mode: 0o600 })
    const ac = new AbortController()
    const pulling = pull(w.target({ signal: ac.signal }), ROOTS)
    pulling.catch(() => undefined)
    expect(await settlesWithin(pulling, 1_500)).toBe(false) // listed, and waiting for the lock
    ac.abort('SIGINT')
    rmSync(lock)
    await expect(pulling).rejects.toThrow(/cancelled by SIGINT/)
    expect(readFileSync(`${w.host}/ws/a`, 'utf8')).toBe('a')
    expect(existsSync(`${w.host}/ws/c`)).toBe(false)
    await pull(w.target(), ROOTS)
    expect([existsSync(`${w.host}/ws/a`), readFileSync(`${w.host}/ws/c`, 'utf8')]).toEqual([false, 'c'])
  })
})
