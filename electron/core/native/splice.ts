/**
 * A plain tunnel whose bytes the kernel moves (native/src/splice.cc: socket → pipe → socket with
 * splice(2), both directions, on the main loop). For a connection with no TLS on either side, it
 * saves the copies into and out of JavaScript that the stream pump pays for every byte.
 */
import { binding } from './binding';

export interface SpliceEnd {
  reason: 'done' | 'error' | 'stopped';
  code?: string;        // errno name, on 'error'
  syscall?: string;
  up: number;           // bytes written A → B
  down: number;         // bytes written B → A
}

export interface SpliceBinding {
  spliceStart(fdA: number, fdB: number, onEnd: (end: SpliceEnd) => void, onEof?: (direction: 'up' | 'down') => void): number;
  spliceStats(id: number): { up: number; down: number } | undefined;
  spliceStop(id: number): void;
}

/**
 * Starts moving bytes between two connected stream sockets (their fds stay the callers': the pump
 * works on duplicates). The callers' sockets must be paused with nothing buffered either way.
 * Half-close is passed on (EOF one way becomes shutdown(SHUT_WR) the other way); onEnd runs once;
 * onEof says when A's ('up') or B's ('down') EOF was read.
 */
export function spliceStart(fdA: number, fdB: number, onEnd: (end: SpliceEnd) => void, onEof?: (direction: 'up' | 'down') => void): { id: number; stats(): { up: number; down: number } | undefined; stop(): void } {
  const id = binding.spliceStart(fdA, fdB, onEnd, onEof);
  return { id, stats: () => binding.spliceStats(id), stop: () => binding.spliceStop(id) };
}

/** Whether the addon has the splice pump (Linux builds). */
export function spliceAvailable(): boolean {
  try {
    return typeof binding.spliceStart === 'function';
  } catch {
    return false;
  }
}
