// A stand-in for the agent's SSH connection (src/remote/ssh.ts) in tests of the agent's socket side:
// it connects at once and runs nothing (unless runCommandsWith() names a remote that does);
// dropConnection() ends it as a reset would. Used as
// `jest.mock('../../src/remote/ssh', () => jest.requireActual('./_ssh-stand-in'))`.
import type { Remote } from '../../src/remote/remote'

let drop: () => void = () => undefined
let runner: Remote | null = null

export const dropConnection = (): void => drop()

/** Commands on the stand-in's connection run on `r` (null: they fail, as before). */
export const runCommandsWith = (r: Remote | null): void => void (runner = r)

export const SshRemote = {
  connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
    drop = () => onClose(new Error('connection reset'))
    return {
      openExec: (cmd: string) => (runner ? runner.openExec(cmd) : Promise.reject(new Error('no'))),
      openSocket: () => Promise.reject(new Error('no')),
      close: () => undefined
    }
  }
}
