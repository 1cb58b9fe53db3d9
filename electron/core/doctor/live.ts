/**
 * The connections a running Braid carries now: which fell back to plain TCP and why, and which use
 * fewer paths than there are. The why comes from the other findings of the same run where they say
 * it (a path that strips MPTCP, one that blocks joins, a missing route or endpoint).
 */
import type { ConnectionView } from '../contract';
import type { Findings } from './findings';
import type { PathCandidate } from './interfaces';

const list = (items: string[], max = 3): string => (items.length > max ? `${items.slice(0, max).join(', ')} and ${items.length - max} more` : items.join(', '));
const what = (c: ConnectionView): string => c.destination ?? `connection ${c.id}`;

export interface LiveInput {
  connections: ConnectionView[];
  relayInUse: boolean;
  dial: 'mptcp' | 'tcp';
  cands: PathCandidate[];
}

export function liveFindings(input: LiveInput, f: Findings): void {
  const conns = input.connections.filter((c) => c.destination !== null);
  if (conns.length === 0) {
    f.ok('live.connections', null, 'No live connections to look at.');
    return;
  }
  const usable = input.cands.filter((c) => c.usable);
  const primary = usable.find((c) => c.primary)?.iface.name ?? null;

  const tcp = conns.filter((c) => c.transport === 'tcp');
  if (tcp.length && input.dial === 'tcp') {
    f.fail('live.fallback', null, `${tcp.length} connection${tcp.length === 1 ? ' is' : 's are'} plain TCP because Braid dials plain TCP (dial = tcp): ${list(tcp.map(what))}.`, 'braid up --dial mptcp (or proxy.dial = "mptcp" in the config)');
  }

  const fellBack = conns.filter((c) => c.transport === 'fallback');
  if (fellBack.length) {
    const names = list(fellBack.map(what));
    if (!input.relayInUse) {
      f.fail('live.fallback', null, `${fellBack.length} connection${fellBack.length === 1 ? '' : 's'} fell back to plain TCP on one path (${names}): the destination does not speak MPTCP and there is no relay to speak it for them.`,
        'run `braid relay` on a server and import its share link (braid up --relay LINK, or the dashboard): then every destination gets every path');
    } else {
      const cause = primary && f.failed('path.mptcp', primary) ? `the path they start on, ${primary}, strips MPTCP (see its finding)` : primary ? `MPTCP was stripped on the way to the relay, on the path they start on (${primary})` : 'MPTCP was stripped on the way to the relay';
      f.fail('live.fallback', primary, `${fellBack.length} connection${fellBack.length === 1 ? '' : 's'} through the relay fell back to plain TCP (${names}): ${cause}.`,
        primary ? `see ${primary}'s findings` : null);
    }
  }

  const multi = conns.filter((c) => c.transport === 'mptcp');
  if (usable.length < 2 || multi.length === 0) {
    if (!fellBack.length && !tcp.length) f.ok('live.connections', null, `${conns.length} live connection${conns.length === 1 ? '' : 's'}, all MPTCP.`);
    return;
  }
  const short = multi.filter((c) => new Set(c.subflows.map((s) => s.interface ?? s.localAddress)).size < usable.length);
  if (short.length === 0) {
    f.ok('live.paths', null, `${multi.length === 1 ? 'The MPTCP connection uses' : `All ${multi.length} MPTCP connections use`} every one of the ${usable.length} paths.`);
    return;
  }
  const missing = new Set<string>();
  for (const c of short) {
    const used = new Set(c.subflows.map((s) => s.interface));
    for (const u of usable) if (!used.has(u.iface.name)) missing.add(u.iface.name);
  }
  const reasons = [...missing].map((m) => {
    const cause = ['path.route', 'iface.endpoint', 'path.join', 'path.mptcp', 'path.tcp', 'path.portal'].find((k) => f.failed(k, m));
    return cause ? `${m} (${cause.replace('path.', '').replace('iface.', '')} fails, see above)` : `${m} (no finding explains it; it may have joined after the connection's data was done)`;
  });
  f.warn('live.paths', null, `${short.length} of ${multi.length} MPTCP connection${multi.length === 1 ? '' : 's'} use fewer paths than the ${usable.length} available (${list(short.map(what))}); missing: ${reasons.join('; ')}.`,
    'fix what the findings of those paths say; connections opened after the fix use them');
}
