/** Integer byte splits: a connection's bytes over the paths its subflows used. */

/** Adds `n` (when positive) to `key`'s count. */
export function addTo(map: Map<string, number>, key: string, n: number): void {
  if (n > 0) map.set(key, (map.get(key) ?? 0) + n);
}

/** Splits `amount` over keys in proportion to `weights` (integers, the remainder to the largest). */
export function splitByWeight(amount: number, weights: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  const total = [...weights.values()].reduce((a, b) => a + b, 0);
  if (amount <= 0 || total <= 0) return out;
  let given = 0;
  let largest: string | null = null;
  for (const [k, w] of weights) {
    const part = Math.floor((amount * w) / total);
    out.set(k, part);
    given += part;
    if (largest === null || w > weights.get(largest)!) largest = k;
  }
  if (largest !== null) out.set(largest, out.get(largest)! + amount - given);
  return out;
}
