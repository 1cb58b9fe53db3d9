/**
 * A fixed receive buffer for the MPTCP connection between `braid up` and `braid relay`, at both ends.
 *
 * Why fixed: the kernel grows an MPTCP socket's receive buffer (mptcp_rcv_space_adjust() in
 * net/mptcp/protocol.c) only when the reader copied more than the last measured space within one
 * receive round trip. A connection that starts at tcp_rmem[1] (128 KiB here) on links with a
 * round trip of a few ms is limited by that window to about what it copies per round trip, so the
 * measure never exceeds the space and the buffer never grows. The relay's pooled connections hit
 * this (measured: the relay's receiving socket stayed at 131072 bytes for a whole upload, one
 * link's subflow idle, 0.80x raw MPTCP); fresh connections mostly escape it through their first
 * burst. A fixed buffer gives the window up front; the kernel copies it to every subflow.
 *
 * Why this size: the ceiling the kernel's own autotuning would reach, tcp_rmem[2] of the socket's
 * network namespace (32 MiB on 6.18; SO_RCVBUF is half of it, as the kernel doubles the request
 * for its bookkeeping). A smaller fixed window costs uploads through the relay when its reader
 * falls behind for a moment (a 2-core machine running client, relay and destination): the MPTCP
 * window closes, and each reopening can wait for the sender's 200 ms MPTCP retransmission timer
 * (`MPTcpExtMPTCPRetrans`). Unshaped 1 GB uploads, 10 to 12 each: 2 MiB 1.15–3.73 Gbit/s (median
 * about 2.0, up to 27 MPTCP retransmissions each), 4 MiB 1.62–3.67, 8 MiB 2.05–3.88, 16 MiB
 * 3.09–3.87 (0–2 retransmissions). Memory is taken only while the reader lags, as for any TCP
 * socket autotuned to the same ceiling; tcp_mem's pressure limits apply to it.
 *
 * Without CAP_NET_ADMIN the kernel caps the request at net.core.rmem_max (4 MiB here).
 */
import fs from 'node:fs';
import { loadNative } from '../proxy/native';

/** The floor (and the size when tcp_rmem cannot be read): 2 MiB, a window of megabytes. */
export const MIN_RECEIVE_BUFFER = 2 * 1024 * 1024;
/** The cap, however high tcp_rmem[2] is set. */
export const MAX_RECEIVE_BUFFER = 32 * 1024 * 1024;

/** Half of tcp_rmem[2] (the kernel doubles SO_RCVBUF), within [MIN, MAX]; `rmem` is the sysctl's text. */
export function receiveBufferFor(rmem: string | null): number {
  const max = Number(rmem?.trim().split(/\s+/)[2]);
  if (!Number.isFinite(max) || max <= 0) return MIN_RECEIVE_BUFFER;
  return Math.min(MAX_RECEIVE_BUFFER, Math.max(MIN_RECEIVE_BUFFER, Math.floor(max / 2)));
}

let cached: number | null = null;

/** The size for this process's network namespace (read once). */
export function relayReceiveBuffer(): number {
  if (cached === null) {
    let text: string | null = null;
    try {
      text = fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8');
    } catch {
      /* not Linux, or no /proc: the floor */
    }
    cached = receiveBufferFor(text);
  }
  return cached;
}

/** Best effort: a socket that cannot take it keeps the kernel's autotuning. Returns the size or null. */
export function fixReceiveBuffer(fd: number | null | undefined, bytes = relayReceiveBuffer()): number | null {
  if (typeof fd !== 'number' || fd < 0) return null;
  const native = loadNative().mod;
  if (!native) return null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../native/datapath') as typeof import('../native/datapath')).setReceiveBuffer(fd, bytes);
  } catch {
    return null;
  }
}
