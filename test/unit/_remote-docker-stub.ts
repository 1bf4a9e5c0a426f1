// A stand-in for docker/remote-docker.ts in handler unit tests: every image is there already, so
// run_container_step goes straight to its run (jest.mock('…/remote-docker', () => jest.requireActual('./_remote-docker-stub'))).
export class RemoteDocker {
  engine = {}
  imagePresent = async (): Promise<boolean> => true
  ensureImage = async (): Promise<'present'> => 'present'
}
