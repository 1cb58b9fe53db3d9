/** The open-file limit (RLIMIT_NOFILE) through the native addon, typed; Node has no API for it. */
import { binding } from './binding';

export interface NofileLimit {
  soft: number;   // Infinity for RLIM_INFINITY
  hard: number;
}

/** The current limits; with `soft`, sets the soft limit first (0 ≤ soft ≤ hard, else a RangeError). */
export const nofileLimit = (soft?: number): NofileLimit => binding.nofileLimit(soft);

// ---- the native interface (binding.ts includes it in NativeBinding) ----------------------------

export interface RlimitBinding {
  nofileLimit(soft?: number): NofileLimit;
}
