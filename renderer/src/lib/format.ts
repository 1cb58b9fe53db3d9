/** Numbers as people read them: rates in bits per second, amounts in bytes, ages in words. */

const RATE_UNITS = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

function scaled(value: number, units: string[]): string {
  let v = value;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  const digits = i === 0 || Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${units[i]}`;
}

/** Bytes per second as bits per second (how links are sold and measured). */
export function rate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return '—';
  return scaled(bytesPerSecond * 8, RATE_UNITS);
}

/** Shorter, for axis labels: whole numbers where the scale allows. */
export function axisRate(bytesPerSecond: number): string {
  if (bytesPerSecond === 0) return '0';
  let v = bytesPerSecond * 8;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < RATE_UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(v >= 10 ? 0 : 1)} ${RATE_UNITS[i]}`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return scaled(n, BYTE_UNITS);
}

export function rtt(us: number | null | undefined): string {
  if (us === null || us === undefined || !(us > 0)) return '—';
  if (us < 1000) return `${Math.round(us)} µs`;
  return us >= 10_000 ? `${Math.round(us / 1000)} ms` : `${(us / 1000).toFixed(1)} ms`;
}

export function percent(share: number | null): string {
  if (share === null || !Number.isFinite(share)) return '—';
  return `${Math.round(share * 100)} %`;
}

export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

/** Signal as the platform gives it: negative numbers are dBm, others a percentage. */
export function signal(v: number | null): string | null {
  if (v === null) return null;
  return v < 0 ? `${v} dBm` : `${v} %`;
}
