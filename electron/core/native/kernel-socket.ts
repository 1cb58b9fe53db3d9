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
