/**
 * The bench's small figure helpers, shared by every part: the median and min–max range it prints,
 * the byte-count check every download passes, and the aligned two-column summary table.
 */

/**
 * The median over the finite values only (a repetition that produced no figure is NaN and left
 * out), the mean of the middle two for an even count, NaN when nothing is left.
 */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** "min–max" over the finite values, each with `digits` decimals; "-" when there are none. */
export function range(xs: readonly number[], digits: number): string {
  const f = xs.filter((x) => Number.isFinite(x));
  return f.length ? `${Math.min(...f).toFixed(digits)}–${Math.max(...f).toFixed(digits)}` : '-';
}

/** Throws unless a download delivered exactly the bytes asked for. */
export function expectBytes(got: number, want: number, what: string): void {
  if (got !== want) throw new Error(`${what}: downloaded ${got} bytes, expected ${want}`);
}

/**
 * A summary table: a label column padded to the longest label, a right-aligned value column, then
 * free text. Headings (a section's title and its value column's name) start a section and do not
 * widen the label column. Printed all at once, so the widths come from every row.
 */
export class Table {
  private readonly rows: Array<{ label: string; value: string; rest: string; heading: boolean } | null> = [];

  heading(label: string, value = '', rest = ''): this {
    if (this.rows.length) this.rows.push(null);
    this.rows.push({ label, value, rest, heading: true });
    return this;
  }

  row(label: string, value: string, rest = ''): this {
    this.rows.push({ label, value, rest, heading: false });
    return this;
  }

  print(log: (s: string) => void): void {
    const body = this.rows.filter((r) => r !== null);
    const w0 = Math.max(0, ...body.filter((r) => !r.heading).map((r) => r.label.length));
    const w1 = Math.max(0, ...body.map((r) => r.value.length));
    log('');
    for (const r of this.rows) {
      if (r === null) log('');
      else log(`${r.label.padEnd(w0)}  ${r.value.padStart(w1)}${r.rest}`.trimEnd());
    }
  }
}
