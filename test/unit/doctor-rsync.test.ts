import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseRsyncVersion, rsyncFixCheck, systemProbe, type RsyncProbe } from '../../src/ops/doctor-rsync'
import { opsFor } from '../../src/ops/provider-ops'
import { cleanupTempDirs, tempDir } from './_helpers'

/** Whether every job of the kind gets a new machine, as doctor asks it. */
const perJob = (kind: string): boolean => opsFor({ kind } as never).machinePerJob === true

afterAll(cleanupTempDirs)

const probe = (version: string | null, backported = false): RsyncProbe & { asked: number } => {
  const p = {
    asked: 0,
    version: async () => version,
    backported: async () => {
      p.asked++
      return backported
    }
  }
  return p
}

describe("doctor's check of the runner host's rsync for the 3.4.0 client fixes", () => {
  it('reads the version from the first line of rsync --version', () => {
    expect(parseRsyncVersion('rsync  version 3.2.7  protocol version 31\nCopyright')).toEqual([3, 2, 7])
    expect(parseRsyncVersion('rsync  version v3.4.1  protocol version 32')).toEqual([3, 4, 1])
    expect(parseRsyncVersion('openrsync: protocol version 29')).toBeNull()
    expect(parseRsyncVersion('')).toBeNull()
  })

  it.each([
    ['rsync  version 3.4.0  protocol version 32', '3.4.0'],
    ['rsync  version 3.5.0  protocol version 32', '3.5.0'],
    ['rsync  version 4.0.0  protocol version 33', '4.0.0']
  ])('%s passes without looking for a backport', async (text, shown) => {
    const p = probe(text)
    await expect(rsyncFixCheck('/usr/bin/rsync', perJob('static'), p)).resolves.toMatchObject({
      status: 'pass',
      detail: expect.stringContaining(shown)
    })
    expect(p.asked).toBe(0)
  })

  it.each(['3.3.9', '3.2.7', '2.6.9'])('%s fails where machines are used again, unless a changelog names the fix', async (v) => {
    const text = `rsync  version ${v}  protocol version 31`
    for (const kind of ['static', 'ec2-pool']) {
      const failed = await rsyncFixCheck('/usr/bin/rsync', perJob(kind), probe(text))
      expect(failed).toMatchObject({ status: 'fail', fix: expect.stringContaining('3.4.0 or later') })
      expect(failed.detail).toContain(`rsync ${v} predates 3.4.0`)
      const p = probe(text, true)
      await expect(rsyncFixCheck('/usr/bin/rsync', perJob(kind), p)).resolves.toMatchObject({
        status: 'pass',
        detail: expect.stringContaining('backported')
      })
      expect(p.asked).toBe(1)
    }
  })

  it('an old rsync is only a skip when every job gets a new machine (provider.kind ec2)', async () => {
    const r = await rsyncFixCheck('/usr/bin/rsync', perJob('ec2'), probe('rsync  version 3.2.3  protocol version 31'))
    expect(r.status).toBe('skip')
    expect(r.detail).toContain('every job gets a new machine')
  })

  it('a program that names no version fails', async () => {
    await expect(rsyncFixCheck('/opt/x/rsync', perJob('static'), probe(null))).resolves.toMatchObject({
      status: 'fail',
      detail: '/opt/x/rsync --version did not name a version'
    })
    await expect(rsyncFixCheck('/opt/x/rsync', perJob('static'), probe('openrsync: protocol version 29'))).resolves.toMatchObject({
      status: 'fail'
    })
  })

  it('a changelog speaks only for the package binary: another rsync beside it is not counted as backported (control: /usr/bin/rsync)', async () => {
    // This machine's Debian rsync package: its changelog names the fix (checked, so the control means something).
    const here = await systemProbe.backported('/usr/bin/rsync')
    const other = tempDir()
    const copy = join(other, 'rsync')
    copyFileSync('/usr/bin/rsync', copy)
    expect(await systemProbe.backported(copy)).toBe(false)
    expect(await systemProbe.backported('/nonexistent/rsync')).toBe(false)
    if (here) {
      // an old build at another path, the package's changelog naming the fix: no pass
      const old = { version: async () => 'rsync  version 3.2.3  protocol version 31', backported: (p: string) => systemProbe.backported(p) }
      await expect(rsyncFixCheck(copy, perJob('static'), old)).resolves.toMatchObject({ status: 'fail' })
      await expect(rsyncFixCheck('/usr/bin/rsync', perJob('static'), old)).resolves.toMatchObject({ status: 'pass' })
    }
  })

  it("the real probe reads this machine's rsync and gets the same verdict as its version and changelog", async () => {
    const text = await systemProbe.version('/usr/bin/rsync')
    expect(parseRsyncVersion(text ?? '')).not.toBeNull()
    const r = await rsyncFixCheck('/usr/bin/rsync', perJob('static'))
    expect(r.status).toBe('pass')
    // not a program at all
    await expect(systemProbe.version('/nonexistent/rsync')).resolves.toBeNull()
  })
})
