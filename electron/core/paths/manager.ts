/**
 * Path management, event driven: rtnetlink tells us when links and addresses come and go, and the
 * reconciler brings the kernel's MPTCP endpoints in line with the policy. Nothing polls.
 *
 * Changing endpoints needs CAP_NET_ADMIN. Without it the manager says why in its status and keeps
 * reporting what exists; the proxy keeps working with whatever endpoints are there.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import * as netlink from '../native/netlink';
import type { PmEndpoint, PmEvent, PmLimits, WatchHandle } from '../native/netlink';
import { errorCode, errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import { snapshot, withWifiDetails, type InterfaceState } from './inventory';
import type { PathPolicy, PathsConfig, PathManagerKind } from './policy';
import { netlinkApi } from './endpoint-api';
import { PolicyBoard, type EffectivePolicy } from './effective';
import { interfaceOutcome, userspaceOutcome } from './outcome';
import { PathManagerSysctl, pmSysctlRecordFile } from './pm-sysctl';
import { PmMode } from './pm-mode';
import { desiredEndpoints, plan, Reconciler, type EndpointApi, type ReconcileReport } from './reconcile';
import { endpointsRecordFile, pathsStamp, removeManagerRecord, writeManagerRecord, type ManagerRecord } from './records';
import { RouteChooser } from './route-choice';
import type { SubflowApi, UserspacePm } from './userspace-pm';
import type { InterfaceState as Iface } from './inventory';

export type PathState = 'active' | 'secondary' | 'backup' | 'off' | 'down' | 'no-address' | 'managed-elsewhere' | 'unmanaged';


export interface EndpointView {
  id: number;
  address: string;
  flags: string[];
  owner: 'braid' | 'elsewhere';
}

export interface PathView extends InterfaceState {
  /** the configured policy (or the default for its kind) */
  policy: PathPolicy;
  policyExplicit: boolean;
  /** what it may carry now: the policy, lowered by a demotion (effective.ts) */
  effective: PathPolicy;
  demotion: EffectivePolicy['demotion'];
  state: PathState;
  endpoints: EndpointView[];
  /** What path management last did for this interface, in words (see outcome.ts); null before. */
  note: string | null;
}

export interface PathStatus {
  managed: boolean;            // we can and do change endpoints
  reason: string | null;       // why not, in words a user can act on
  /** whose path manager makes the subflows: Braid's, per connection, or the kernel's from endpoints */
  manager: PathManagerKind;
  /** why the configured path manager is not the one in use, if it is not */
  managerNote: string | null;
  interfaces: PathView[];
  foreign: PmEndpoint[];       // endpoints on this host that Braid did not create
  limits: PmLimits | null;
  lastReport: ReconcileReport | null;
}

export interface PathManagerEvents {
  changed: [PathStatus];
  reconciled: [ReconcileReport];
  /** The kernel's MPTCP connection and subflow events (needs CAP_NET_ADMIN to subscribe). */
  mptcp: [PmEvent];
}

export const PRIVILEGE_HELP =
  'path management needs CAP_NET_ADMIN: run `sudo braid paths daemon` (or install the braid-paths systemd unit, see README "Path management"), or run braid up as root. Until then Braid uses the MPTCP endpoints that already exist.';

export const DISABLED_REASON = 'path management is disabled in the config (paths.enabled = false)';

/** How often the endpoints are checked against the policy: the kernel sends no event when someone else deletes or adds one. */
const VERIFY_MS = 5000;

/** Whether this process may change MPTCP endpoints (CAP_NET_ADMIN, bit 12 of CapEff). */
export function hasNetAdmin(): boolean {
  try {
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
    return eff !== undefined && (BigInt(`0x${eff}`) & (1n << 12n)) !== 0n;
  } catch {
    return false;
  }
}

export interface PathManagerOptions {
  config: () => PathsConfig;
  stateDir: string | null;
  log: Logger;
  api?: EndpointApi;
  debounceMs?: number;
  /** the effective policies (shared with the dialer); one is made when not given */
  board?: PolicyBoard;
  chooser?: RouteChooser;
  subflows?: SubflowApi;
}

export class PathManager extends EventEmitter<PathManagerEvents> {
  private readonly api: EndpointApi;
  private readonly reconciler: Reconciler;
  private watch: WatchHandle | null = null;
  private pmWatch: WatchHandle | null = null;
  private timer: NodeJS.Timeout | null = null;
  private managed = true;
  private reason: string | null = null;
  private lastReport: ReconcileReport | null = null;
  private started = false;
  /** stop() ran: nothing may add an endpoint again (a late policy event would, after the cleanup). */
  private stopped = false;
  private verifyTimer: NodeJS.Timeout | null = null;
  private readonly notes = new Map<string, { policy: PathPolicy; note: string }>();
  readonly board: PolicyBoard;
  readonly chooser: RouteChooser;
  private readonly pm: PmMode;

  constructor(private readonly opts: PathManagerOptions) {
    super();
    this.api = opts.api ?? netlinkApi;
    const real = this.api === netlinkApi;
    this.reconciler = new Reconciler(this.api, opts.stateDir ? endpointsRecordFile(opts.stateDir) : null, { guard: real });
    this.board = opts.board ?? new PolicyBoard(() => opts.config());
    this.chooser = opts.chooser ?? new RouteChooser({ board: this.board, config: () => opts.config() });
    // A stand-in endpoint API means a test driving this without the real kernel: never the real sysctl.
    const sysctl = new PathManagerSysctl(real && opts.stateDir ? pmSysctlRecordFile(opts.stateDir) : null, { guard: real });
    this.pm = new PmMode({
      config: opts.config, real, sysctl, board: this.board, chooser: this.chooser, api: this.api,
      braidIds: () => this.reconciler.braidIds(), subflows: opts.subflows, log: opts.log,
    });
    this.board.on('changed', () => this.schedule());
  }

  get pathManager(): PathManagerKind {
    return this.pm.mode;
  }

  /** Braid's own path manager, while it is the namespace's (mode 'userspace') */
  get upm(): UserspacePm | null {
    return this.pm.upm;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    if (!this.opts.config().enabled) {
      this.managed = false;
      this.reason = DISABLED_REASON;
    }
    this.watch = netlink.linkWatch((ev) => {
      if (ev.kind === 'error') this.opts.log.warn(`link watch failed: ${ev.message}`);
      this.chooser.invalidate();
      this.schedule();
    });
    this.watch.unref();
    try {
      this.pmWatch = netlink.pmEvents((ev) => {
        if (ev.type === 'overflow') this.opts.log.warn('paths: MPTCP events were lost (queue overflow); connections opened meanwhile may miss subflows');
        this.upm?.onEvent(ev);
        this.emit('mptcp', ev);
      });
      this.pmWatch.unref();
    } catch (err) {
      // Without CAP_NET_ADMIN there are no MPTCP events; the rest of path status still works.
      this.opts.log.debug(`no MPTCP events: ${errorMessage(err)}`);
    }
    this.reconcileNow();
    this.verifyTimer = setInterval(() => this.verify(), VERIFY_MS);
    this.verifyTimer.unref();
  }

  /**
   * Converges after changes nobody announces: an endpoint deleted or added by hand (`ip mptcp
   * endpoint delete`), a kernel-made implicit endpoint. One netlink dump plus the interface read;
   * a reconcile only when the plan has something to do.
   */
  private verify(): void {
    const cfg = this.opts.config();
    if (!cfg.enabled || !this.managed) return;
    try {
      this.pm.checkStillOurs();
      const ifaces = snapshot();
      const adoptionChanged = this.pm.refreshAdoption(ifaces);
      const p = plan(desiredEndpoints(ifaces, cfg, this.pm.policyOf()), this.api.listEndpoints(), this.reconciler.owned);
      if (p.steps.length > 0 || p.forget.length > 0 || adoptionChanged) this.reconcileNow();
      else this.upm?.refresh();
    } catch (err) {
      this.opts.log.debug(`paths check: ${errorMessage(err)}`);
    }
  }

  /** Re-reads the interfaces and applies the policy (also after a policy change). */
  reconcileNow(): ReconcileReport | null {
    if (this.stopped) return null;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const cfg = this.opts.config();
    this.chooser.invalidate();
    if (this.started) this.pm.select(this.pmWatch !== null);
    if (!cfg.enabled || this.pm.foreign) {
      // Switched off while running (the config file changed): what we created goes, as at shutdown.
      if (this.reconciler.owned.size > 0) {
        const r = this.reconciler.cleanup();
        for (const o of r.removed) this.opts.log.info(`paths: endpoint ${o.address} id ${o.id} removed`);
        if (r.error) this.opts.log.warn(`paths cleanup: ${r.error.message}`);
      }
      this.managed = false;
      this.reason = this.pm.foreign ?? DISABLED_REASON;
      this.noteOutcomes(snapshot(), cfg, null);
      this.writeRecord();
      this.emit('changed', this.status());
      return null;
    }
    const ifaces = snapshot();
    this.pm.refreshAdoption(ifaces);
    const report = this.reconciler.apply(ifaces, cfg, this.pm.policyOf(), { limits: this.pm.mode === 'kernel' });
    this.lastReport = report;
    if (report.error) {
      if (report.error.code === 'EPERM') {
        if (this.managed) this.opts.log.warn(PRIVILEGE_HELP);
        this.managed = false;
        this.reason = PRIVILEGE_HELP;
      } else {
        this.opts.log.warn(`path reconcile failed: ${report.error.message}`);
        this.reason = `last change failed: ${report.error.message}`;
      }
    } else {
      this.managed = true;
      this.reason = null;
    }
    this.noteOutcomes(ifaces, cfg, report);
    this.writeRecord();
    this.upm?.refresh();
    for (const o of report.added) this.opts.log.info(`paths: endpoint ${o.address} id ${o.id} added${o.backup ? ' (backup)' : ''}`);
    for (const o of report.removed) this.opts.log.info(`paths: endpoint ${o.address} id ${o.id} removed`);
    for (const o of report.changed) this.opts.log.info(`paths: endpoint ${o.address} id ${o.id} now ${o.backup ? 'backup' : 'in use'}`);
    this.emit('reconciled', report);
    this.emit('changed', this.status());
    return report;
  }

  private noteOutcomes(ifaces: Iface[], cfg: PathsConfig, report: ReconcileReport | null): void {
    let endpoints: PmEndpoint[] = [];
    try {
      endpoints = this.api.listEndpoints();
    } catch {
      /* the outcomes then say "not added" with the reconcile's error */
    }
    this.notes.clear();
    const unmanagedReason = !cfg.enabled ? DISABLED_REASON : this.pm.foreign ?? (this.managed ? null : this.reason);
    for (const iface of ifaces) {
      const eff = this.board.policyOf(iface);
      const note = this.pm.mode === 'userspace' && !unmanagedReason
        ? userspaceOutcome(iface, eff, this.pm.adoptedOn(iface.name))
        : interfaceOutcome({ iface, policy: eff.policy, endpoints, owned: this.reconciler.owned, report, unmanagedReason }) + (eff.policy === 'secondary' ? ' (acts as backup: the kernel path manager applies it to every connection)' : '');
      this.notes.set(iface.name, { policy: eff.configured, note });
    }
    this.configStamp = pathsStamp(cfg);
  }

  private configStamp: string | null = null;

  status(): PathStatus {
    const cfg = this.opts.config();
    let endpoints: PmEndpoint[] = [];
    let limits: PmLimits | null = null;
    try {
      endpoints = this.api.listEndpoints();
      limits = this.api.getLimits();
    } catch (err) {
      this.reason ??= `cannot read MPTCP endpoints: ${errorMessage(err)}`;
    }
    const ours = this.reconciler.braidIds();
    const views = snapshot().map((i): PathView => {
      const eff = this.board.policyOf(i);
      const { configured: policy, explicit, policy: effective } = eff;
      const eps = endpoints
        .filter((e) => e.ifindex === i.ifindex || i.addresses.some((a) => a.address === e.address))
        .map((e): EndpointView => ({ id: e.id, address: e.address, flags: e.flagNames, owner: ours.has(e.id) ? 'braid' : 'elsewhere' }));
      let state: PathState;
      if (!i.up) state = 'down';
      else if (i.addresses.length === 0) state = 'no-address';
      // With Braid as the path manager, endpoints are inert: its policy (or one adopted from them) rules.
      else if (this.pm.mode === 'kernel' && eps.some((e) => e.owner === 'elsewhere') && !eps.some((e) => e.owner === 'braid')) state = 'managed-elsewhere';
      else if (effective === 'off') state = 'off';
      else if (!this.managed || !cfg.enabled) state = 'unmanaged';
      else state = effective === 'backup' ? 'backup' : effective === 'secondary' ? 'secondary' : 'active';
      return { ...i, policy, policyExplicit: explicit, effective, demotion: eff.demotion, state, endpoints: eps, note: this.notes.get(i.name)?.note ?? null };
    });
    return {
      managed: this.managed && cfg.enabled,
      reason: this.reason,
      manager: this.pm.mode,
      managerNote: this.pm.note,
      interfaces: views,
      foreign: endpoints.filter((e) => !ours.has(e.id)),
      limits,
      lastReport: this.lastReport,
    };
  }

  /** status() plus WiFi SSID/signal, which needs a subprocess and is therefore async. */
  async detailedStatus(): Promise<PathStatus> {
    const s = this.status();
    const withWifi = await withWifiDetails(s.interfaces);
    return { ...s, interfaces: s.interfaces.map((v, i) => ({ ...v, ssid: withWifi[i].ssid, signal: withWifi[i].signal })) };
  }

  /** Removes our endpoints and stops watching. */
  stop(): ReconcileReport {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.verifyTimer) clearInterval(this.verifyTimer);
    this.verifyTimer = null;
    this.watch?.close();
    this.watch = null;
    this.pmWatch?.close();
    this.pmWatch = null;
    this.started = false;
    this.pm.leave(null);
    const report = this.reconciler.cleanup();
    if (report.error && errorCode(report.error) !== 'EPERM') this.opts.log.warn(`paths cleanup: ${report.error.message}`);
    if (this.opts.stateDir) removeManagerRecord(this.opts.stateDir);
    return report;
  }

  private writeRecord(): void {
    if (!this.opts.stateDir || !this.started) return;
    const rec: ManagerRecord = {
      pid: process.pid,
      managed: this.managed,
      reason: this.reason,
      at: new Date().toISOString(),
      configStamp: this.configStamp ?? undefined,
      interfaces: Object.fromEntries(this.notes),
      manager: this.pm.mode,
      managerNote: this.pm.note,
    };
    writeManagerRecord(this.opts.stateDir, rec);
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    // Link events come in bursts (link up, then each address, then routes): reconcile once per burst.
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.reconcileNow();
      } catch (err) {
        this.opts.log.warn(`path reconcile crashed: ${errorMessage(err)}`);
      }
    }, this.opts.debounceMs ?? 100);
  }
}
