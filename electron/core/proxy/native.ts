/**
 * Lazy access to the native MPTCP addon. The proxy must still run (dialling plain TCP) on a machine
 * where the addon is missing or failed to build, so nothing imports ../native/mptcp at module load.
 */
import type * as Mptcp from '../native/mptcp';
import { errorMessage } from '../errors';

export type NativeModule = typeof Mptcp;

let cached: { mod: NativeModule | null; error: string | null } | undefined;

export function loadNative(): { mod: NativeModule | null; error: string | null } {
  if (!cached) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      (require('../native/binding') as typeof import('../native/binding')).nativeBinding();
      cached = { mod: require('../native/mptcp') as NativeModule, error: null };
    } catch (err) {
      cached = { mod: null, error: errorMessage(err) };
    }
  }
  return cached;
}

/** Why MPTCP cannot be used here, or null when it can. */
export function mptcpUnavailableReason(): string | null {
  const { mod, error } = loadNative();
  if (!mod) return `native addon not loaded: ${error}`;
  try {
    const s = mod.supported();
    return s.mptcp ? null : s.reason ?? 'kernel does not support MPTCP';
  } catch (err) {
    return `native supported() failed: ${errorMessage(err)}`;
  }
}
