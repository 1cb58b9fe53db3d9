/**
 * What the kernel says about MPTCP in this network namespace: enabled or not, the path manager's
 * mode, the per-connection limits, and its MIB counters (/proc/net/netstat, MPTcpExt), which also
 * tell when the kernel itself switched MPTCP off after seeing MPTCP SYNs dropped ("blackhole").
 */
import fs from 'node:fs';
import { errorMessage } from '../errors';
import * as netlink from '../native/netlink';
import type { PmLimits } from '../native/netlink';
import { loadNative } from '../proxy/native';
import { endpointManagersRunning } from '../paths/outcome';
import type { Findings } from './findings';

export interface KernelReadings {
  enabled: string | null;            // net.mptcp.enabled
  socketOk: boolean;                 // socket(IPPROTO_MPTCP) works
  socketReason: string | null;
  pathManager: string | null;        // net.mptcp.path_manager ('kernel' | 'userspace'), or from pm_type
  limits: PmLimits | null;
  limitsError: string | null;
  blackholeTimeout: number | null;   // net.mptcp.blackhole_timeout, s
  synRetrans: number | null;         // net.mptcp.syn_retrans_before_tcp_fallback
}

const sysctl = (name: string): string | null => {
  try {
    return fs.readFileSync(`/proc/sys/net/mptcp/${name}`, 'utf8').trim();
  } catch {
    return null;
  }
};

const numberOrNull = (v: string | null): number | null => (v !== null && /^\d+$/.test(v) ? Number(v) : null);

export function readKernel(): KernelReadings {
  const native = loadNative();
  let socketOk = false;
  let socketReason: string | null = native.error ? `native addon not loaded: ${native.error}` : null;
  if (native.mod) {
    try {
      const s = native.mod.supported();
      socketOk = s.mptcp;
      socketReason = s.reason;
    } catch (err) {
      socketReason = errorMessage(err);
    }
  }
  let limits: PmLimits | null = null;
  let limitsError: string | null = null;
  try {
    limits = netlink.getLimits();
  } catch (err) {
    limitsError = errorMessage(err);
  }
  const pmType = sysctl('pm_type');
  return {
    enabled: sysctl('enabled'),
    socketOk,
    socketReason,
    pathManager: sysctl('path_manager') ?? (pmType === '0' ? 'kernel' : pmType === '1' ? 'userspace' : null),
    limits,
    limitsError,
    blackholeTimeout: numberOrNull(sysctl('blackhole_timeout')),
    synRetrans: numberOrNull(sysctl('syn_retrans_before_tcp_fallback')),
  };
}

/** This namespace's MPTcpExt counters (MPCapableSYNTX, MPJoinSynTx, Blackhole, …); {} without MPTCP. */
export function readMptcpCounters(file = '/proc/net/netstat'): Record<string, number> {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const lines = text.split('\n').filter((l) => l.startsWith('MPTcpExt:'));
  if (lines.length < 2) return {};
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1);
  const out: Record<string, number> = {};
  names.forEach((n, i) => (out[n] = Number(values[i] ?? 0)));
  return out;
}

export const counterDelta = (before: Record<string, number>, after: Record<string, number>, name: string): number =>
  (after[name] ?? 0) - (before[name] ?? 0);

/**
 * How long an MPTCP handshake may wait for its SYN/ACK before the kernel would retry without MPTCP
 * and, if that works, switch MPTCP off for every new connection in this namespace for an hour
 * (net.mptcp.blackhole_timeout). The SYN is retransmitted at 1 s, 3 s, 7 s …; the retry without MPTCP
 * comes after `syn_retrans_before_tcp_fallback` retransmissions. A probe gives up well before that,
 * so the doctor never causes what it is meant to diagnose.
 */
export function mptcpProbeBudgetMs(synRetrans: number | null): number {
  const n = synRetrans ?? 2;
  const fallbackAtMs = (2 ** n - 1) * 1000;
  return Math.max(500, Math.min(2500, fallbackAtMs - 400));
}

export interface KernelCheckInput {
  readings: KernelReadings;
  /** Paths that could carry traffic (see interfaces.ts); the limits must allow one subflow fewer. */
  usablePaths: number;
  /** Braid raises the limits itself while it manages paths here. */
  braidManagesLimits: boolean;
  /** A running Braid is this namespace's (userspace) path manager: it opens subflows per connection. */
  braidIsPathManager: boolean;
}

export function kernelFindings(input: KernelCheckInput, f: Findings): void {
  const r = input.readings;
  if (r.enabled === '0') {
    f.fail('kernel.mptcp', null, 'MPTCP is switched off in the kernel (net.mptcp.enabled = 0): every connection is plain TCP on one path.',
      'sudo sysctl -w net.mptcp.enabled=1 (and add net.mptcp.enabled = 1 to /etc/sysctl.d/90-mptcp.conf to keep it)');
  } else if (!r.socketOk) {
    f.fail('kernel.mptcp', null, `MPTCP sockets cannot be made here: ${r.socketReason ?? 'unknown reason'}. Every connection is plain TCP on one path.`,
      r.enabled === null ? 'use a kernel built with CONFIG_MPTCP (Linux 5.6 or later; most distributions since 2022)' : 'sudo sysctl -w net.mptcp.enabled=1');
  } else {
    f.ok('kernel.mptcp', null, 'MPTCP is enabled (net.mptcp.enabled = 1).');
  }

  if (r.pathManager === 'userspace' && input.braidIsPathManager) {
    f.ok('kernel.pm', null, 'Braid is the path manager here (net.mptcp.path_manager = userspace): it opens each connection\'s subflows itself, by the paths\' policies and rules.');
    // The per-connection limits and endpoints are the in-kernel path manager's: not used now.
    f.ok('kernel.limits', null, 'The kernel\'s MPTCP limits and endpoints do not apply while Braid is the path manager.');
    return;
  }
  if (r.pathManager === 'userspace') {
    const daemons = endpointManagersRunning().filter((d) => d === 'mptcpd');
    if (daemons.length) f.warn('kernel.pm', null, 'The userspace path manager is selected and mptcpd runs: it, not the kernel, decides which subflows to open; Braid\'s endpoints only help if mptcpd uses them.');
    else {
      f.fail('kernel.pm', null, 'The userspace path manager is selected (net.mptcp.path_manager = userspace) and no daemon opens subflows: connections never use a second path.',
        'sudo sysctl -w net.mptcp.path_manager=kernel (or start mptcpd)');
    }
  } else if (r.pathManager !== null) {
    f.ok('kernel.pm', null, `The in-kernel path manager opens subflows from the MPTCP endpoints (net.mptcp.path_manager = ${r.pathManager}).`);
  }

  if (!r.limits) {
    f.warn('kernel.limits', null, `Cannot read the MPTCP limits: ${r.limitsError ?? 'unknown reason'}.`);
  } else {
    const need = Math.max(0, Math.min(8, input.usablePaths - 1));
    const { subflows, addAddrAccepted } = r.limits;
    const text = `subflows ${subflows}, add_addr_accepted ${addAddrAccepted}`;
    const fix = `sudo ip mptcp limits set subflows ${Math.max(need, subflows)} add_addr_accepted ${Math.max(need, addAddrAccepted, 1)}${input.braidManagesLimits ? '' : ' (braid up raises them itself when it runs with path management and CAP_NET_ADMIN)'}`;
    if (subflows < need) {
      const what = subflows === 0 ? 'no connection may open a second subflow: every connection stays on one path' : `a connection may open only ${subflows} more subflow${subflows === 1 ? '' : 's'}, so ${need - subflows} of the ${input.usablePaths} paths stay unused`;
      f.fail('kernel.limits', null, `The kernel's MPTCP limits (${text}) are too low for ${input.usablePaths} usable paths: ${what}.`, fix);
    } else if (addAddrAccepted === 0 && input.usablePaths > 1) {
      f.warn('kernel.limits', null, `The kernel's MPTCP limits (${text}) accept no address the relay announces: a relay with more than one address is used through one of them only.`, fix);
    } else {
      f.ok('kernel.limits', null, `The kernel's MPTCP limits (${text}) ${input.usablePaths > 1 ? `allow every one of the ${input.usablePaths} usable paths` : 'are enough: there is one usable path'}.`);
    }
  }
}

/** The kernel's blackhole detection switched MPTCP off for new connections (seen while probing). */
export function blackholeFinding(f: Findings, r: KernelReadings, disabledDuringRun: boolean, everBlackholed: boolean): void {
  const reset = `sudo sysctl -w net.mptcp.blackhole_timeout=${r.blackholeTimeout ?? 3600} (writing it, even the same value, switches MPTCP back on)`;
  if (disabledDuringRun) {
    f.fail('kernel.blackhole', null,
      'The kernel has switched MPTCP off for new outgoing connections: it saw MPTCP SYNs dropped where plain TCP got through (blackhole detection, net.mptcp.blackhole_timeout), so every new connection is plain TCP on one path for up to an hour.',
      `find the path that drops MPTCP (see the path findings), then ${reset}`);
  } else if (everBlackholed) {
    f.warn('kernel.blackhole', null, 'The kernel saw MPTCP SYNs dropped earlier and switched MPTCP off for a while (blackhole detection); it is back on now, but a path that drops MPTCP will trigger it again.', reset);
  }
}
