/**
 * The handler table behind every transport of the control contract (HTTP, WebSocket, Electron
 * IPC), and the event bus they all stream from. Transports only move frames; what a command does is
 * decided here, once.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { ValidationError } from '../contract';
import type {
  ConnectionView, EventName, Events, Handlers, InterfaceView, PathRuleView, PathsView, PmEventView, ProxyView, RelayView, StatusView, SystemProxyView, UsageView,
} from '../contract';
import { DoctorRunner } from '../doctor/runner';
import { BraidError, errorCode, errorMessage } from '../errors';
import { loadNative, mptcpUnavailableReason } from '../proxy/native';
import type { ConnectionSnapshot } from '../proxy/tracker';
import type { PathStatus } from '../paths/manager';
import { validateCaps, validateRules } from '../config/schema';
import { parseRelayLink } from '../relay/share-link';
import type { BraidService } from '../service';
import { pathKey } from '../stats/engine';
import { cgroupDir } from '../transparent/cgroup';

export type EventBus = EventEmitter<{ [K in EventName]: [Events[K]] }>;

/** Turns on/off the system proxy; provided by whoever can (the desktop app, `braid up`). */
export interface SystemProxyControl {
  view(): SystemProxyView;
  set(enabled: boolean): Promise<SystemProxyView>;
}

const VERSION: string = (() => {
  try {
    let dir = __dirname;
    for (let i = 0; i < 8; i++, dir = path.dirname(dir)) {
      const f = path.join(dir, 'package.json');
      if (fs.existsSync(f)) return (JSON.parse(fs.readFileSync(f, 'utf8')) as { version?: string }).version ?? '0.0.0';
    }
  } catch {
    /* fall through */
  }
  return '0.0.0';
})();

/** What the running service adds to each interface: its data use and cap, its measured quality. */
export type PathExtras = (name: string) => Pick<InterfaceView, 'usage' | 'quality'>;

function pathsView(s: PathStatus | null, rules: PathRuleView[], extras: PathExtras = () => ({})): PathsView {
  if (!s) {
    return { managed: false, reason: 'path management is off (braid up --paths off, or no native addon)', manager: null, managerNote: null, rules, interfaces: [], foreign: [], limits: null };
  }
  return {
    managed: s.managed,
    reason: s.reason,
    manager: s.manager,
    managerNote: s.managerNote,
    rules,
    interfaces: s.interfaces.map((i) => ({
      name: i.name, kind: i.kind, up: i.up, addresses: i.addresses, defaultRoute: i.defaultRoute, ssid: i.ssid, signal: i.signal,
      policy: i.policy, policyExplicit: i.policyExplicit, effective: i.effective, demotion: i.demotion, state: i.state, endpoints: i.endpoints, note: i.note,
      ...extras(i.name),
    })),
    foreign: s.foreign.map((e) => ({ id: e.id, address: e.address, flagNames: e.flagNames, ifname: e.ifname })),
    limits: s.limits,
  };
}

export class ControlCore {
  readonly bus: EventBus = new EventEmitter() as EventBus;
  readonly handlers: Handlers;
  systemProxy: SystemProxyControl | null = null;
  readonly doctor: DoctorRunner;
  private unhook: (() => void)[] = [];

  constructor(private readonly service: BraidService) {
    this.bus.setMaxListeners(0);
    // The contract's 'error' event is a report for whoever listens; an EventEmitter would throw it
    // when no one does (braid up --control off), which took braid up down on a busy port.
    this.bus.on('error', () => {});
    // The tray and `braid status` show the last diagnosis: its end changes the status.
    this.doctor = new DoctorRunner(service, this.bus, (c) => this.connectionView(c), () => void this.bus.emit('status.changed', this.status()));
    this.handlers = this.makeHandlers();
    this.wire();
  }

  close(): void {
    for (const u of this.unhook.splice(0)) u();
  }

  private readonly extras: PathExtras = (name) => {
    const q = this.service.quality.of(name);
    return {
      usage: this.service.usageOf(name),
      quality: q ? { rttMs: q.rttMs, rttVarMs: q.rttVarMs, retransPercent: q.retransPercent, sampledAt: q.sampledAt, demoted: q.demoted, reason: q.reason } : null,
    };
  };

  usageView(): UsageView {
    const svc = this.service;
    // Interfaces that carried something or have a cap (not every interface: no netlink dump per poll).
    const names = new Set([...svc.usage.interfaces(), ...Object.keys(svc.config.paths.caps)]);
    return { interfaces: [...names].sort().map((n) => svc.usageOf(n)), days: svc.usage.history() };
  }

  connectionView(c: ConnectionSnapshot): ConnectionView {
    const subflows = this.service.stats.subflowsOf(c.id);
    return {
      id: c.id,
      client: `${c.client.address}:${c.client.port}`,
      program: c.program,
      protocol: c.protocol,
      destination: c.destination ? `${c.destination.host}:${c.destination.port}` : null,
      address: c.destination?.address ?? null,
      startedAt: c.startedAt,
      bytesUp: c.bytesUp,
      bytesDown: c.bytesDown,
      transport: c.transport,
      paths: [...new Set(subflows.map(pathKey))],
      subflows,
      route: c.route ? { rule: c.route.rule, via: c.route.via, note: c.route.note, secondary: c.route.state } : null,
    };
  }

  proxyView(): ProxyView {
    const p = this.service.proxy;
    const addr = p?.address ?? null;
    const why = loadNative().mod ? mptcpUnavailableReason() : 'native addon not loaded';
    return {
      running: addr !== null,
      listen: addr ? (addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`) : null,
      dial: p?.dialMode ?? this.service.config.proxy.dial,
      mptcp: { supported: why === null, reason: why },
    };
  }

  relayView(): RelayView | null {
    const link = this.service.config.relay.link;
    if (!link) return null;
    const l = parseRelayLink(link);
    const err = this.service.relay?.status ?? null;
    return { host: l.host, port: l.port, name: l.name ?? null, pin: l.pin, state: !this.service.relay ? 'unused' : err ? 'error' : 'ok', error: err };
  }

  status(): StatusView {
    return {
      version: VERSION,
      pid: process.pid,
      proxy: this.proxyView(),
      relay: this.relayView(),
      paths: pathsView(this.service.paths?.status() ?? null, this.service.config.paths.rules, this.extras),
      connections: { active: this.service.proxy?.tracker.size ?? 0, total: this.service.connectionsTotal },
      systemProxy: this.systemProxy?.view() ?? { enabled: false, backend: null, error: 'not available in this mode (use braid up --system-proxy, or the desktop app)' },
      systemChanges: this.service.systemChanges(),
      transparent: this.service.transparent.view(),
      doctor: this.doctor.summary(),
    };
  }

  private makeHandlers(): Handlers {
    const svc = this.service;
    return {
      status: () => this.status(),
      'proxy.start': async () => {
        await svc.startProxy();
        return this.proxyView();
      },
      'proxy.stop': async () => {
        await svc.stopProxy();
        return this.proxyView();
      },
      'paths.list': async () => pathsView(svc.paths ? await svc.paths.detailedStatus() : null, svc.config.paths.rules, this.extras),
      'paths.setPolicy': async ({ interface: iface, policy }) => {
        await svc.updateConfig({ paths: { interfaces: { ...svc.config.paths.interfaces, [iface]: policy } } });
        return pathsView(svc.paths?.status() ?? null, svc.config.paths.rules, this.extras);
      },
      'paths.setRules': async ({ rules }) => {
        // Checked before anything is saved: a bad rule is refused naming its place (rules[2].match.cidr).
        const checked = validateRules(rules, 'rules');
        await svc.updateConfig({ paths: { rules: checked } });
        return pathsView(svc.paths?.status() ?? null, svc.config.paths.rules, this.extras);
      },
      'paths.usage': () => this.usageView(),
      'paths.setCap': async ({ interface: iface, cap }) => {
        const caps = { ...svc.config.paths.caps };
        if (cap === null) delete caps[iface];
        else caps[iface] = cap;
        // Checked as the config file's paths.caps before anything is saved (a bad field is named).
        await svc.updateConfig({ paths: { caps: validateCaps(caps, 'caps') } });
        svc.caps.evaluate();
        return pathsView(svc.paths?.status() ?? null, svc.config.paths.rules, this.extras);
      },
      'paths.quality': () => Object.fromEntries(svc.quality.list().map(({ path: p, ...q }) => [p, q])),
      'stats.programs': () => svc.stats.byProgram(),
      'connections.list': () => (svc.proxy?.tracker.list() ?? []).map((c) => this.connectionView(c)),
      'connections.close': ({ id }) => {
        const c = svc.proxy?.tracker.get(id);
        if (!c) throw new BraidError('ENOENT', `no live connection with id ${id}`);
        return { closed: c.kill() };
      },
      'connections.closeMany': ({ ids }) => {
        let closed = 0;
        for (const id of new Set(ids)) if (svc.proxy?.tracker.get(id)?.kill()) closed++;
        return { closed };
      },
      'config.get': () => svc.config,
      'config.set': ({ patch }) => {
        // The contract takes any JSON here; the config schema names bad fields, but only inside an object.
        if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
          throw new ValidationError('patch', `must be an object of config sections, got ${patch === null ? 'null' : Array.isArray(patch) ? 'an array' : typeof patch}`);
        }
        return svc.updateConfig(patch);
      },
      'relay.import': async ({ link }) => {
        parseRelayLink(link); // a clear EBADLINK before anything changes
        await svc.updateConfig({ relay: { link } });
        return this.relayView()!;
      },
      'relay.clear': async () => {
        await svc.updateConfig({ relay: { link: null } });
        return null;
      },
      'stats.history': ({ seconds }) => svc.stats.recent(seconds),
      'transparent.set': async ({ enabled }) => {
        const before = svc.config.transparent.enabled;
        await svc.updateConfig({ transparent: { enabled } });
        try {
          return await svc.transparent.syncOrThrow();
        } catch (err) {
          // Not in effect: the config must not claim it is (it would fail again at every start).
          if (before !== enabled) await svc.updateConfig({ transparent: { enabled: before } });
          throw err;
        }
      },
      'run.attach': async ({ cgroup, level, pid }) => {
        // Only a cgroup the asking program is really in: no redirecting someone else's processes.
        const procs = readCgroupProcs(cgroup);
        if (!procs.includes(pid)) throw new BraidError('EBADCGROUP', `process ${pid} is not in cgroup ${cgroup}`);
        const { id } = await svc.transparent.attach({ path: cgroup, level }, pid);
        return { id };
      },
      'run.detach': async ({ id }) => ({ detached: await svc.transparent.detach(id) }),
      'doctor.run': (params) => this.doctor.run(params),
      'doctor.last': () => this.doctor.lastReport,
      'systemProxy.set': async ({ enabled }) => {
        if (!this.systemProxy) throw new BraidError('ENOTSUP', 'system proxy control is not available in this mode (use braid up --system-proxy, or the desktop app)');
        return this.systemProxy.set(enabled);
      },
    };
  }

  private on<E extends EventEmitter>(emitter: E, event: string, fn: (...args: never[]) => void): void {
    emitter.on(event, fn as never);
    this.unhook.push(() => emitter.off(event, fn as never));
  }

  private wire(): void {
    const svc = this.service;
    const bus = this.bus;
    this.on(svc.stats, 'tick', (t) => bus.emit('stats', t));
    const hookTracker = (): void => {
      const tracker = svc.proxy?.tracker;
      if (!tracker) return;
      const opened = (c: ConnectionSnapshot) => bus.emit('connection.opened', this.connectionView(c));
      const closed = (c: ConnectionSnapshot) => bus.emit('connection.closed', this.connectionView(c));
      this.on(tracker, 'opened', opened);
      this.on(tracker, 'closed', closed);
    };
    hookTracker();
    const statusChanged = (): void => void bus.emit('status.changed', this.status());
    this.on(svc, 'proxy.started', () => {
      hookTracker();
      statusChanged();
    });
    this.on(svc, 'proxy.stopped', statusChanged);
    this.on(svc, 'config.changed', statusChanged);
    this.on(svc, 'problem', (e) => bus.emit('error', e));
    if (svc.paths) {
      this.on(svc.paths, 'changed', (s: PathStatus) => bus.emit('paths.changed', pathsView(s, svc.config.paths.rules, this.extras)));
      this.on(svc.paths, 'mptcp', (e: Record<string, unknown> & { type: string }) => {
        const view: PmEventView = {
          type: e.type,
          token: typeof e.token === 'number' ? e.token : null,
          saddr: typeof e.saddr === 'string' ? e.saddr : null,
          daddr: typeof e.daddr === 'string' ? e.daddr : null,
          sport: typeof e.sport === 'number' ? e.sport : null,
          dport: typeof e.dport === 'number' ? e.dport : null,
          ifname: typeof e.ifname === 'string' ? e.ifname : null,
          backup: typeof e.backup === 'boolean' ? e.backup : null,
        };
        bus.emit('mptcp.event', view);
      });
    }
  }
}

/** HTTP-ish status for an error a handler threw. */
export function statusForError(err: unknown): number {
  const code = errorCode(err);
  if (code === 'EBADPARAMS' || code === 'ECONFIG' || code === 'EBADLINK' || code === 'EUSAGE' || code === 'EBADCGROUP') return 400;
  if (code === 'ENOENT') return 404;
  if (code === 'ENOTSUP') return 501;
  if (code === 'EBUSY') return 409;
  return 500;
}

export function errorBody(err: unknown): { code: string; message: string } {
  return { code: errorCode(err), message: errorMessage(err) };
}

function readCgroupProcs(nftPath: string): number[] {
  try {
    return fs.readFileSync(path.join(cgroupDir(nftPath), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    throw new BraidError('EBADCGROUP', `cgroup ${nftPath} does not exist under /sys/fs/cgroup`);
  }
}
