// Per-job ed25519 key pairs in OpenSSH formats, made with node:crypto. Not ssh2's
// generateKeyPairSync: it strips every leading zero byte of the public key, so about 1 key in 256
// comes out 31 bytes long and is refused by sshd and ssh-keygen; with two keys per job, that failed
// an EC2 job every so often. The halves come out of the key generation already encoded (DER):
// exporting the key objects as JWK afterwards deadlocked node 20 now and then (a collection inside
// the export finalised the generation's job, which takes the key's lock the export holds), leaving
// prepare_job hung for good.
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

/** The fixed DER prefixes of an ed25519 SubjectPublicKeyInfo and PKCS#8 key (RFC 8410), each followed by the 32 raw bytes. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

const rawAfter = (der: Buffer, prefix: Buffer, what: string): Buffer => {
  if (der.length !== prefix.length + 32 || !der.subarray(0, prefix.length).equals(prefix))
    throw new Error(`ed25519 ${what} key of unexpected encoding (${der.length} bytes)`)
  return der.subarray(prefix.length)
}

export function ed25519KeyPair(comment = ''): SshKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519', {
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' }
  })
  const pub = rawAfter(publicKey, SPKI_PREFIX, 'public')
  const seed = rawAfter(privateKey, PKCS8_PREFIX, 'private')
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
