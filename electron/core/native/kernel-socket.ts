/**
 * Socket facts only the kernel knows, from the native addon: where a redirected connection was
 * going (transparent mode) and who is at the other end of a local Unix socket (the privileged
 * helper's check of its callers).
 */
import { binding } from './binding';

/** The destination a connection had before nftables redirected it here (from conntrack). */
export const originalDestination = (fd: number): { address: string; port: number; family: 4 | 6 } => binding.originalDst(fd);

/** The process at the other end of a connected Unix socket, as the kernel recorded it at connect. */
export const peerCredentials = (fd: number): { pid: number; uid: number; gid: number } => binding.peerCred(fd);

/**
 * The TCP socket of this host whose local end is `local` and remote end `remote` (one exact
 * sock_diag lookup): its inode and owner uid, or null when there is none.
 */
export const tcpSocketOwner = (local: { address: string; port: number }, remote: { address: string; port: number }): { inode: number; uid: number } | null =>
  binding.tcpSocketOwner(local.address, local.port, remote.address, remote.port);

/**
 * Aborts the TCP socket of this host with these ends (sock_diag SOCK_DESTROY, as `ss -K` does): a
 * reset goes to the peer. A socket bound to a device is found only with that device's `ifindex`.
 * False when there is no such socket. Needs CAP_NET_ADMIN.
 */
export const tcpSocketAbort = (local: { address: string; port: number }, remote: { address: string; port: number }, ifindex?: number): boolean =>
  binding.tcpSocketAbort(local.address, local.port, remote.address, remote.port, ifindex);
