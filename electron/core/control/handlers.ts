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
  ConnectionView, EventName, Events, Handlers, PathsView, PmEventView, ProxyView, RelayView, StatusView, SystemProxyView,
} from '../contract';
import { BraidError, errorCode, errorMessage } from '../errors';
import { loadNative, mptcpUnavailableReason } from '../proxy/native';
import type { ConnectionSnapshot } from '../proxy/tracker';
import type { PathStatus } from '../paths/manager';
import { parseRelayLink } from '../relay/share-link';
import type { BraidService } from '../service';
import { pathKey } from '../stats/engine';

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

function pathsView(s: PathStatus | null): PathsView {
  if (!s) {
    return { managed: false, reason: 'path management is off (braid up --paths off, or no native addon)', interfaces: [], foreign: [], limits: null };
  }
  return {
    managed: s.managed,
    reason: s.reason,
    interfaces: s.interfaces.map((i) => ({
      name: i.name, kind: i.kind, up: i.up, addresses: i.addresses, defaultRoute: i.defaultRoute, ssid: i.ssid, signal: i.signal,
      policy: i.policy, policyExplicit: i.policyExplicit, state: i.state, endpoints: i.endpoints,
    })),
    foreign: s.foreign.map((e) => ({ id: e.id, address: e.address, flagNames: e.flagNames, ifname: e.ifname })),
    limits: s.limits,
  };
}

export class ControlCore {
  readonly bus: EventBus = new EventEmitter() as EventBus;
  readonly handlers: Handlers;
  systemProxy: SystemProxyControl | null = null;
  private unhook: (() => void)[] = [];

  constructor(private readonly service: BraidService) {
    this.bus.setMaxListeners(0);
    // The contract's 'error' event is a report for whoever listens; an EventEmitter throws an
    // unheard 'error', which with no API client (--control off) took the process down.
    this.bus.on('error', () => {});
    this.handlers = this.makeHandlers();
    this.wire();
  }

  close(): void {
    for (const u of this.unhook.splice(0)) u();
  }

  connectionView(c: ConnectionSnapshot): ConnectionView {
    const subflows = this.service.stats.subflowsOf(c.id);
    return {
      id: c.id,
      client: `${c.client.address}:${c.client.port}`,
      protocol: c.protocol,
      destination: c.destination ? `${c.destination.host}:${c.destination.port}` : null,
      address: c.destination?.address ?? null,
      startedAt: c.startedAt,
      bytesUp: c.bytesUp,
      bytesDown: c.bytesDown,
      transport: c.transport,
      paths: [...new Set(subflows.map(pathKey))],
      subflows,
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
      proxy: this.proxyView(),
      relay: this.relayView(),
      paths: pathsView(this.service.paths?.status() ?? null),
      connections: { active: this.service.proxy?.tracker.size ?? 0, total: this.service.connectionsTotal },
      systemProxy: this.systemProxy?.view() ?? { enabled: false, backend: null, error: 'not available in this mode (use braid up --system-proxy, or the desktop app)' },
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
      'paths.list': async () => pathsView(svc.paths ? await svc.paths.detailedStatus() : null),
      'paths.setPolicy': async ({ interface: iface, policy }) => {
        await svc.updateConfig({ paths: { interfaces: { ...svc.config.paths.interfaces, [iface]: policy } } });
        return pathsView(svc.paths?.status() ?? null);
      },
      'connections.list': () => (svc.proxy?.tracker.list() ?? []).map((c) => this.connectionView(c)),
      'connections.close': ({ id }) => {
        const c = svc.proxy?.tracker.get(id);
        if (!c) throw new BraidError('ENOENT', `no live connection with id ${id}`);
        return { closed: c.kill() };
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
      this.on(svc.paths, 'changed', (s: PathStatus) => bus.emit('paths.changed', pathsView(s)));
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
  if (code === 'EBADPARAMS' || code === 'ECONFIG' || code === 'EBADLINK' || code === 'EUSAGE') return 400;
  if (code === 'ENOENT') return 404;
  if (code === 'ENOTSUP') return 501;
  return 500;
}

export function errorBody(err: unknown): { code: string; message: string } {
  return { code: errorCode(err), message: errorMessage(err) };
}
