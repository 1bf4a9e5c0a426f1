// prepare_job's answer to the runner: the containers with their networks and published ports,
// whether the job container is Alpine, and the state later commands get back (ids and paths only).
import type { PrepareJobResponse, ServiceContext } from '../protocol'
import type { Lease } from '../providers/factory'
import { initialState, storedState, type HookState } from '../state'
import { portMap, type Inspect } from '../docker/steps'
import type { JobPlan } from './plan'

/** Used when the image sets no PATH: docker's own default. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** `ids` and `infos` are the created containers in start order (services, then the job container). */
export function buildResponse(
  plan: JobPlan,
  lease: Lease,
  localDir: string,
  ids: string[],
  infos: Map<string, Inspect>,
  isAlpine: boolean | undefined
): PrepareJobResponse {
  const services: ServiceContext[] = plan.services.map((s, i) => ({
    id: ids[i],
    image: s.image,
    network: plan.network,
    ports: portMap(infos.get(ids[i])!)
  }))
  const state: HookState = {
    ...initialState({
      jobId: plan.jobId,
      owner: plan.owner,
      lease,
      jobRoot: plan.jobRoot,
      hostWork: plan.layout.hostWork,
      repoRel: plan.repoRel,
      localDir
    }),
    externals: plan.externals,
    network: plan.network,
    services: plan.services.map((s, i) => ({ id: ids[i], image: s.image })),
    volumes: plan.volumes
  }
  const response: PrepareJobResponse = { context: { services } }
  if (plan.job) {
    const id = ids[ids.length - 1]
    const info = infos.get(id)!
    const path = (info.Config.Env ?? []).find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH
    state.container = { id, image: plan.job.image, path }
    response.context!.container = { id, image: plan.job.image, network: plan.network, ports: portMap(info) }
    response.isAlpine = isAlpine
  }
  response.state = storedState(state)
  return response
}
