// Per-job ed25519 key pairs in OpenSSH formats, made with node:crypto. Not ssh2's
// generateKeyPairSync: it strips every leading zero byte of the public key, so about 1 key in 256
// comes out 31 bytes long and is refused by sshd and ssh-keygen; with two keys per job, that failed
// an EC2 job every so often.
import { generateKeyPairSync, randomBytes } from 'node:crypto'

export interface SshKeyPair {
  /** "-----BEGIN OPENSSH PRIVATE KEY-----…" (unencrypted) */
  private: string
  /** "ssh-ed25519 AAAA… comment" */
  public: string
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
/** SSH wire "string": a u32 length, then the bytes. */
const str = (b: Buffer | string): Buffer => {
  const buf = typeof b === 'string' ? Buffer.from(b) : b
  return Buffer.concat([u32(buf.length), buf])
}

export function ed25519KeyPair(comment = ''): SshKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url')
  if (pub.length !== 32 || seed.length !== 32) throw new Error(`ed25519 key of unexpected size (${pub.length}/${seed.length})`)
  const blob = Buffer.concat([str('ssh-ed25519'), str(pub)])
  const check = randomBytes(4)
  let section = Buffer.concat([check, check, str('ssh-ed25519'), str(pub), str(Buffer.concat([seed, pub])), str(comment)])
  // Padding 1, 2, 3, … up to the cipher block size (8 for "none").
  const pad = (8 - (section.length % 8)) % 8
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))])
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), str('none'), str('none'), str(''), u32(1), str(blob), str(section)])
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n')
  return {
    private: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    public: `ssh-ed25519 ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`
  }
}
