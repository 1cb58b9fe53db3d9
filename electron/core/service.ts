/**
 * Braid's core, assembled: the proxy, the relay client, path management, and (as they are added)
 * statistics and the control API. The headless CLI, the Electron main process and the tests all
 * run this one object, so what the desktop does is what `braid up` does.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { BraidConfig, ConfigInput } from './config/schema';
import { mergeConfigInput, validateConfig } from './config/schema';
import { updateConfigFile } from './config/load';
import { BraidError, errorCode, errorMessage } from './errors';
import { guardianDir } from './guardian/record';
import { describeLiveChanges, type SystemChange } from './guardian/restorers';
import { PolicyBoard } from './paths/effective';
import { hasNetAdmin, PathManager } from './paths/manager';
import { HelperSink } from './paths/helper-sink';
import { PathMeter } from './paths/path-meter';
import { CapController, capPeriod, type CapState } from './paths/caps';
import { classify, readSysfs, type InterfaceKind } from './paths/kinds';
import { QualityJudge } from './paths/quality';
import { testClock, UsageMeter, usageFile } from './paths/usage';
import type { PathUsageView } from './contract';
import { RouteChooser } from './paths/route-choice';
import { PathRouting, type ConnectionSink } from './paths/routing';
import { SecondaryController } from './paths/secondary';
import type { Dialer } from './proxy/dialer';
import { loadNative } from './proxy/native';
import { ProxyServer } from './proxy/server';
import type { Logger } from './proxy/session';
import { RelayDialer } from './relay/client';
import { parseRelayLink } from './relay/share-link';
import { pathKey, StatsEngine } from './stats/engine';
import { TransparentMode } from './transparent/mode';

export interface ServiceOptions {
  config: BraidConfig;
  configFile: string | null;   // where changes made at run time are persisted (null: not persisted)
  stateDir: string | null;
  log: Logger;
  managePaths?: boolean;       // default: config.paths.enabled
}

export interface ServiceEvents {
  'proxy.started': [net.AddressInfo];
  'proxy.stopped': [];
  'config.changed': [BraidConfig];
  // not 'error': an EventEmitter throws on an unheard 'error', and these are reports, not failures
  problem: [{ code: string; message: string; source: string }];
}

export class BraidService extends EventEmitter<ServiceEvents> {
  config: BraidConfig;
  proxy: ProxyServer | null = null;
  relay: RelayDialer | null = null;
  readonly paths: PathManager | null;
  readonly stats: StatsEngine;
  /** what each interface may carry now (configured policy overlaid with demotions) */
  readonly board: PolicyBoard;
  readonly routing: PathRouting;
  readonly secondary: SecondaryController;
  /** Where connections' wishes go when no path manager runs in this process (the privileged helper's). */
  externalSink: (ConnectionSink & { close?(): void }) | null = null;
  readonly transparent: TransparentMode;
  /** Connections since start, including closed ones. */
  connectionsTotal = 0;
  /** data used per interface per day, and the caps on it */
  readonly usage: UsageMeter;
  readonly caps: CapController;
  readonly quality: QualityJudge;
  private readonly kinds = new Map<string, InterfaceKind>();

  constructor(private readonly opts: ServiceOptions) {
    super();
    this.config = opts.config;
    const manage = opts.managePaths ?? opts.config.paths.enabled;
    this.board = new PolicyBoard(() => this.config.paths);
    const meter = new PathMeter();
    const chooser = new RouteChooser({ board: this.board, config: () => this.config.paths, measure: (n) => meter.measure(n) });
    this.paths = manage && loadNative().mod
      ? new PathManager({ config: () => this.config.paths, stateDir: opts.stateDir, log: opts.log, board: this.board, chooser })
      : null;
    this.stats = new StatsEngine(() => this.proxy?.tracker ?? null);
    this.stats.on('tick', (t) => meter.feed(t));
    // Endpoints or links changed: idle connections' subflows may have too (the engine reads those rarely).
    this.paths?.on('changed', () => this.stats.refreshIdle());
    this.usage = new UsageMeter({ file: opts.stateDir ? usageFile(opts.stateDir) : null, log: opts.log, now: testClock() });
    this.caps = new CapController({ usage: this.usage, board: this.board, caps: () => this.config.paths.caps });
    this.caps.on('reached', (c) => opts.log.warn(`paths: ${c.iface} reached its data cap (${c.used} bytes used since ${c.from}); ${c.cap.atCap} until ${c.until}`));
    this.caps.on('lifted', (c) => opts.log.info(`paths: ${c.iface} data cap lifted: ${c.why}`));
    this.quality = new QualityJudge({
      board: this.board,
      config: () => this.config.paths.quality,
      isUse: (p) => {
        const eff = this.board.policyOf({ name: p, kind: this.kindOf(p) });
        return eff.configured === 'use' && (eff.demotion === null || eff.demotion.source === 'quality');
      },
      log: opts.log,
    });
    this.stats.observe(this.usage);
    this.stats.observe(this.quality);
    // Without CAP_NET_ADMIN, Braid's own path manager cannot run here: the helper's takes its wishes.
    const privileged = hasNetAdmin();
    const sink = (): ConnectionSink | null => {
      if (this.paths?.upm) return this.paths.upm;
      if (this.externalSink || privileged || !this.paths || this.config.paths.manager !== 'userspace') return this.externalSink;
      return (this.externalSink = new HelperSink(opts.log));
    };
    this.routing = new PathRouting(chooser, sink);
    this.secondary = new SecondaryController({
      tracker: () => this.proxy?.tracker ?? null,
      meter,
      sink,
      pathsOf: (id) => [...new Set(this.stats.subflowsOf(id).map(pathKey))],
      clientState: (fd) => {
        try {
          return loadNative().mod?.sendState(fd) ?? null;
        } catch {
          return null;
        }
      },
      log: opts.log,
      read: (fd) => {
        try {
          return loadNative().mod?.socketInfo(fd, false) ?? null;
        } catch {
          return null;
        }
      },
    });
    this.transparent = new TransparentMode({
      config: () => this.config.transparent,
      relayHost: () => (this.config.relay.link ? parseRelayLink(this.config.relay.link).host : null),
      startListener: async () => {
        if (!this.proxy) throw new BraidError('ENOTRUNNING', 'the proxy is not running');
        return this.proxy.startTransparent();
      },
      stopListener: async () => void (await this.proxy?.stopTransparent()),
      stateDir: opts.stateDir,
      log: opts.log,
    });
  }

  private kindOf(name: string): InterfaceKind {
    let k = this.kinds.get(name);
    if (!k) this.kinds.set(name, (k = classify(name, readSysfs(name))));
    return k;
  }

  /** An interface's data use and cap now. */
  usageOf(name: string): PathUsageView {
    const cap = this.config.paths.caps[name] ?? null;
    const now = this.usage.now();
    const day = capPeriod({ period: 'day', resetDay: 1 }, now);
    const today = this.usage.between(name, day.from, day.from);
    const s: CapState | null = cap ? this.caps.state(name, cap) : null;
    return { name, today, cap, used: s ? s.used : today.up + today.down, from: s?.from ?? day.from, until: s?.until ?? day.until, reached: s?.reached ?? false };
  }

  get log(): Logger {
    return this.opts.log;
  }

  get stateDir(): string | null {
    return this.opts.stateDir;
  }

  async start(): Promise<net.AddressInfo> {
    this.paths?.start();
    this.stats.start();
    return this.startProxy();
  }

  async stop(): Promise<void> {
    await this.transparent.stop();
    await this.stopProxy();
    this.stats.stop();
    this.usage.save();
    this.paths?.stop();
    this.externalSink?.close?.();
  }

  async startProxy(): Promise<net.AddressInfo> {
    if (this.proxy?.address) return this.proxy.address;
    const cfg = this.config;
    const proxy = new ProxyServer(cfg, {
      logger: this.opts.log,
      upstream: cfg.relay.link ? (direct) => this.relayUpstream(direct) : undefined,
      mark: () => this.transparent.mark(),
      routing: () => this.dialRouting(),
    });
    proxy.on('warning', (message) => this.emit('problem', { code: 'EWARNING', message, source: 'proxy' }));
    const addr = await proxy.start();
    proxy.tracker.on('opened', () => this.connectionsTotal++);
    this.stats.track(proxy.tracker);
    this.proxy = proxy;
    // Secondary paths are per connection of this proxy: watched while it runs.
    this.secondary.start();
    this.emit('proxy.started', addr);
    // Transparent mode follows the proxy: its listener and rules come back with it.
    await this.transparent.sync();
    return addr;
  }

  async stopProxy(): Promise<void> {
    const proxy = this.proxy;
    if (!proxy) return;
    // Never redirect TCP to a listener that is going away: the rules go first (`braid run` scopes are kept).
    await this.transparent.suspend();
    this.proxy = null;
    this.secondary.stop();
    this.relay?.close();
    this.relay = null;
    await proxy.stop();
    this.emit('proxy.stopped');
  }

  /** Applies a partial config (validated as a whole), persists it, and restarts what it affects. */
  async updateConfig(patch: ConfigInput): Promise<BraidConfig> {
    const next = validateConfig(mergeConfigInput(this.config as ConfigInput, patch));
    if (this.opts.configFile) updateConfigFile(this.opts.configFile, (cur) => mergeConfigInput(cur, patch));
    const restartProxy =
      this.proxy !== null &&
      (JSON.stringify(next.proxy) !== JSON.stringify(this.config.proxy) ||
        JSON.stringify(next.relay) !== JSON.stringify(this.config.relay) ||
        JSON.stringify(next.timeouts) !== JSON.stringify(this.config.timeouts) ||
        JSON.stringify(next.limits) !== JSON.stringify(this.config.limits));
    this.config = next;
    this.emit('config.changed', next);
    if (restartProxy) {
      await this.stopProxy();
      await this.startProxy();
    }
    this.paths?.reconcileNow();
    if (!restartProxy) await this.transparent.sync();
    return next;
  }

  /** Takes a config that changed outside (the file was edited, `braid paths set`). */
  async adoptConfig(next: BraidConfig): Promise<void> {
    const proxyChanged = JSON.stringify({ ...next, paths: null, control: null, transparent: null, doctor: null }) !== JSON.stringify({ ...this.config, paths: null, control: null, transparent: null, doctor: null });
    this.config = next;
    this.emit('config.changed', next);
    if (proxyChanged && this.proxy) {
      await this.stopProxy();
      await this.startProxy();
    }
    // Even an unchanged policy is applied again: `braid paths set` after an endpoint was deleted by
    // hand must converge, not be a no-op because the file says the same thing.
    this.paths?.reconcileNow();
    if (!(proxyChanged && this.proxy)) await this.transparent.sync();
  }

  private relayUpstream(direct: Dialer): RelayDialer {
    const link = parseRelayLink(this.config.relay.link!);
    const relay = new RelayDialer({
      link,
      native: loadNative().mod,
      mode: direct.mode,
      connectMs: this.config.timeouts.connectMs,
      poolSize: this.config.relay.poolSize,
      poolIdleMs: this.config.relay.poolIdleMs,
      log: this.opts.log,
      mark: () => this.transparent.mark(),
      routing: () => this.dialRouting(),
    });
    relay.start();
    this.relay = relay;
    return relay;
  }

  /** The policy chooses each connection's first path while path management is on (not `--paths off`). */
  private dialRouting(): PathRouting | null {
    return this.paths && this.config.paths.enabled ? this.routing : null;
  }

  /** What running Braid processes (this one included) have changed on the system, in words. */
  systemChanges(): SystemChange[] {
    return this.opts.stateDir ? describeLiveChanges(guardianDir(this.opts.stateDir)) : [];
  }

  reportError(source: string, err: unknown): void {
    this.emit('problem', { code: errorCode(err), message: errorMessage(err), source });
  }
}
