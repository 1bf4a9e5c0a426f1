// The names a workflow chooses (workflow, job, run id, runner) go into every ledger line: kept to
// their first 256 characters, as an EC2 tag keeps them. A name of 200 KB (the environment allows
// 128 KiB a variable) would otherwise be written whole into every reservation and job line.
import { JobFleet } from '../../src/fleet/job-fleet'
import { NAME_MAX, nameField } from '../../src/fleet/job-record'
import { tagsFor } from '../../src/providers/ec2-plan'

const fleetWith = (github: Record<string, string>): JobFleet =>
  new JobFleet(
    { config: { fleet: {} as never }, runner: { runnerName: 'r'.repeat(300), github }, localRoot: '/nonexistent' },
    '0123456789abcdef'
  )

test('long names are kept to their first 256 characters, whole characters only; short ones as they are (control)', () => {
  const long = `${'é'.repeat(100)}😀${'w'.repeat(200_000)}`
  const f = fleetWith({ repository: 'acme/widgets', workflow: long, job: 'j'.repeat(NAME_MAX + 1), runId: '42' }).facts
  expect(f.workflow).toBe(Array.from(long).slice(0, 256).join(''))
  expect(Array.from(f.workflow)).toHaveLength(256)
  expect(f.job).toBe('j'.repeat(256))
  expect(f.runner).toBe('r'.repeat(256))
  expect([f.repository, f.runId, f.jobId]).toEqual(['acme/widgets', '42', '0123456789abcdef'])
  // No lone half of a surrogate pair at the cut.
  expect(nameField(`${'x'.repeat(255)}😀z`)).toBe(`${'x'.repeat(255)}😀`)
  expect(nameField(undefined)).toBe('')
})

test('the EC2 tags cut the same way', () => {
  const tags = tagsFor(
    { tags: {}, maxLifetimeMinutes: 60 },
    {
      owner: 'o',
      jobId: 'j',
      runner: { runnerName: 'r', github: { workflow: 'w'.repeat(1000) } },
      runnerHost: 'h',
      launchedAt: new Date(0)
    }
  )
  expect(tags.find((t) => t.Key === 'remote-container-hooks:workflow')?.Value).toBe('w'.repeat(256))
})
