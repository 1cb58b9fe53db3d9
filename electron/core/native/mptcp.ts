/**
 * MPTCP sockets from the native addon, typed. Everything else in Braid talks to the kernel's MPTCP
 * sockets through the functions exported here.
 */
import { interfaceOf } from '../local-addresses';
import { binding } from './binding';

export interface ListenOptions {
  host: string;          // numeric address; '::' with dualStack for both families
  port: number;          // 0 = ephemeral
  backlog?: number;      // default 511
  dualStack?: boolean;   // IPv6 socket that also accepts IPv4 (IPV6_V6ONLY off)
  reuseAddr?: boolean;   // default true
  mptcp?: boolean;       // default true; false = plain TCP socket (same code path)
}

export interface ConnectOptions {
  address: string;       // numeric IPv4 or IPv6 address
  port: number;
  localAddress?: string; // bind() before connect
  device?: string;       // SO_BINDTODEVICE
  timeoutMs?: number;    // default 10000
  mptcp?: boolean;       // default true
  mark?: number;         // SO_MARK (needs CAP_NET_ADMIN); 0 = none
}

export interface SubflowInfo {
  id: number;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  family: 4 | 6;
  interface: string | null;  // ifname the local address belongs to, when known
  bytesSent: number;         // tcpi_bytes_sent (includes retransmits)
  bytesAcked: number;
  bytesReceived: number;
  rttUs: number;
  rttVarUs: number;          // tcpi_rttvar (this side's estimate as a sender)
  rcvRttUs: number;          // tcpi_rcv_rtt: the receiver's RTT estimate (0 until data came in)
  bytesRetrans: number;      // tcpi_bytes_retrans: bytes this side sent again
  backup: boolean;           // local or remote side flagged this subflow backup
  backupKnown: boolean;      // false without CAP_NET_ADMIN (sock_diag hides the MPTCP ULP state)
  state: number;             // TCP state (1 = ESTABLISHED)
}

export interface MptcpInfo {
  mptcp: boolean;            // the socket is an MPTCP socket at all
  fallback: boolean;         // MPTCP socket that fell back to plain TCP
  token: number;
  subflowsTotal: number;
  bytesSent: number;
  bytesReceived: number;
  bytesAcked: number;
  retransmits: number;
  subflows: SubflowInfo[];
}

export interface NativeSupport {
  mptcp: boolean;            // socket(..., IPPROTO_MPTCP) works and net.mptcp.enabled = 1
  reason: string | null;     // why not, when not
  fullInfo: boolean;         // MPTCP_FULL_INFO getsockopt is available (kernel >= 6.6)
}

export const supported = (): NativeSupport => binding.supported();
export const listenFd = (opts: ListenOptions): number => binding.listen(opts);
export const connectFd = (opts: ConnectOptions): Promise<number> => binding.connect(opts);
/**
 * MPTCP state of a socket. `withBackupFlags: false` skips the per-subflow sock_diag lookup that the
 * backup flag needs (backupKnown is then false): the stats sampler reads thousands of sockets a tick.
 */
export function socketInfo(fd: number, withBackupFlags = true): MptcpInfo {
  const info = binding.info(fd, withBackupFlags);
  for (const sf of info.subflows) sf.interface = interfaceOf(sf.localAddress) ?? null;
  return info;
}

/**
 * Whether the socket runs MPTCP or fell back to TCP, and nothing else: one getsockopt, no
 * sock_diag and no interface table, because it sits between a dial and the client's reply.
 */
export function mptcpStatus(fd: number): { mptcp: boolean; fallback: boolean } {
  const info = binding.info(fd, false);
  return { mptcp: info.mptcp, fallback: info.fallback };
}

export const closeFd = (fd: number): void => binding.close(fd);

/** The sending side of a TCP socket: bytes queued in the kernel, time held back by the peer's window. */
export interface SendState {
  queued: number;                 // SIOCOUTQ: sent but unacknowledged, plus not yet sent
  rwndLimitedUs: number | null;   // tcpi_rwnd_limited (null: kernel too old to say)
  busyUs: number | null;          // tcpi_busy_time
}
export const sendState = (fd: number): SendState => binding.sendState(fd);
