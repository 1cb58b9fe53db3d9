/**
 * A fixed receive buffer for the MPTCP connection between `braid up` and `braid relay`, at both ends.
 *
 * Why: the kernel grows an MPTCP socket's receive buffer (mptcp_rcv_space_adjust() in
 * net/mptcp/protocol.c) only when the reader copied more than the last measured space within one
 * receive round trip. A connection that starts at tcp_rmem[1] (128 KiB here) on links with a
 * round trip of a few ms is limited by that window to about what it copies per round trip, so the
 * measure never exceeds the space and the buffer never grows. The relay's pooled connections hit
 * this (measured: the relay's receiving socket stayed at 131072 bytes for a whole upload, one
 * link's subflow idle, 0.80x raw MPTCP); fresh connections mostly escape it through their first
 * burst. A fixed buffer gives the window up front; the kernel copies it to every subflow.
 *
 * 2 MiB (the kernel doubles it for its bookkeeping): a window of megabytes, enough for 100 Mbit/s
 * at 100 ms, and a bound on what one tunnel whose far side stalls can hold in the kernel.
 */
import { loadNative } from '../proxy/native';

export const RELAY_RECEIVE_BUFFER = 2 * 1024 * 1024;

/** Best effort: a socket that cannot take it keeps the kernel's autotuning. Returns the size or null. */
export function fixReceiveBuffer(fd: number | null | undefined, bytes = RELAY_RECEIVE_BUFFER): number | null {
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
