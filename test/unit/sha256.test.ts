// The plain-JavaScript SHA-256 of the step fast path gives node:crypto's digest, across the block
// boundaries of the padding (55/56/63/64 bytes) and for multi-byte UTF-8.
import { createHash, randomBytes } from 'node:crypto'
import { sha256Hex } from '../../src/sha256'

const node = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')

test('known answers (FIPS 180-4 examples)', () => {
  expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
  expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  expect(sha256Hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1')
})

test.each([0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000])('%d bytes: the same digest as node:crypto', (n) => {
  const s = 'r'.repeat(n)
  expect(sha256Hex(s)).toBe(node(s))
})

test('random runner names, UTF-8 included', () => {
  for (let i = 0; i < 200; i++) {
    const s = randomBytes(i % 90).toString('base64') + (i % 3 ? 'ünïcødé-名前-🙂' : '')
    expect(sha256Hex(s)).toBe(node(s))
  }
})
