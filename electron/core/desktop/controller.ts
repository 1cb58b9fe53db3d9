/**
 * The desktop's on/off logic, in one place and without Electron. Its one rule: the system proxy
 * never points at a proxy that is not listening. So "on" starts the proxy before setting the system
 * proxy, "off" restores the system proxy before stopping the proxy (and keeps the proxy running if
 * the restore failed), and a proxy that stops by any other way takes the system proxy with it.
 *
 * `install()` rewires the control handler table in place, so the same order holds whichever
 * transport asks (the tray, the window over IPC, the HTTP/WebSocket API): `proxy.stop` first turns
 * the system proxy off, and `systemProxy.set {enabled: true}` starts the proxy first.
 */
import { EventEmitter } from 'node:events';
import type { Handlers, ProxyView, SystemProxyView } from '../contract';
import type { SystemProxyControl } from '../control/handlers';
import { errorMessage } from '../errors';
import type { Logger } from '../proxy/session';
import type { BraidService } from '../service';

export interface ControllerOptions {
  service: BraidService;
  /** The control handler table (ControlCore.handlers); its originals are kept before install(). */
  handlers: Handlers;
  systemProxy: SystemProxyControl;
  log: Logger;
  /** How long a stopped proxy may take to come back (a config change restarts it) before the system proxy is restored. */
  restartGraceMs?: number;
}

export interface ToggleState {
  proxy: boolean;
  systemProxy: boolean;
}

export interface ControllerEvents {
  /** A toggle started or finished (the tray disables its toggles meanwhile). */
  busy: [boolean];
  /** The user chose a state through a toggle (what to resume at the next launch). */
  chosen: [ToggleState];
}

type Original = Pick<Handlers, 'proxy.start' | 'proxy.stop' | 'systemProxy.set'>;

export class DesktopController extends EventEmitter<ControllerEvents> {
  private readonly original: Original;
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private pointedAt: string | null = null;
  private guardTimer: NodeJS.Timeout | null = null;
  private readonly unhook: (() => void)[] = [];
  private installed = false;

  constructor(private readonly opts: ControllerOptions) {
    super();
    const h = opts.handlers;
    this.original = { 'proxy.start': h['proxy.start'], 'proxy.stop': h['proxy.stop'], 'systemProxy.set': h['systemProxy.set'] };
    const onStopped = (): void => this.proxyStopped();
    const onStarted = (): void => this.proxyStarted();
    opts.service.on('proxy.stopped', onStopped);
    opts.service.on('proxy.started', onStarted);
    this.unhook.push(() => opts.service.off('proxy.stopped', onStopped), () => opts.service.off('proxy.started', onStarted));
  }

  get busy(): boolean {
    return this.pending > 0;
  }

  state(): ToggleState {
    return { proxy: this.opts.service.proxy?.address != null, systemProxy: this.opts.systemProxy.view().enabled };
  }

  /** The GUI's main toggle, on: the proxy first, then (if asked) the system proxy. */
  turnOn(opts: { systemProxy: boolean }, how: { remember?: boolean } = {}): Promise<ToggleState> {
    return this.serial(async () => {
      await this.startProxyLocked();
      if (opts.systemProxy) await this.enableSystemProxyLocked();
      if (how.remember !== false) this.emit('chosen', this.state());
      return this.state();
    });
  }

  /** The GUI's main toggle, off: the system proxy is restored before the proxy stops. */
  turnOff(how: { remember?: boolean } = {}): Promise<ToggleState> {
    return this.serial(async () => {
      await this.stopProxyLocked();
      if (how.remember !== false) this.emit('chosen', this.state());
      return this.state();
    });
  }

  /**
   * Quit, SIGINT, SIGTERM: restore the system proxy (bounded), then stop the proxy whatever
   * happened, since the process is going away anyway. Never throws.
   */
  async shutdown(timeoutMs = 10_000): Promise<{ systemProxyRestored: boolean }> {
    this.close();
    let restored = true;
    if (this.opts.systemProxy.view().enabled) {
      const r = await bounded(this.opts.systemProxy.set(false), timeoutMs);
      restored = r.ok;
      if (!r.ok) this.opts.log.warn(`system proxy: restoring on quit failed (${r.error}); it will be restored at the next start`);
    }
    this.pointedAt = null;
    try {
      await bounded(Promise.resolve(this.original['proxy.stop']({})), timeoutMs);
    } catch (err) {
      this.opts.log.warn(`stopping the proxy: ${errorMessage(err)}`);
    }
    return { systemProxyRestored: restored };
  }

  /** Rewires proxy.stop / systemProxy.set of the handler table in place (all transports share it). */
  install(): void {
    if (this.installed) return;
    this.installed = true;
    const h = this.opts.handlers as { -readonly [K in keyof Handlers]: Handlers[K] };
    h['proxy.stop'] = () =>
      this.serial(async () => {
        const view = await this.stopProxyLocked();
        this.emit('chosen', this.state());
        return view;
      });
    h['proxy.start'] = () =>
      this.serial(async () => {
        const view = await this.startProxyLocked();
        this.emit('chosen', this.state());
        return view;
      });
    h['systemProxy.set'] = ({ enabled }) =>
      this.serial(async () => {
        let view: SystemProxyView;
        if (enabled) {
          await this.startProxyLocked();
          view = await this.enableSystemProxyLocked();
        } else {
          view = await this.disableSystemProxyLocked();
        }
        this.emit('chosen', this.state());
        return view;
      });
  }

  close(): void {
    for (const u of this.unhook.splice(0)) u();
    if (this.guardTimer) clearTimeout(this.guardTimer);
    this.guardTimer = null;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    this.pending++;
    if (this.pending === 1) this.emit('busy', true);
    const next = this.queue.then(fn, fn).finally(() => {
      this.pending--;
      if (this.pending === 0) this.emit('busy', false);
    });
    this.queue = next.catch(() => {});
    return next;
  }

  private async startProxyLocked(): Promise<ProxyView> {
    return this.original['proxy.start']({});
  }

  private async stopProxyLocked(): Promise<ProxyView> {
    // If this throws the proxy keeps running: the system still points at it, and it still answers.
    await this.disableSystemProxyLocked();
    return this.original['proxy.stop']({});
  }

  private async enableSystemProxyLocked(): Promise<SystemProxyView> {
    const view = await this.original['systemProxy.set']({ enabled: true });
    this.pointedAt = this.listenKey();
    return view;
  }

  private async disableSystemProxyLocked(): Promise<SystemProxyView> {
    const sp = this.opts.systemProxy;
    const view = sp.view().enabled ? await this.original['systemProxy.set']({ enabled: false }) : sp.view();
    this.pointedAt = null;
    return view;
  }

  private listenKey(): string | null {
    const a = this.opts.service.proxy?.address;
    return a ? `${a.address}|${a.port}` : null;
  }

  /** The proxy stopped outside a toggle (a config change restarts it; a failed restart does not). */
  private proxyStopped(): void {
    if (!this.opts.systemProxy.view().enabled || this.guardTimer) return;
    this.guardTimer = setTimeout(() => {
      this.guardTimer = null;
      void this.serial(async () => {
        if (this.opts.service.proxy?.address || !this.opts.systemProxy.view().enabled) return;
        this.opts.log.warn('the proxy stopped and did not come back: restoring the system proxy so nothing points at it');
        await this.disableSystemProxyLocked();
      }).catch((err) => this.opts.log.warn(`system proxy: restoring after the proxy stopped failed: ${errorMessage(err)}`));
    }, this.opts.restartGraceMs ?? 1500);
    this.guardTimer.unref?.();
  }

  /** Back after a restart, maybe on another port: point the system proxy at where it listens now. */
  private proxyStarted(): void {
    if (!this.opts.systemProxy.view().enabled || this.pointedAt === null) return;
    void this.serial(async () => {
      const now = this.listenKey();
      if (now === null || now === this.pointedAt || !this.opts.systemProxy.view().enabled) return;
      this.opts.log.info('the proxy restarted on another address: pointing the system proxy at it');
      await this.enableSystemProxyLocked();
    }).catch((err) => this.opts.log.warn(`system proxy: re-pointing after a restart failed: ${errorMessage(err)}`));
  }
}

async function bounded<T>(p: Promise<T>, ms: number): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ ok: false; error: string }>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: `no answer within ${ms} ms` }), ms);
  });
  try {
    return await Promise.race([p.then((value) => ({ ok: true as const, value })), timeout]);
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  } finally {
    clearTimeout(timer);
  }
}
