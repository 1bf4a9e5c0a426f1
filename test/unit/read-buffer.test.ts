// Which of ssh2's deciphers may read from a reused buffer (src/remote/read-buffer.ts): only the
// JavaScript AES-GCM one, whatever number a bundler appends to its name.
import { copiesInput } from '../../src/remote/read-buffer'

const named = (name: string): unknown => new ({ [name]: class {} } as Record<string, new () => object>)[name]()

test('the JavaScript AES-GCM decipher copies what it reads', () => {
  expect(copiesInput(named('AESGCMDecipherNative'))).toBe(true)
  expect(copiesInput(named('AESGCMDecipherNative2'))).toBe(true)
})

test('every other decipher, and anything that is not one, keeps its reads', () => {
  for (const n of [
    'NullDecipher',
    'AESGCMDecipherBinding',
    'ChaChaPolyDecipherNative',
    'ChaChaPolyDecipherBinding',
    'GenericDecipherNative',
    'GenericDecipherBinding',
    'AESGCMDecipherNativeX',
    'XAESGCMDecipherNative'
  ])
    expect([n, copiesInput(named(n))]).toEqual([n, false])
  for (const v of [undefined, null, {}, 'AESGCMDecipherNative', Object.create(null)]) expect(copiesInput(v)).toBe(false)
})
