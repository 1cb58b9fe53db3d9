/** Human-readable figures for menus and notifications, where space is one short line. */

const RATE_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];

/**
 * A byte rate as a bit rate with SI prefixes ("12.3 Mbit/s"): network links are sold and shown in
 * bits per second, so that is the unit people compare against. Three significant figures at most.
 */
export function formatRate(bytesPerSecond: number): string {
  let v = Number.isFinite(bytesPerSecond) && bytesPerSecond > 0 ? bytesPerSecond * 8 : 0;
  let unit = 0;
  while (unit < RATE_UNITS.length - 1 && roundForDisplay(v) >= 1000) {
    v /= 1000;
    unit++;
  }
  const shown = roundForDisplay(v);
  const text = unit === 0 || shown >= 100 ? String(Math.round(shown)) : shown.toFixed(1);
  return `${text} ${RATE_UNITS[unit]}`;
}

function roundForDisplay(v: number): number {
  return v >= 100 ? Math.round(v) : Math.round(v * 10) / 10;
}

/** Splits text into lines of at most `width` characters at spaces (a word longer than that is cut). */
export function wrapText(text: string, width: number, maxLines: number): string[] {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let cur = '';
  for (let w of words) {
    while (w.length > width) {
      if (cur) {
        lines.push(cur);
        cur = '';
      }
      lines.push(w.slice(0, width));
      w = w.slice(width);
    }
    if (!cur) cur = w;
    else if (cur.length + 1 + w.length <= width) cur += ` ${w}`;
    else {
      lines.push(cur);
      cur = w;
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > maxLines) {
    const kept = lines.slice(0, maxLines);
    const last = kept[maxLines - 1];
    kept[maxLines - 1] = (last.length >= width ? last.slice(0, width - 1) : last) + '…';
    return kept;
  }
  return lines;
}
