/**
 * Turns the probes of every path (probe.ts) into findings: TCP reach and round-trip time, what
 * happens to MPTCP on the way, the relay's identity, and whether subflows over each path can join a
 * connection. A path's fault is told apart from the relay's by comparing paths: one path falling
 * back while another does MPTCP is that path's middlebox; every path falling back is the relay.
 */
import type { Findings } from './findings';
import type { PathCandidate, Target } from './interfaces';
import type { PathProbe } from './probe';

const ms = (n: number): string => (n < 10 ? n.toFixed(1) : Math.round(n).toString());

const TUNNEL_FIX = (name: string, what = 'MPTCP'): string =>
  `${what} cannot cross ${name}'s network as it is: ask its provider to let TCP option 30 (MPTCP) through, or reach the relay through a tunnel on ${name} (WireGuard, an IPsec or UDP VPN), which hides the options`;

export interface JoinEvidence {
  synTx: number;        // MPJoinSynTx during the probes
  synAckRx: number;     // MPJoinSynAckRx during the probes
}

export function pathFindings(cands: PathCandidate[], probes: PathProbe[], target: Target, f: Findings, joins: JoinEvidence, subflowLimit: number | null): void {
  const byName = new Map(probes.map((p) => [p.name, p]));
  const reached = probes.filter((p) => p.tcp.ok);
  const fastest = Math.min(...reached.map((p) => (p.tcp.ok ? p.tcp.ms : Infinity)));
  const mptcpAnywhere = probes.some((p) => p.mptcp.kind === 'mptcp');
  const withMptcpResult = probes.filter((p) => p.mptcp.kind !== 'skipped' && p.mptcp.kind !== 'error');

  for (const c of cands) {
    const p = byName.get(c.iface.name);
    if (!p) continue;
    const name = p.name;
    if (!p.tcp.ok) {
      const code = p.tcp.code;
      const fix = c.route === false ? 'add the route (see above)'
        : code === 'ECONNREFUSED' ? `check that braid relay runs and listens on port ${target.port}`
        : code === 'ETIMEDOUT' ? `something on the way drops it: check ${name}'s connection and the relay's firewall (port ${target.port})`
        : null;
      f.fail('path.tcp', name, `TCP over ${name} does not reach ${target.label}: ${code}.`, fix);
      continue;
    }
    f.ok('path.tcp', name, `TCP over ${name} reaches ${target.label} (handshake ${ms(p.tcp.ms)} ms).`);
    const slow = p.tcp.ms > 3 * fastest && p.tcp.ms > 50;
    if (slow) {
      f.warn('path.rtt', name, `${name}'s round trip (${ms(p.tcp.ms)} ms) is ${Math.round(p.tcp.ms / fastest)}× the fastest path's (${ms(fastest)} ms): MPTCP's scheduler sends on the fastest path first, so ${name} carries little until that one is full.`);
    } else {
      f.ok('path.rtt', name, `${name}'s round trip to ${target.label} is ${ms(p.tcp.ms)} ms.`);
    }
    if (!target.isRelay) continue;
    mptcpFinding(c, p, f, mptcpAnywhere, withMptcpResult.length, pathFix(c, cands, probes));
    if (p.tls) {
      if (!p.tls.ok) f.fail('path.tls', name, `TLS with the relay over ${name} failed (${p.tls.code}).`, 'check that the link is for this relay and that nothing on the way intercepts TLS');
      else if (!p.tls.pinOk) {
        f.fail('path.tls', name, `The certificate that answers over ${name} is not the relay's (pin ${p.tls.pin || 'none'}, the link says another): a different server, or something on ${name} intercepts TLS.`,
          'get a fresh share link from the relay (braid relay prints it), and do not use a network that intercepts TLS');
      } else f.ok('path.tls', name, `The relay's certificate over ${name} matches the link's pin.`);
    }
  }

  // Joins: a path's subflows must join connections that started on another path.
  for (const c of cands) {
    const p = byName.get(c.iface.name);
    if (!p || !p.tcp.ok || !target.isRelay) continue;
    const testers = probes.filter((q) => q.name !== p.name && q.joinTested && expected(q, p.name, cands, subflowLimit));
    if (testers.length === 0) continue;
    const name = p.name;
    if (testers.some((q) => q.joined.has(name))) {
      f.ok('path.join', name, `Subflows over ${name} join connections that start on ${testers.map((q) => q.name).join(', ')} (MP_JOIN gets through).`);
      continue;
    }
    const evidence = joins.synTx > joins.synAckRx ? ` The kernel sent ${joins.synTx} MP_JOIN SYN${joins.synTx === 1 ? '' : 's'} during the test and got ${joins.synAckRx} answer${joins.synAckRx === 1 ? '' : 's'}.` : '';
    if (p.mptcp.kind === 'fallback') {
      f.fail('path.join', name, `${name} blocks MP_JOIN too: subflows over it never join a connection, since the middlebox that strips MPTCP strips joins as well.${evidence}`, pathFix(c, cands, probes));
    } else if (p.mptcp.kind === 'dropped') {
      f.fail('path.join', name, `${name} blocks MP_JOIN: its MPTCP SYNs, joins included, are dropped, so subflows over ${name} never join a connection.${evidence}`, pathFix(c, cands, probes));
    } else {
      f.fail('path.join', name, `${name} blocks MP_JOIN: an MPTCP handshake over ${name} gets through, but subflows over it never join a connection that started on ${testers.map((q) => q.name).join(', ')} (waited 3 s).${evidence}`, pathFix(c, cands, probes, 'MP_JOIN'));
    }
  }
}

/** Whether a connection started on `q` should have been joined by a subflow over `name`. */
function expected(q: PathProbe, name: string, cands: PathCandidate[], subflowLimit: number | null): boolean {
  const c = cands.find((x) => x.iface.name === name);
  if (!c || !c.usable || c.route === false) return false;
  if (!c.endpoints.some((e) => e.flagNames.includes('subflow'))) return false;
  if (subflowLimit === 0) return false;
  // With a limit below the number of candidates, a path that did not get its turn was not tested.
  if (subflowLimit !== null && q.joined.size >= subflowLimit && !q.joined.has(name)) return false;
  return true;
}

/** For a path that breaks MPTCP: carry the first subflow elsewhere (when it starts here), or stop trying it. */
function pathFix(c: PathCandidate, cands: PathCandidate[], probes: PathProbe[], what = 'MPTCP'): string {
  const name = c.iface.name;
  if (!c.primary) return `${TUNNEL_FIX(name, what)}; until then \`braid paths set ${name} off\` stops subflows from trying it`;
  const good = cands.find((o) => o !== c && o.route && probes.find((p) => p.name === o.iface.name)?.mptcp.kind === 'mptcp');
  const ip = c.targetAddress?.includes(':') ? 'ip -6' : 'ip';
  const reroute = good
    ? `make ${good.iface.name}, where MPTCP works, carry the first subflow: \`sudo ${ip} route add ${good.targetAddress} ${good.routeVia ? `via ${good.routeVia} ` : ''}dev ${good.iface.name} metric 10\``
    : 'make a path where MPTCP works carry the first subflow (a lower-metric route to the relay through it)';
  return `${reroute}; and ${TUNNEL_FIX(name, what)}`;
}

function mptcpFinding(c: PathCandidate, p: PathProbe, f: Findings, mptcpAnywhere: boolean, tested: number, fix: string): void {
  const name = p.name;
  const m = p.mptcp;
  const startsHere = c.primary
    ? ` ${name} holds the route to the relay, so every connection starts on it and falls back to plain TCP over ${name} alone: no path is aggregated.`
    : '';
  switch (m.kind) {
    case 'mptcp':
      f.ok('path.mptcp', name, `MPTCP survives over ${name}: the relay answered MP_CAPABLE.`);
      return;
    case 'fallback':
      if (mptcpAnywhere || tested > 1) {
        const relaySide = !mptcpAnywhere ? ' (every path falls back: if this is not a middlebox on each of them, the relay does not speak MPTCP: check `sysctl net.mptcp.enabled` on the server)' : '';
        f.fail('path.mptcp', name, `A middlebox on ${name} strips MPTCP: the relay's answer over ${name} came back without MP_CAPABLE, so connections over ${name} fall back to plain TCP.${relaySide}${startsHere}`, fix);
      } else {
        f.fail('path.mptcp', name, `MPTCP does not survive over ${name}: the answer came back without MP_CAPABLE. Either a middlebox on ${name} strips MPTCP, or the relay does not speak it (check \`sysctl net.mptcp.enabled\` on the server).${startsHere}`, fix);
      }
      return;
    case 'dropped':
      f.fail('path.mptcp', name, `MPTCP SYNs are dropped on ${name}: plain TCP gets through, but an MPTCP handshake got no answer within ${(m.waitedMs / 1000).toFixed(1)} s. Such a path also blocks joins, and if connections keep meeting it the kernel switches MPTCP off for an hour (blackhole detection).${startsHere}`, fix);
      return;
    case 'error':
      f.fail('path.mptcp', name, `An MPTCP handshake over ${name} failed (${m.code}) where plain TCP worked.`, null);
      return;
    case 'skipped':
      return;
  }
}
