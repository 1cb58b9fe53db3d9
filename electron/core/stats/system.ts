import fs from 'node:fs';

/**
 * How long one read of the count serves. Reading /proc/net/protocols sums every protocol's per-CPU
 * counters over all possible CPUs: measured at 0.4-0.6 ms in a namespace of an idle two-core
 * machine, 3-6 ms after a sleep on a busy host, the largest single cost of an idle stats tick. The
 * count is shown, not acted on, so it may be this late (plus up to one tick of the engine's pace).
 */
export const SYSTEM_SOCKETS_TTL_MS = 5000;

let cache: { at: number; value: number | null } | null = null;

/** MPTCP sockets in use in this network namespace (all of them, not only Braid's); up to SYSTEM_SOCKETS_TTL_MS old. */
export function systemMptcpSockets(): number | null {
  const now = Date.now();
  if (cache && now >= cache.at && now - cache.at < SYSTEM_SOCKETS_TTL_MS) return cache.value;
  cache = { at: now, value: readCount() };
  return cache.value;
}

function readCount(): number | null {
  try {
    const text = fs.readFileSync('/proc/net/protocols', 'utf8');
    let n = 0;
    let found = false;
    for (const line of text.split('\n')) {
      const cols = line.trim().split(/\s+/);
      if (cols[0] === 'MPTCP' || cols[0] === 'MPTCPv6') {
        n += Number(cols[2]) || 0;
        found = true;
      }
    }
    return found ? n : null;
  } catch {
    return null;
  }
}
