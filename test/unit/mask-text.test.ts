import { maskText } from '../../src/mask-text'

describe('maskText', () => {
  test('text without a secret is returned as it is (control)', () => {
    expect(maskText('nothing to hide here', ['hunter2', 'abcXYZ'])).toBe('nothing to hide here')
    expect(maskText('', ['hunter2'])).toBe('')
    expect(maskText('hunter2', [''])).toBe('hunter2')
  })

  test('each occurrence of each secret is hidden', () => {
    expect(maskText('a hunter2 b hunter2 c swordfish', ['swordfish', 'hunter2'])).toBe('a *** b *** c ***')
    expect(maskText('hunter2', ['hunter2'])).toBe('***')
  })

  test('two secrets that overlap leave no fragment of either, in whichever order they are given', () => {
    for (const secrets of [
      ['abcXYZ', 'XYZdef'],
      ['XYZdef', 'abcXYZ']
    ])
      expect(maskText('<abcXYZdef>', secrets)).toBe('<***>')
  })

  test('a secret inside a longer one, and a chain of overlaps, become one mask', () => {
    expect(maskText('x hunter2-registry y', ['hunter2', 'hunter2-registry'])).toBe('x *** y')
    expect(maskText('x hunter2-registry y', ['hunter2-registry', 'hunter2'])).toBe('x *** y')
    expect(maskText('[aaaBBBcccDDD]', ['aaaBBB', 'BBBccc', 'cccDDD'])).toBe('[***]')
  })

  test('a secret that overlaps itself is hidden whole', () => {
    expect(maskText('xabababay', ['ababa'])).toBe('x***y')
  })

  test('secrets that touch become one mask; ones apart stay apart', () => {
    expect(maskText('hunter2swordfish', ['hunter2', 'swordfish'])).toBe('***')
    expect(maskText('hunter2 swordfish', ['hunter2', 'swordfish'])).toBe('*** ***')
  })
})
