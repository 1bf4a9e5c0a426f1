// What the launch template or image decides for a launch, read before it: the hook's launch and
// doctor's dry run of it read the same, so the dry run is the request the hook would send.
import type * as Ec2 from '@aws-sdk/client-ec2'
import type { Ec2Config } from '../config'
import { HookError } from '../errors'
import type { Ec2Sdk } from './ec2-api'
import type { LaunchBasis } from './ec2-plan'

/** Reads what the template or image decides; what a template leaves out gets our secure defaults. */
export async function launchBasisOf(
  cfg: Pick<Ec2Config, 'launchTemplate' | 'imageId' | 'region'>,
  sdk: Ec2Sdk,
  client: Ec2.EC2Client,
  send: <T>(what: string, fn: () => Promise<T>) => Promise<T>
): Promise<LaunchBasis> {
  const basis: LaunchBasis = { rootDevice: null, templateSetsMetadata: false }
  let imageForRoot = cfg.launchTemplate ? null : (cfg.imageId ?? null)
  if (cfg.launchTemplate) {
    const t = cfg.launchTemplate
    const v = await send('DescribeLaunchTemplateVersions', () =>
      client.send(
        new sdk.DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: t.name, LaunchTemplateId: t.id, Versions: [t.version] })
      )
    )
    const data = v.LaunchTemplateVersions?.[0]?.LaunchTemplateData
    if (!data) throw new HookError(`provider.launchTemplate: version ${t.version} of ${t.name ?? t.id} not found`)
    // A persistent Spot request launches the instance again after each terminate (the hook's and
    // reap's): a machine that outlives its job, billed. The hook's own Spot launches are one-time.
    if (data.InstanceMarketOptions?.SpotOptions?.SpotInstanceType === 'persistent')
      throw new HookError(
        `provider.launchTemplate: version ${t.version} of ${t.name ?? t.id} asks for persistent Spot instances, which EC2 launches again after each terminate: use one-time (or leave the market to provider.market)`
      )
    basis.templateSetsMetadata = !!data.MetadataOptions
    basis.templateInstanceType = data.InstanceType
    if (!data.BlockDeviceMappings?.length) imageForRoot = data.ImageId ?? cfg.imageId ?? null
  }
  if (imageForRoot) {
    const img = await send('DescribeImages', () => client.send(new sdk.DescribeImagesCommand({ ImageIds: [imageForRoot] })))
    if (!img.Images?.length) throw new HookError(`provider.imageId: image ${imageForRoot} not found in ${cfg.region}`)
    basis.rootDevice = img.Images[0].RootDeviceName ?? null
    // The image's own root size, stated explicitly: an EBS mapping needs a size or a snapshot
    // (EC2-compatible APIs such as moto refuse one with neither).
    basis.rootSizeGiB = img.Images[0].BlockDeviceMappings?.find((b) => b.DeviceName === basis.rootDevice)?.Ebs?.VolumeSize
  }
  return basis
}
