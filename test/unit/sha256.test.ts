import { createHash, randomBytes } from 'node:crypto'
import { sha256Hex } from '../../src/sha256'
import { nameOwnerId } from '../../src/labels'

const ref = (t: string): string => createHash('sha256').update(t).digest('hex')

describe('sha256Hex', () => {
  it('matches node:crypto on the FIPS examples and at every padding boundary', () => {
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    for (let n = 0; n <= 200; n++) expect(sha256Hex('x'.repeat(n))).toBe(ref('x'.repeat(n)))
  })

  it('matches node:crypto on UTF-8 text and random inputs', () => {
    for (const t of ['runner-é-名前-🙂', 'a\nb\0c', 'ä'.repeat(70)]) expect(sha256Hex(t)).toBe(ref(t))
    for (let i = 0; i < 200; i++) {
      const t = randomBytes(1 + (i % 150)).toString('latin1')
      expect(sha256Hex(t)).toBe(ref(t))
    }
  })

  it("gives the name-only owner ids earlier versions gave (a running job's state may still carry one)", () => {
    for (const name of ['test-runner-1', 'my runner', 'ünïcode-runner'])
      expect(nameOwnerId(name)).toBe(createHash('sha256').update(name).digest('hex').slice(0, 16))
  })
})
