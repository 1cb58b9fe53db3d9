/**
 * Whose path manager makes the subflows in this network namespace: Braid's own (userspace, per
 * connection) when configured and possible, else the kernel's (from endpoints). Holds the
 * net.mptcp.path_manager setting while Braid is the path manager, and the policies taken over from
 * other programs' endpoints (see PolicyBoard.setAdoption). PathManager asks it before each reconcile.
 */
import { errorCode, errorMessage } from '../errors';
import * as netlink from '../native/netlink';
import type { PmEndpoint } from '../native/netlink';
import type { Logger } from '../proxy/session';
import type { PolicyBoard } from './effective';
import type { InterfaceState } from './inventory';
import type { PathManagerKind, PathPolicy, PathsConfig } from './policy';
import type { PathManagerSysctl } from './pm-sysctl';
import { isImplicit, type EndpointApi, type PolicyOf } from './reconcile';
import type { RouteChooser } from './route-choice';
import { UserspacePm, type SubflowApi } from './userspace-pm';
import { tcpSocketAbort } from '../native/kernel-socket';

const netlinkSubflows: SubflowApi = {
  create: (o) => netlink.subflowCreate(o),
  destroy: (o) => netlink.subflowDestroy(o),
  priority: (o) => netlink.subflowPriority(o),
  abort: (o) => tcpSocketAbort({ address: o.localAddress, port: o.localPort }, { address: o.remoteAddress, port: o.remotePort }, o.ifindex),
};

export interface PmModeOptions {
  config: () => PathsConfig;
  /** false with a stand-in endpoint API (tests): the real sysctl is never touched then */
  real: boolean;
  sysctl: PathManagerSysctl;
  board: PolicyBoard;
  chooser: RouteChooser;
  api: EndpointApi;
  /** ids of the endpoints Braid made (never adopted) */
  braidIds: () => Set<number>;
  subflows?: SubflowApi;
  log: Logger;
}

export class PmMode {
  mode: PathManagerKind = 'kernel';
  /** why the configured path manager is not the one in use, if it is not */
  note: string | null = null;
  /** another userspace path manager owns the namespace (mptcpd, another Braid): Braid hands off */
  foreign: string | null = null;
  /** Braid's own path manager, while it is the namespace's */
  upm: UserspacePm | null = null;
  private adopted = new Map<string, PathPolicy>();

  constructor(private readonly opts: PmModeOptions) {}

  /** Called before every reconcile, so a config change switches it; `hasEvents`: the MPTCP events are subscribed. */
  select(hasEvents: boolean): void {
    this.foreign = null;
    const cfg = this.opts.config();
    if (!(cfg.enabled && cfg.manager === 'userspace' && this.opts.real)) {
      this.leave(cfg.manager === 'userspace' && cfg.enabled && !this.opts.real ? 'not with a stand-in kernel' : null);
      return;
    }
    if (this.mode === 'userspace' && this.opts.sysctl.holding) return;
    if (!hasEvents) return this.leave('no MPTCP events here (they need CAP_NET_ADMIN)');
    try {
      this.opts.sysctl.take();
      this.mode = 'userspace';
      this.note = null;
      this.upm ??= new UserspacePm({
        api: this.opts.subflows ?? netlinkSubflows,
        paths: () => this.opts.chooser.paths(),
        reaches: (a) => this.opts.chooser.alternatives(a),
        maxSubflows: () => this.opts.config().maxSubflows,
        log: this.opts.log,
      });
      this.opts.log.info('paths: Braid is the MPTCP path manager here (net.mptcp.path_manager = userspace): subflows per connection');
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EPERM' || code === 'EACCES') this.leave(`cannot select the userspace path manager: ${errorMessage(err)}`);
      else if (code === 'EBUSY' || code === 'EEXIST') {
        this.leave(null);
        this.foreign = errorMessage(err);
      } else this.leave(`the userspace path manager is not available (${errorMessage(err)}); using the kernel's: secondary paths act as backup on every connection and rules choose only the first subflow`);
    }
  }

  leave(note: string | null): void {
    if (this.opts.sysctl.holding) {
      try {
        this.opts.sysctl.release();
      } catch (err) {
        this.opts.log.warn(`paths: could not put net.mptcp.path_manager back: ${errorMessage(err)}`);
      }
    }
    this.upm?.stop();
    this.upm = null;
    this.mode = 'kernel';
    this.note = note;
  }

  /** Someone else changed the setting while Braid held it: Braid stops acting as the path manager. */
  checkStillOurs(): void {
    if (this.mode !== 'userspace' || this.opts.sysctl.stillOurs() !== false) return;
    this.opts.log.warn('paths: net.mptcp.path_manager was changed by someone else; Braid no longer opens subflows per connection');
    this.opts.sysctl.forget();
    this.leave('net.mptcp.path_manager was changed by someone else while Braid ran');
  }

  /** Re-reads other programs' endpoints; true when the policies taken from them changed. */
  refreshAdoption(ifaces: InterfaceState[]): boolean {
    const before = JSON.stringify([...this.adopted]);
    if (this.mode !== 'userspace') {
      this.adopted.clear();
      this.opts.board.setAdoption(null);
      return before !== '[]';
    }
    let eps: PmEndpoint[];
    try {
      eps = this.opts.api.listEndpoints();
    } catch {
      return false; // keep what was known
    }
    const ours = this.opts.braidIds();
    const next = new Map<string, PathPolicy>();
    for (const i of ifaces) {
      const theirs = eps.filter((e) => !ours.has(e.id) && !isImplicit(e) && e.flagNames.includes('subflow') &&
        (e.ifindex === i.ifindex || i.addresses.some((a) => a.address === e.address)));
      if (theirs.length) next.set(i.name, theirs.every((e) => e.flagNames.includes('backup')) ? 'backup' : 'use');
    }
    this.adopted = next;
    this.opts.board.setAdoption((iface) => this.adopted.get(iface.name) ?? null);
    return JSON.stringify([...next]) !== before;
  }

  adoptedOn(iface: string): boolean {
    return this.adopted.has(iface);
  }

  /** The endpoints' policies: none while Braid is the path manager (they would do nothing). */
  policyOf(): PolicyOf {
    return this.mode === 'userspace' ? () => 'off' : (i) => this.opts.board.policyOf(i).policy;
  }
}
