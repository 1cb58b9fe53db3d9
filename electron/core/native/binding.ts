/**
 * The only module that loads the native addon (`native/`, built by node-gyp at install time).
 * Each part of the addon is typed in its own module (mptcp.ts for sockets, ...); this one only finds
 * and loads the file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ConnectOptions, ListenOptions, MptcpInfo, NativeSupport, SendState } from './mptcp';
import type { NetlinkBinding } from './netlink';
import type { DatapathBinding } from './datapath';
import type { SpliceBinding } from './splice';
import type { SealBinding } from './seal';
import type { OpenBinding } from './open';
import type { RlimitBinding } from './rlimit';

export interface SocketBinding {
  supported(): NativeSupport;
  listen(opts: ListenOptions): number;
  connect(opts: ConnectOptions): Promise<number>;
  info(fd: number, withBackupFlags?: boolean): MptcpInfo;
  close(fd: number): void;
  originalDst(fd: number): { address: string; port: number; family: 4 | 6 };
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  sendState(fd: number): SendState;
  tcpSocketOwner(localAddress: string, localPort: number, remoteAddress: string, remotePort: number): { inode: number; uid: number; state: number } | null;
  tcpSocketAbort(localAddress: string, localPort: number, remoteAddress: string, remotePort: number, ifindex?: number): boolean;
}

function findPackageRoot(start: string): string {
  let dir = start;
  for (let i = 0; i < 10; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`cannot find Braid's package root above ${start}`);
}

let loaded: NativeBinding | null = null;

/**
 * Loads the addon on first use and throws (code ENOADDON) when it cannot: importing a module that
 * uses it never fails, so the proxy still starts, dialling plain TCP, where the addon did not build.
 */
export function nativeBinding(): NativeBinding {
  if (loaded) return loaded;
  const root = findPackageRoot(__dirname);
  // electron-builder unpacks the addon out of the asar; require() resolves the unpacked path itself.
  const file = path.join(root, 'native', 'build', 'Release', 'braid_native.node');
  try {
    loaded = require(file) as NativeBinding;
  } catch (err) {
    throw Object.assign(new Error(`Braid's native addon is not available (${file}): ${(err as Error).message.split('\n')[0]}`), { code: 'ENOADDON', cause: err });
  }
  return loaded;
}

export type NativeBinding = SocketBinding & NetlinkBinding & RlimitBinding & DatapathBinding & SpliceBinding & SealBinding & Partial<OpenBinding>;

export const binding: NativeBinding = new Proxy({} as NativeBinding, {
  get: (_target, prop) => (nativeBinding() as unknown as Record<string | symbol, unknown>)[prop],
});
