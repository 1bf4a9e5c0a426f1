// The job container starts while the first copy runs. Its bind sources under the job folder are
// made beforehand by the hook, as the SSH user: docker would otherwise make a missing one itself,
// owned by root, and the copy (or a later step's sync) could not write into it.
import { execFileSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, testVm } from '../helpers/conformance'

test("the job container's _work bind sources are the SSH user's, also one the copy does not fill (_tool)", async () => {
  const vm = testVm()
  const runner = new FakeRunner({ name: `early-start-${process.pid}`, config: { sync: { toolCache: false } } })
  try {
    const p = await runner.prepare({
      container: runner.jobContainer(testImages.tiny),
      services: [runner.service(testImages.tiny, { entryPoint: 'sleep', entryPointArgs: ['3600'] })]
    })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    const jobRoot = (runner.state as { jobRoot: string }).jobRoot
    expect(jobRoot.startsWith(`${vm.workRoot}/jobs/`)).toBe(true)
    // positive control: the job container really binds these folders of the job's copy
    const id = p.response.context.container.id as string
    const mounts = JSON.parse(execFileSync('docker', ['inspect', '--format', '{{json .Mounts}}', id], { encoding: 'utf8' })) as {
      Source: string
      Destination: string
    }[]
    expect(mounts.find((m) => m.Destination === '/__w/_tool')?.Source).toBe(`${jobRoot}/w/_tool`)
    expect(mounts.find((m) => m.Destination === '/github/home')?.Source).toBe(`${jobRoot}/w/_temp/_github_home`)
    const uid = Number(execFileSync('id', ['-u', vm.user], { encoding: 'utf8' }).trim())
    expect(uid).not.toBe(0)
    // _tool is not part of the copy (sync.toolCache: false): only the hook can have made it as the SSH user
    for (const d of ['w/_tool', 'w/_temp', 'w/_temp/_github_home', 'w/_actions']) {
      expect({ d, uid: statSync(`${jobRoot}/${d}`).uid }).toEqual({ d, uid })
    }
    // and a step can write into it
    const { args } = runner.scriptStep('echo hi > /__w/_tool/marker && echo wrote\n')
    const s = await runner.call('run_script_step', args)
    expect({ code: s.code, errors: errorLines(s) }).toEqual({ code: 0, errors: [] })
  } finally {
    const c = await runner.cleanup()
    expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
    runner.dispose()
  }
})
