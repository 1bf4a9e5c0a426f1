// The statistics the bench rows report.

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Rounds' ratios for a row's note: ascending, two decimals. */
export const ratiosText = (xs: number[]): string =>
  [...xs]
    .sort((a, b) => a - b)
    .map((x) => x.toFixed(2))
    .join(' ')
