/**
 * The doctor's probes of each path to the relay, all bound to one interface as a subflow over it
 * would be: plain TCP (does it get there, how long a round trip takes), then an MPTCP handshake
 * (MP_CAPABLE comes back, or a middlebox strips it and the connection falls back, or MPTCP SYNs are
 * dropped), TLS on that connection checked against the pin, and, while it stays open, which other
 * interfaces' subflows manage to join it (MP_JOIN).
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { errorCode } from '../errors';
import { loadNative } from '../proxy/native';
import type { RelayLink } from '../relay/share-link';
import type { PathCandidate } from './interfaces';
import { connectRaw, tlsToRelay } from './tunnel';

export type MptcpOutcome =
  | { kind: 'mptcp'; ms: number }
  | { kind: 'fallback'; ms: number }           // SYN/ACK came back without MP_CAPABLE: stripped
  | { kind: 'dropped'; waitedMs: number }      // no SYN/ACK to MPTCP SYNs, while TCP got through
  | { kind: 'error'; code: string }
  | { kind: 'skipped' };

export interface PathProbe {
  name: string;
  tcp: { ok: true; ms: number } | { ok: false; code: string };
  mptcp: MptcpOutcome;
  tls: { ok: true; pinOk: boolean; pin: string } | { ok: false; code: string } | null;
  /** Interfaces whose subflows joined the MPTCP connection started here (ESTABLISHED). */
  joined: Set<string>;
  /** The connection stayed open long enough to see joins (MPTCP, not fallback, TLS done). */
  joinTested: boolean;
}

export interface ProbeOptions {
  link: RelayLink | null;        // null: a plain target, TCP only
  mptcp: boolean;                // probe MPTCP too (the relay speaks it and this kernel can)
  port: number;
  mptcpBudgetMs: number;         // see kernel.ts mptcpProbeBudgetMs: never long enough to trip blackhole detection
  tcpTimeoutMs?: number;
  tlsTimeoutMs?: number;
  joinWaitMs?: number;
  /** Interfaces expected to join a connection started here (have a subflow endpoint, a route …). */
  expectJoins: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function probePath(c: PathCandidate, opts: ProbeOptions): Promise<PathProbe> {
  const name = c.iface.name;
  const result: PathProbe = { name, tcp: { ok: false, code: 'ESKIPPED' }, mptcp: { kind: 'skipped' }, tls: null, joined: new Set(), joinTested: false };
  const bind = { device: name, localAddress: c.address ?? undefined };
  const address = c.targetAddress!;
  try {
    const raw = await connectRaw(address, opts.port, { bind, mptcp: false, timeoutMs: opts.tcpTimeoutMs ?? 3000 });
    result.tcp = { ok: true, ms: raw.ms };
    if (opts.link) {
      // TLS here too: the relay's identity is checked even where MPTCP does not get through.
      try {
        const t = await tlsToRelay(raw.socket, opts.link, opts.tlsTimeoutMs ?? 5000);
        result.tls = { ok: true, pinOk: t.pinOk, pin: t.pin };
        t.socket.destroy();
      } catch (err) {
        result.tls = { ok: false, code: errorCode(err) };
      }
    }
    raw.socket.destroy();
  } catch (err) {
    result.tcp = { ok: false, code: errorCode(err) };
  }
  if (!opts.link || !opts.mptcp || !result.tcp.ok) return result;

  let raw: net.Socket | null = null;
  let tlsSocket: tls.TLSSocket | null = null;
  try {
    let fd: number;
    try {
      const r = await connectRaw(address, opts.port, { bind, mptcp: true, timeoutMs: opts.mptcpBudgetMs });
      raw = r.socket;
      fd = r.fd;
      const info = loadNative().mod!.mptcpStatus(fd);
      result.mptcp = info.mptcp && !info.fallback ? { kind: 'mptcp', ms: r.ms } : { kind: 'fallback', ms: r.ms };
    } catch (err) {
      const code = errorCode(err);
      result.mptcp = code === 'ETIMEDOUT' ? { kind: 'dropped', waitedMs: opts.mptcpBudgetMs } : { kind: 'error', code };
      return result;
    }
    try {
      const t = await tlsToRelay(raw, opts.link, opts.tlsTimeoutMs ?? 5000);
      tlsSocket = t.socket;
      result.tls = { ok: true, pinOk: t.pinOk, pin: t.pin };
    } catch (err) {
      result.tls = { ok: false, code: errorCode(err) };
      return result;
    }
    if (result.mptcp.kind !== 'mptcp') return result;
    // The TLS exchange made the connection fully established: the path manager opens its subflows now.
    result.joinTested = true;
    const waitMs = opts.joinWaitMs ?? 3000;
    const until = performance.now() + waitMs;
    const native = loadNative().mod!;
    for (let i = 0; i < Math.ceil(waitMs / 100) + 1; i++) {
      try {
        for (const sf of native.socketInfo(fd, false).subflows) {
          if (sf.state === 1 && sf.interface && sf.interface !== name) result.joined.add(sf.interface);
        }
      } catch {
        break;  // the relay closed it: what joined so far is the answer
      }
      if (opts.expectJoins.every((j) => result.joined.has(j)) || performance.now() >= until) break;
      await sleep(100);
    }
    return result;
  } finally {
    tlsSocket?.destroy();
    raw?.destroy();
  }
}
