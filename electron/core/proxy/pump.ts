/**
 * The byte pump (the relay *server* is ../relay/): moves bytes both ways between a client and its
 * destination until both directions are finished. Half-close is kept (one side's FIN becomes a FIN on the other side while the reverse direction
 * keeps flowing), backpressure pauses the reading side, any error or the idle timeout destroys both.
 */
import type net from 'node:net';
import { errorCode, errorMessage } from '../errors';

export interface PumpOptions {
  idleMs: number;
  /** bytes queued in userland towards one side before reading from the other pauses (default 256 KiB) */
  maxQueued?: number;
  onUp?: (bytes: number) => void;    // client -> destination
  onDown?: (bytes: number) => void;  // destination -> client
  /**
   * Reading from one side held back because the other side does not take the bytes fast enough
   * ('down': the client reads slower than the destination sends), and released again.
   */
  onHold?: (direction: 'up' | 'down', held: boolean) => void;
}

export interface PumpResult {
  reason: 'done' | 'idle' | 'error' | 'closed';
  error?: Error;
}

export const DEFAULT_MAX_QUEUED = 256 * 1024;

/** Why a tunnel ended, for a log line: the reason, and the error's code and message if any. */
export function describeEnd(result: PumpResult): string {
  return result.error ? `${result.reason}: ${errorCode(result.error)} ${errorMessage(result.error)}` : result.reason;
}

export function pump(client: net.Socket, upstream: net.Socket, opts: PumpOptions): Promise<PumpResult> {
  return new Promise<PumpResult>((resolve) => {
    let last = Date.now();
    let finished = false;
    let idleTimer: NodeJS.Timeout | undefined;

    const armIdle = (ms: number): void => {
      idleTimer = setTimeout(() => {
        const quiet = Date.now() - last;
        // Re-armed lazily rather than on every chunk: one timer per connection, no churn.
        if (quiet >= opts.idleMs) finish({ reason: 'idle' });
        else armIdle(opts.idleMs - quiet);
      }, ms);
      idleTimer.unref?.();
    };

    const finish = (result: PumpResult): void => {
      if (finished) return;
      finished = true;
      clearTimeout(idleTimer);
      client.destroy();
      upstream.destroy();
      resolve(result);
    };

    let ends = 0;
    const maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED;
    const flow = (src: net.Socket, dst: net.Socket, direction: 'up' | 'down', count?: (n: number) => void): void => {
      let corked = false;
      let held = false;
      const uncork = (): void => {
        corked = false;
        dst.uncork();
      };
      src.on('data', (chunk: Buffer) => {
        last = Date.now();
        count?.(chunk.length);
        // write()'s return value is false for any chunk as big as the stream's high-water mark
        // (16 KiB), even when the kernel took it at once, and a TLS socket reports its writes done
        // only on the next loop turn. Pausing on it stopped and restarted reading for every TLS
        // record and left the CPUs a third idle at full speed. What is actually still queued in
        // userland is the measure of backpressure. Corking until the loop's check phase turns the
        // records one TLS read produced into one writev.
        if (!corked) {
          corked = true;
          dst.cork();
          setImmediate(uncork);
        }
        dst.write(chunk);
        if (dst.writableLength >= maxQueued) {
          src.pause();
          if (!held) {
            held = true;
            opts.onHold?.(direction, true);
          }
        }
      });
      dst.on('drain', () => {
        last = Date.now();
        src.resume();
        if (held) {
          held = false;
          opts.onHold?.(direction, false);
        }
      });
      src.on('end', () => {
        dst.end();
        if (++ends === 2) maybeDone();
      });
    };

    // Both FINs seen: wait until our own writes are flushed before tearing down, so no tail is lost.
    const maybeDone = (): void => {
      const flushed = (s: net.Socket): boolean => s.writableFinished || s.destroyed;
      if (flushed(client) && flushed(upstream)) finish({ reason: 'done' });
    };
    for (const s of [client, upstream]) {
      s.on('finish', () => ends === 2 && maybeDone());
      s.on('error', (error: Error) => finish({ reason: 'error', error }));
      // A clean close after both FINs may still leave our writes to the other side in flight.
      s.on('close', () => (ends === 2 ? maybeDone() : finish({ reason: 'closed' })));
    }

    flow(client, upstream, 'up', opts.onUp);
    flow(upstream, client, 'down', opts.onDown);
    // An EOF that arrived before the pump took over (client sent its request, data and FIN at
    // once) would otherwise never be passed on.
    for (const [src, dst] of [[client, upstream], [upstream, client]] as const) {
      if (src.readableEnded) {
        dst.end();
        ends++;
      }
    }
    if (ends === 2) maybeDone();
    armIdle(opts.idleMs);
    client.resume();
    upstream.resume();
  });
}
