// Two runners of one name on one runner host, as `config.sh --unattended` makes them (it names every
// runner after its host), sharing a static VM: each is its own owner (src/labels.ts), so one's
// prepare_job and cleanup_job without state never take the other's containers, job folder, slot or
// agent. The control: the same runner's next prepare_job does prune its own abandoned job.
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { dockerLines, errorLines, leasesOf, scanCmdlines, staticProvider, testVm } from '../helpers/conformance'

const LABEL_OWNER = 'dev.remote-container-hooks.owner'

test("same-named runners in two folders of one host share a VM: neither's prepare_job or cleanup_job touches the other's job", async () => {
  const vm = testVm()
  // A work root of its own, so the slots and job folders seen are this test's alone.
  const workRoot = join(vm.workRoot, `same-name-${process.pid}`)
  const st = statSync(vm.workRoot)
  mkdirSync(workRoot, { recursive: true })
  chownSync(workRoot, st.uid, st.gid)
  const config = { provider: staticProvider(vm, { slots: 3 }), remote: { workRoot } }
  const name = `same-name-${process.pid}`
  const a = new FakeRunner({ name, config })
  const b = new FakeRunner({ name, config })
  const owned = async (owner: string) => ({
    containers: (await dockerLines(['ps', '-q', '--no-trunc', '--filter', `label=${LABEL_OWNER}=${owner}`])).sort(),
    jobFolders: existsSync(join(workRoot, 'jobs')) ? readdirSync(join(workRoot, 'jobs')).filter((d) => d.startsWith(`${owner}-`)) : [],
    leases: leasesOf({ ...vm, workRoot }, owner)
  })
  const agentsOf = (owner: string, jobId: string): number =>
    scanCmdlines(`${owner}-${jobId}`).filter((p) => p.cmdline.includes('__agent')).length
  try {
    expect(a.owner).not.toBe(b.owner)
    const pa = await a.prepare({ container: a.jobContainer(testImages.tiny), services: [] })
    expect({ code: pa.code, errors: errorLines(pa) }).toEqual({ code: 0, errors: [] })
    const jobA = String(a.state!.jobId)
    const ofA = await owned(a.owner)
    expect({ containers: ofA.containers.length, jobFolders: ofA.jobFolders, leases: ofA.leases.length }).toEqual({
      containers: 1,
      jobFolders: [`${a.owner}-${jobA}`],
      leases: 1
    })
    expect(agentsOf(a.owner, jobA)).toBeGreaterThan(0)

    const pb = await b.prepare({ container: b.jobContainer(testImages.tiny), services: [] })
    expect({ code: pb.code, errors: errorLines(pb) }).toEqual({ code: 0, errors: [] })
    expect(await owned(a.owner)).toEqual(ofA)
    expect((await owned(b.owner)).containers).toHaveLength(1)

    // b's runner restarted and cleans up without state: everything of b's goes, nothing of a's.
    const cb = await b.call('cleanup_job', {}, { state: null })
    expect({ code: cb.code, errors: errorLines(cb) }).toEqual({ code: 0, errors: [] })
    expect(await owned(b.owner)).toEqual({ containers: [], jobFolders: [], leases: [] })
    expect(await owned(a.owner)).toEqual(ofA)
    expect(agentsOf(a.owner, jobA)).toBeGreaterThan(0)
    const step = await a.call('run_script_step', a.scriptStep('echo a-still-runs').args)
    expect({ code: step.code, out: step.stdout.includes('a-still-runs') }).toEqual({ code: 0, out: true })

    // Control: a's next job (its last one abandoned) prunes a's own container, folder and slot.
    const again = await a.prepare({ container: a.jobContainer(testImages.tiny), services: [] })
    expect({ code: again.code, errors: errorLines(again) }).toEqual({ code: 0, errors: [] })
    const now = await owned(a.owner)
    expect(a.state!.jobId).not.toBe(jobA)
    expect(now.containers).toHaveLength(1)
    expect(now.containers).not.toContain(ofA.containers[0])
    expect(now.jobFolders).toEqual([`${a.owner}-${String(a.state!.jobId)}`])
    expect(now.leases).toHaveLength(1)
  } finally {
    for (const r of [a, b]) {
      await r.call('cleanup_job', {}, { state: null })
      r.dispose()
    }
    rmSync(workRoot, { recursive: true, force: true })
  }
})
