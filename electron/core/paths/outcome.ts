/**
 * What path management actually did for one interface, in words: the answer `braid paths set`
 * prints and the dashboard shows, so that nothing claims success on a guess.
 */
import fs from 'node:fs';
import type { PmEndpoint } from '../native/netlink';
import type { EffectivePolicy } from './effective';
import type { InterfaceState } from './inventory';
import type { PathPolicy } from './policy';
import { isImplicit, type OwnedEndpoint, type ReconcileReport } from './reconcile';

export interface OutcomeInput {
  iface: InterfaceState;
  policy: PathPolicy;
  /** Endpoints in the kernel after the reconcile. */
  endpoints: PmEndpoint[];
  owned: Map<string, OwnedEndpoint>;
  report: ReconcileReport | null;
  /** null when endpoints are managed; otherwise why not. */
  unmanagedReason: string | null;
}

/** Programs known to manage MPTCP endpoints, when one of them runs here (to name a likely owner). */
export function endpointManagersRunning(): string[] {
  const found = new Set<string>();
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  for (const pid of pids) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'NetworkManager' || comm === 'mptcpd') found.add(comm);
    } catch {
      /* gone meanwhile */
    }
  }
  return [...found];
}

function foreignOwner(): string {
  const running = endpointManagersRunning();
  return running.length ? `${running.join(' or ')} (running here) or an administrator` : 'another program or an administrator';
}

export function interfaceOutcome(o: OutcomeInput): string {
  const { iface, policy } = o;
  const mine = (address: string): OwnedEndpoint | undefined => o.owned.get(address);
  if (!iface.up) return `interface is down; the policy '${policy}' applies when it comes up`;
  if (iface.addresses.length === 0) return `no usable address; the policy '${policy}' applies when it gets one`;
  if (o.unmanagedReason) return `policy '${policy}' saved but not applied: ${o.unmanagedReason}`;
  const parts: string[] = [];
  for (const a of iface.addresses) {
    const own = mine(a.address);
    const here = o.endpoints.find((e) => e.address === a.address);
    const added = o.report?.added.some((x) => x.address === a.address) ?? false;
    const removed = o.report?.removed.some((x) => x.address === a.address) ?? false;
    const changed = o.report?.changed.some((x) => x.address === a.address) ?? false;
    if (policy === 'off') {
      if (removed) parts.push(`${a.address}: endpoint removed`);
      else if (here && !own) parts.push(`${a.address}: endpoint id ${here.id} stays (made by ${isImplicit(here) ? 'the kernel' : foreignOwner()}, not Braid)`);
      else parts.push(`${a.address}: no endpoint`);
      continue;
    }
    if (own) {
      const flags = own.backup ? 'subflow, backup' : 'subflow';
      parts.push(`${a.address}: ${added ? 'endpoint added' : changed ? 'endpoint changed' : 'endpoint in place'} (id ${own.id}, ${flags})`);
    } else if (here && !isImplicit(here)) {
      parts.push(`${a.address}: blocked: endpoint id ${here.id} belongs to ${foreignOwner()}; Braid leaves it alone (\`ip mptcp endpoint delete id ${here.id}\` lets Braid manage it)`);
    } else {
      const err = o.report?.error;
      parts.push(`${a.address}: not added${err ? `: ${err.message}` : ''}`);
    }
  }
  return parts.join('; ');
}

/** What a policy means while Braid is the path manager (no endpoints: subflows per connection). */
export function userspaceOutcome(iface: InterfaceState, eff: EffectivePolicy, adopted = false): string {
  const { policy } = eff;
  if (!eff.managed) return `not steered by Braid (no policy set for this ${iface.kind === 'other' ? 'tunnel, bridge or virtual link' : 'link'}): connections the routing table sends here are left alone`;
  if (!iface.up) return `interface is down; the policy '${policy}' applies when it comes up`;
  if (iface.addresses.length === 0) return `no usable address; the policy '${policy}' applies when it gets one`;
  const demoted = (eff.demotion ? ` (${eff.configured}, demoted: ${eff.demotion.reason})` : '') + (adopted ? ' (as another program\'s MPTCP endpoint on it says)' : '');
  switch (policy) {
    case 'use': return `in use: first subflows and a subflow on every connection${demoted}`;
    case 'secondary': return `secondary: joins a connection only while it needs more than the use paths carry${demoted}`;
    case 'backup': return `backup: a standby subflow on every connection, carrying data only when no use path works${demoted}`;
    default: return `off: carries nothing${demoted}`;
  }
}
