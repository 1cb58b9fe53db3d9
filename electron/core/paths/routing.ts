/**
 * The dialer's link to path management: the first subflow's path (route-choice.ts) and, once
 * connected, handing the connection to whichever path manager acts for this process: Braid's own
 * in this process (CAP_NET_ADMIN), the privileged helper's (an unprivileged Braid), or none (the
 * kernel's path manager, which needs nothing per connection).
 */
import type { DialRouting } from '../proxy/dialer';
import { loadNative } from '../proxy/native';
import type { FirstCandidate, RouteChooser, RoutePlan, RouteTarget } from './route-choice';
import type { ConnWish } from './subflow-plan';

export interface KnownConnection {
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  iface: string | null;
}

/** Where a connection's wishes go: a path manager that opens its subflows. */
export interface ConnectionSink {
  register(token: number, wish: ConnWish, known?: KnownConnection): void;
  update(token: number, change: Partial<ConnWish>): void;
}

export class PathRouting implements DialRouting {
  constructor(private readonly chooser: RouteChooser, private readonly sink: () => ConnectionSink | null) {}

  plan(t: RouteTarget): RoutePlan {
    return this.chooser.plan(t);
  }

  attach(fd: number, plan: RoutePlan, via: FirstCandidate | null): number | null {
    const { mod } = loadNative();
    if (!mod) return null;
    // One getsockopt, no sock_diag: this sits between the connect and the client's reply.
    const info = mod.socketInfo(fd, false);
    if (!info.mptcp || info.fallback || !info.token) return null;
    const sf = info.subflows[0];
    const known: KnownConnection | undefined = sf
      ? { family: sf.family, localAddress: sf.localAddress, localPort: sf.localPort, remoteAddress: sf.remoteAddress, remotePort: sf.remotePort, iface: via?.iface ?? sf.interface }
      : undefined;
    this.sink()?.register(info.token, plan.wish, known);
    return info.token;
  }
}
