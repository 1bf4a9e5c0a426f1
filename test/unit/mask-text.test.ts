import { SecretSet } from '../../src/mask-text'
import { secretForms } from '../../src/secret-forms'

/** `s` masked with `secrets` (a one-off SecretSet). */
function maskText(s: string, secrets: readonly string[]): string {
  const set = new SecretSet()
  for (const v of secrets) set.add(v)
  return set.mask(s)
}

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

describe('SecretSet', () => {
  /** Reference: mark every position any secret covers, then write one *** per marked run. */
  const reference = (s: string, secrets: string[]): string => {
    const covered = new Array<boolean>(s.length).fill(false)
    for (const v of secrets) for (let i = 0; i + v.length <= s.length; i++) if (v && s.startsWith(v, i)) covered.fill(true, i, i + v.length)
    let out = ''
    for (let i = 0; i < s.length; i++) {
      if (!covered[i]) out += s[i]
      else if (i === 0 || !covered[i - 1]) out += '***'
    }
    return out
  }

  test('agrees with marking every covered position, over 20,000 random texts and secrets of a small alphabet', () => {
    let seed = 7
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n)
    const word = (max: number): string => Array.from({ length: 1 + rnd(max) }, () => 'ab*'[rnd(3)]).join('')
    let masked = 0
    const wrong: unknown[] = []
    for (let k = 0; k < 20_000; k++) {
      const secrets = Array.from({ length: 1 + rnd(3) }, () => word(5))
      const s = word(30)
      const want = reference(s, secrets)
      if (want !== s) masked++
      const got = maskText(s, secrets)
      if (got !== want) wrong.push({ s, secrets, got, want })
    }
    expect(wrong.slice(0, 5)).toEqual([])
    // the control: most cases had something to mask
    expect(masked).toBeGreaterThan(10_000)
  })

  test('a self-overlapping secret 24 times longer costs about the same over the same megabyte (linear work, not text × secret)', () => {
    const setOf = (v: string): SecretSet => {
      const set = new SecretSet()
      for (const form of secretForms(v)) set.add(form)
      return set
    }
    const [long, short] = [setOf('a'.repeat(48_000)), setOf('a'.repeat(2_000))]
    const text = 'a'.repeat(1_000_000)
    const ms = (set: SecretSet): number => {
      const t = performance.now()
      // compared short: a failure must not print a megabyte
      expect(set.mask(text).slice(0, 20)).toBe('***')
      return performance.now() - t
    }
    // Same run, same text, the fastest of five: work proportional to text × secret would make the long one ~24 times slower.
    const fastest = (set: SecretSet): number => Math.min(...[1, 2, 3, 4, 5].map(() => ms(set)))
    const [s, l] = [fastest(short), fastest(long)]
    expect(l / Math.max(s, 1)).toBeLessThan(8)
    // its base64 form in base64 like it, and the control: one short of the secret is left alone
    expect(long.mask(Buffer.from('a'.repeat(750_000)).toString('base64')).slice(0, 20)).toBe('***')
    expect(long.mask(`x${'a'.repeat(47_999)}x`) === `x${'a'.repeat(47_999)}x`).toBe(true)
  })
})
