/** The interface through which other accounting watches the statistics engine's reads. */
import type { SubflowInfo } from '../native/mptcp';

/**
 * What accounting beyond the engine's own sees of each read: data caps count every byte a subflow
 * moved on its interface (paths/usage.ts), path quality reads RTT and retransmissions
 * (paths/quality.ts). Called in the tick, in the order: subflow and residual calls, then tick.
 */
export interface SubflowObserver {
  /** A subflow as read, and how far its bytes_acked / bytes_received moved since the connection's previous read. */
  subflow(path: string, s: SubflowInfo, dAcked: number, dReceived: number): void;
  /**
   * Bytes no subflow read accounted for, on a path: those a subflow moved after its last read and
   * before it closed (from the MPTCP connection's own counters), and those of a connection that
   * closed after its last read (the proxy's count beyond what its subflows showed, split like its
   * traffic).
   */
  residual(path: string, up: number, down: number): void;
  tick(now: number, seconds: number): void;
}
