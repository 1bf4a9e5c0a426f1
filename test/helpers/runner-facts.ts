// The runner facts a provider gets from the hook (ProviderEnv.runner), for unit tests that build a
// provider environment by hand: this very host and no worker process unless a test names others.
import type { RunnerFacts } from '../../src/providers/provider'
import { thisRunnerHost } from '../../src/runner-host'

export function runnerFacts(over: Partial<RunnerFacts> = {}): RunnerFacts {
  return { runnerName: 'r', github: {}, host: thisRunnerHost(), worker: null, ...over }
}
