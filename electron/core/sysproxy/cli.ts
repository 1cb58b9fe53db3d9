/**
 * The one call `braid up --system-proxy` (and anything else headless) needs: recover what a crashed
 * run left, point the system proxy at the running proxy, keep it restorable on every way out, and
 * hand back the undo.
 */
import type { AddressInfo } from 'node:net';
import { DEFAULT_BYPASS, SystemProxyBackend } from './backend';
import { detectBackend } from './detect';
import { installRestoreHooks } from './hooks';
import { SysproxyLog, SystemProxyManager } from './manager';
import { defaultStateDir } from '../config/locations';

export interface WithSystemProxyOptions {
  stateDir?: string;
  bypass?: string[];
  backend?: SystemProxyBackend;
}

/** A wildcard listener is reached through loopback; clients cannot connect to 0.0.0.0 or ::. */
export function clientHost(address: string): string {
  if (address === '0.0.0.0' || address === '') return '127.0.0.1';
  if (address === '::' || address === '[::]') return '::1';
  return address.replace(/^\[(.*)\]$/, '$1');
}

export async function withSystemProxy(
  address: Pick<AddressInfo, 'address' | 'port'>,
  log: SysproxyLog,
  opts: WithSystemProxyOptions = {},
): Promise<() => Promise<void>> {
  const backend = opts.backend ?? (await detectBackend());
  const manager = new SystemProxyManager({ backend, stateDir: opts.stateDir ?? defaultStateDir(), log });
  await manager.recoverAfterCrash();
  await manager.enable({ host: clientHost(address.address), port: address.port, bypass: opts.bypass ?? [...DEFAULT_BYPASS] });
  const uninstall = installRestoreHooks(manager, { log });
  let disposed: Promise<void> | null = null;
  return () =>
    (disposed ??= (async () => {
      try {
        const outcome = await manager.disable();
        if (outcome === 'restored') log.info(`system proxy (${backend.name}) restored`);
      } finally {
        uninstall();
      }
    })());
}
