/**
 * The byte path's kernel knobs from the native addon (native/src/datapath.cc), typed.
 */
import { binding } from './binding';

export interface DatapathBinding {
  setReceiveBuffer(fd: number, bytes: number): number;
  receiveBuffer(fd: number): number;
}

/**
 * A fixed receive buffer (SO_RCVBUF; SO_RCVBUFFORCE with CAP_NET_ADMIN), which turns the kernel's
 * autotuning off for this socket. Returns what the kernel now uses (twice the request).
 */
export const setReceiveBuffer = (fd: number, bytes: number): number => binding.setReceiveBuffer(fd, bytes);

/** SO_RCVBUF as the kernel has it now. */
export const receiveBuffer = (fd: number): number => binding.receiveBuffer(fd);
