// The plain OpenSSH client options the bench's baselines use against the test VM (its key, its
// pinned host key, no prompts): the same for every row that times OpenSSH.
import type { TestVm } from '../test/helpers/testenv'

export const sshBase = (vm: TestVm): string[] => [
  '-i',
  vm.identityFile,
  '-p',
  String(vm.port),
  '-o',
  `UserKnownHostsFile=${vm.knownHostsFile}`,
  '-o',
  'StrictHostKeyChecking=yes',
  '-o',
  'BatchMode=yes',
  '-o',
  'GlobalKnownHostsFile=/dev/null'
]
