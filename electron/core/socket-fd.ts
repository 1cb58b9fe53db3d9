/**
 * A Node socket's file descriptor, for the native addon's calls on it (getsockopt, MPTCP_INFO,
 * SO_PEERCRED, the splice and seal pumps): libuv's stream handles expose it on Unix.
 */
import type net from 'node:net';

/** The socket's fd, or null (none yet, closed, or not a libuv stream, such as a TLS stream's own). */
export function socketFd(socket: net.Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}
