import fs from 'node:fs';

/** MPTCP sockets in use in this network namespace (all of them, not only Braid's). */
export function systemMptcpSockets(): number | null {
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
