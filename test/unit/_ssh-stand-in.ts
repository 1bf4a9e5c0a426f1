// A stand-in for the agent's SSH connection (src/remote/ssh.ts) in tests of the agent's socket side:
// it connects at once and runs nothing; dropConnection() ends it as a reset would. Used as
// `jest.mock('../../src/remote/ssh', () => jest.requireActual('./_ssh-stand-in'))`.
let drop: () => void = () => undefined

export const dropConnection = (): void => drop()

export const SshRemote = {
  connect: async (_info: unknown, _ms: number, onClose: (err?: Error) => void) => {
    drop = () => onClose(new Error('connection reset'))
    return { openExec: () => Promise.reject(new Error('no')), openSocket: () => Promise.reject(new Error('no')), close: () => undefined }
  }
}
