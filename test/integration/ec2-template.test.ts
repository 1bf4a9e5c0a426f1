// Launch templates: what the template states wins; what it leaves out gets the secure defaults
// (IMDSv2 with hop limit 1, encrypted root volume), and shutdown always terminates.
import { CreateLaunchTemplateCommand, DescribeVolumesCommand, type EC2Client } from '@aws-sdk/client-ec2'
import { ec2Client, loadMoto, motoImageId } from '../helpers/ec2-env'
import {
  describeInstance,
  dumpRun,
  ec2RunnerConfig,
  hookCall,
  hookPrepare,
  instanceName,
  startInstanceBooter,
  waitInstanceState
} from '../helpers/fake-instance'
import { FakeRunner } from '../helpers/fake-runner'
import {} from '../helpers/conformance'
import { testImages } from '../helpers/testenv'

jest.setTimeout(180_000)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

let ec2: EC2Client
let ami: string
beforeAll(async () => {
  ec2 = ec2Client()
  ami = await motoImageId(ec2)
})
afterAll(() => ec2?.destroy())

async function jobWithTemplate(templateData: Record<string, unknown>) {
  const templateName = `rch-tpl-${Math.random().toString(36).slice(2, 8)}`
  await ec2.send(
    new CreateLaunchTemplateCommand({
      LaunchTemplateName: templateName,
      LaunchTemplateData: { ImageId: ami, InstanceType: 'm6i.large', ...templateData }
    })
  )
  const name = instanceName('tpl')
  const runner = new FakeRunner({
    config: ec2RunnerConfig({
      endpoint: loadMoto().endpoint,
      imageId: ami,
      name,
      provider: { imageId: undefined, instanceTypes: [], launchTemplate: { name: templateName, version: '$Latest' } }
    })
  })
  const booter = startInstanceBooter(ec2, { owner: runner.owner, name: () => name })
  try {
    const p = await hookPrepare(runner, { container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: p.code, out: p.code === 0 ? '' : dumpRun(p, booter) }).toEqual({ code: 0, out: '' })
    const id = (runner.state as { host: { instanceId: string } }).host.instanceId
    const inst = await describeInstance(ec2, id)
    const vols = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [id] }] }))
    const c = await hookCall(runner, 'cleanup_job', {})
    expect(c.code).toBe(0)
    await waitInstanceState(ec2, id, 'terminated')
    return { inst, vols: vols.Volumes ?? [] }
  } finally {
    await booter.stop()
    runner.dispose()
  }
}

describe('EC2 with a launch template', () => {
  test('a template silent on metadata and disks gets IMDSv2 (hop limit 1) and an encrypted root volume', async () => {
    const { inst, vols } = await jobWithTemplate({})
    expect(inst.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 })
    expect(inst.InstanceType).toBe('m6i.large')
    expect(vols.length).toBeGreaterThan(0)
    expect(vols.every((v) => v.Encrypted)).toBe(true)
  })

  test('a template that states its own metadata options and disks is not overridden', async () => {
    const { inst, vols } = await jobWithTemplate({
      MetadataOptions: { HttpTokens: 'optional', HttpPutResponseHopLimit: 2 },
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 30, Encrypted: false } }]
    })
    // moto does not apply a template's MetadataOptions (see moto-smoke.test.ts): what matters here
    // is that the hook did not send its own, which moto would have applied.
    expect(inst.MetadataOptions?.HttpTokens).not.toBe('required')
    expect(vols.some((v) => v.Size === 30)).toBe(true)
  })
})
