/** The system proxy, for the Electron app's toggle and `braid up --system-proxy`. */
export { DEFAULT_BYPASS } from './backend';
export type { ProxySettings, ProxySnapshot, SystemProxyBackend } from './backend';
export { clientHost } from './client-host';
export { detectBackend, createBackend } from './detect';
export { installRestoreHooks } from './hooks';
export { SystemProxyManager } from './manager';
export type { RestoreOutcome, SysproxyLog } from './manager';
export { defaultStateDir } from '../config/locations';
