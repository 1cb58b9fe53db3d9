/**
 * The bench's median: over the finite values only (a repetition that produced no figure is NaN and
 * left out), the mean of the middle two for an even count, NaN when nothing is left.
 */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
