// What a provider gets from the hook (ProviderEnv), for unit tests that build its environment by hand:
// the runner facts (this very host, no worker process, unless a test names others), a scrub.
import type { RunnerFacts } from '../../src/providers/provider'
import { thisRunnerHost } from '../../src/runner-host'

export function runnerFacts(over: Partial<RunnerFacts> = {}): RunnerFacts {
  return { runnerName: 'r', github: {}, host: thisRunnerHost(), worker: null, ...over }
}

/** The scrub of a provider environment whose provider never reuses a machine: a call is a test failure. */
export const unexpectedScrub = (_remote: unknown, machine: string): Promise<void> =>
  Promise.reject(new Error(`unexpected scrub of ${machine}: this provider does not reuse machines`))
