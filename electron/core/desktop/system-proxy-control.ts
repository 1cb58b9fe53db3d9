/**
 * ControlCore's system-proxy hook for the desktop app, on top of SystemProxyManager: `set(true)`
 * points the system at the proxy's listen address (journal first), `set(false)` puts back what the
 * user had. Where this desktop has no backend, every view says why and `set` fails with that reason.
 */
import type { AddressInfo } from 'node:net';
import type { SystemProxyView } from '../contract';
import type { SystemProxyControl } from '../control/handlers';
import { BraidError, errorMessage } from '../errors';
import { DEFAULT_BYPASS } from '../sysproxy/backend';
import { clientHost } from '../sysproxy/client-host';
import type { SystemProxyManager, SysproxyLog } from '../sysproxy/manager';

export interface DesktopSystemProxyOptions {
  /** null when no backend could be found; `unavailableReason` says why. */
  manager: SystemProxyManager | null;
  unavailableReason?: string;
  /** The running proxy's address, or null when it is stopped. */
  proxyAddress(): Pick<AddressInfo, 'address' | 'port'> | null;
  bypass?: string[];
  log?: SysproxyLog;
}

export class DesktopSystemProxy implements SystemProxyControl {
  private lastError: string | null = null;
  /** Where the system proxy points now (to notice a proxy that came back on another port). */
  private target: { host: string; port: number } | null = null;

  constructor(private readonly opts: DesktopSystemProxyOptions) {}

  get available(): boolean {
    return this.opts.manager !== null;
  }

  /** True while the system proxy points at Braid (or a change is half done). */
  get enabled(): boolean {
    return this.opts.manager?.active ?? false;
  }

  get pointsAt(): { host: string; port: number } | null {
    return this.enabled ? this.target : null;
  }

  view(): SystemProxyView {
    const m = this.opts.manager;
    if (!m) return { enabled: false, backend: null, error: this.opts.unavailableReason ?? 'no way to set the system proxy on this desktop' };
    return { enabled: m.active, backend: m.backend.name, error: this.lastError };
  }

  async set(enabled: boolean): Promise<SystemProxyView> {
    const m = this.opts.manager;
    if (!m) throw new BraidError('ESYSPROXY_UNSUPPORTED', this.opts.unavailableReason ?? 'no way to set the system proxy on this desktop');
    try {
      if (enabled) {
        const addr = this.opts.proxyAddress();
        // Pointing the system at a proxy that is not listening is exactly what must never happen.
        if (!addr) throw new BraidError('ENOTRUNNING', 'the proxy is not running; start it before using it as the system proxy');
        const target = { host: clientHost(addr.address), port: addr.port };
        await m.enable({ ...target, bypass: this.opts.bypass ?? [...DEFAULT_BYPASS] });
        this.target = target;
      } else {
        const outcome = await m.disable();
        if (outcome === 'kept-user-settings') this.opts.log?.info('system proxy: you changed it since Braid set it; your settings were kept');
        this.target = null;
      }
      this.lastError = null;
    } catch (err) {
      this.lastError = errorMessage(err);
      throw err;
    }
    return this.view();
  }
}
