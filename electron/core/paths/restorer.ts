/**
 * MPTCP endpoints and limits that Braid's path management changed, as a kind of guarded state
 * (see ../guardian/restorers.ts): removed, and the limits put back, when their owner is gone.
 */
import type { GuardedRecord, Restorer } from '../guardian/restorers';
import { netlinkApi } from './endpoint-api';
import { currentNetns, Reconciler, type EndpointsRecord } from './reconcile';

export function describeEndpointChanges(rec: Pick<EndpointsRecord, 'owned' | 'originalLimits' | 'raisedTo'>): string[] {
  const lines = rec.owned.map((o) => `MPTCP endpoint ${o.address}${o.ifname ? ` on ${o.ifname}` : ''} (id ${o.id}, subflow${o.backup ? ', backup' : ''})`);
  const from = rec.originalLimits;
  const to = rec.raisedTo;
  if (from && to) {
    const parts: string[] = [];
    if (from.subflows !== to.subflows) parts.push(`subflows ${from.subflows}→${to.subflows}`);
    if (from.addAddrAccepted !== to.addAddrAccepted) parts.push(`add_addr_accepted ${from.addAddrAccepted}→${to.addAddrAccepted}`);
    if (parts.length) lines.push(`MPTCP limits ${parts.join(', ')}`);
  }
  return lines;
}

export const endpointsRestorer: Restorer = {
  describe: (rec: GuardedRecord) => describeEndpointChanges(rec as unknown as EndpointsRecord),
  // Endpoints live in a network namespace: only a process inside it can remove them.
  applicable: (rec: GuardedRecord) => (rec as unknown as EndpointsRecord).netns === currentNetns(),
  async restore(file: string): Promise<string> {
    // The reconciler adopts the record's endpoints (owner dead, same namespace) and undoes them.
    const r = new Reconciler(netlinkApi, file, { guard: true });
    const { owned, originalLimits, raisedTo } = r.changes;
    const report = r.cleanup();
    if (report.error) throw new Error(report.error.message);
    const what = describeEndpointChanges({ owned, originalLimits, raisedTo });
    return what.length ? `undone: ${what.join('; ')}` : 'MPTCP endpoints: nothing of Braid\'s was left';
  },
};
