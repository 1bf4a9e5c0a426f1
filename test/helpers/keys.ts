// Keys for tests. ssh2's generateKeyPairSync strips the leading zero bytes of an ed25519 public key,
// so about 1 key in 256 comes out malformed (see src/providers/keys.ts), which failed a CI run: tests
// take the project's own generator, and for what only ssh2 makes (an encrypted key) one that ssh2
// parses back.
import { utils } from 'ssh2'
import { ed25519KeyPair } from '../../src/providers/keys'

/** A well-formed unencrypted ed25519 key pair in OpenSSH formats. */
export const testKeyPair = (): { private: string; public: string } => ed25519KeyPair('test')

/** A well-formed ed25519 private key encrypted with `passphrase`. */
export function encryptedTestKey(passphrase = 'pw'): string {
  for (let i = 0; i < 20; i++) {
    const k = utils.generateKeyPairSync('ed25519', { passphrase, cipher: 'aes256-ctr', rounds: 4 } as never).private
    if (!(utils.parseKey(k, passphrase) instanceof Error)) return k
  }
  throw new Error('ssh2 made no well-formed encrypted key in 20 tries')
}
