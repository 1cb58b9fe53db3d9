/** Paths, subflows and connections for the subflow plan's unit tests (paths-quality*-unit). */
import { planConnection, type ConnState, type PathInfo, type SubflowState } from '../../electron/core/paths/subflow-plan';

/** Path `name` number `n`: address 10.0.n.1, ifindex n + 1, wifi for wlan*, cellular otherwise. */
export const P = (name: string, policy: PathInfo['policy'], n: number, over: Partial<PathInfo> = {}): PathInfo => ({
  name, ifindex: n + 1, kind: name.startsWith('wlan') ? 'wifi' : 'cellular', up: true,
  addresses: [{ address: `10.0.${n}.1`, family: 4 }], policy, managed: true, ...over,
});
export const sub = (iface: string, n: number, over: Partial<SubflowState> = {}): SubflowState => ({
  localAddress: `10.0.${n}.1`, localPort: 40000 + n, remoteAddress: '192.0.2.1', remotePort: 8080, iface, backup: false, initial: false, ...over,
});
export const conn = (...subflows: SubflowState[]): ConnState => ({ token: 7, family: 4, remoteAddress: '192.0.2.1', remotePort: 8080, subflows, announced: [] });
export const planOpts = { maxSubflows: 8, hold: new Set<string>() };
/** The plan as text, one line per action; `markFirst` appends " (first)" to the first subflow's. */
export const ops = (a: ReturnType<typeof planConnection>, markFirst = false): string[] => {
  const first = (s: SubflowState): string => (markFirst && s.initial ? ' (first)' : '');
  return a.map((x) => (x.op === 'create' ? `create ${x.iface}${x.backup ? ' backup' : ''}`
    : x.op === 'destroy' ? `destroy ${x.subflow.iface}${first(x.subflow)}`
      : `${x.backup ? 'backup' : 'carry'} ${x.subflow.iface}${first(x.subflow)}`));
};
