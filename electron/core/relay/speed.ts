/**
 * The relay's speed-test endpoint, for `braid doctor --speed`. It is reached like any destination,
 * through the authenticated tunnel: `CONNECT speedtest.braid.invalid:443` (a name that can never
 * resolve, RFC 6761), so a client without the secret gets the relay's usual 407 and nothing else.
 *
 * Inside the tunnel the client sends one line and the relay answers one line:
 *
 *   INFO\n                     -> INFO {json limits and what is left of this client's budget}\n, close
 *   DOWN <bytes> <ms>\n        -> OK DOWN <bytes> <ms>\n (what is granted), then that many bytes or
 *                                 that long, whichever ends first, then close
 *   UP <bytes> <ms>\n          -> OK UP <bytes> <ms>\n, then the relay reads that many bytes or that
 *                                 long and answers DONE <bytes> <ms> <warmBytes> <warmMs>\n (counted
 *                                 after the first `warm-up`, so slow start does not count), close
 *
 * It must not turn the relay into a traffic generator: every request is capped in bytes and time,
 * each client address has a byte budget per window and a limit on concurrent tests, and all
 * clients together have one too. Refusals are 429 with X-Braid-Error: ESPEEDLIMIT.
 */
import crypto from 'node:crypto';
import type tls from 'node:tls';
import type { Logger } from '../proxy/session';
import type { RelayMetrics } from './metrics';
import { relayResponse } from './wire';

export const SPEED_TARGET_HOST = 'speedtest.braid.invalid';
export const SPEED_TARGET_PORT = 443;

export function isSpeedTarget(host: string, port: number): boolean {
  return host.toLowerCase() === SPEED_TARGET_HOST && port === SPEED_TARGET_PORT;
}

export interface SpeedLimits {
  maxSeconds: number;          // per request
  maxBytes: number;            // per request
  budgetBytes: number;         // per client address and window
  windowMs: number;
  maxPerClient: number;        // concurrent tests per client address
  maxTotal: number;            // concurrent tests, all clients
  commandMs: number;           // the command line must arrive within this
}

export const DEFAULT_SPEED_LIMITS: SpeedLimits = {
  maxSeconds: 10,
  maxBytes: 256 * 1024 * 1024,
  budgetBytes: 1024 * 1024 * 1024,
  windowMs: 10 * 60_000,
  maxPerClient: 2,
  maxTotal: 8,
  commandMs: 5000,
};

/** The slow-start part of an upload that the reported rate leaves out. */
export function warmupMs(grantedMs: number): number {
  return Math.min(1000, Math.floor(grantedMs / 4));
}

interface Budget {
  windowStart: number;
  used: number;
  active: number;
}

const CHUNK = crypto.randomBytes(64 * 1024);  // random: nothing on the way can compress it
const MAX_TRACKED_CLIENTS = 10_000;
const COMMAND_RE = /^(DOWN|UP) (\d{1,15}) (\d{1,9})$/;

export interface SpeedEndpointOptions {
  limits?: Partial<SpeedLimits>;
  metrics: RelayMetrics;
  log: Logger;
  now?: () => number;
}

export class SpeedEndpoint {
  readonly limits: SpeedLimits;
  private readonly budgets = new Map<string, Budget>();
  private active = 0;
  private readonly now: () => number;

  constructor(private readonly opts: SpeedEndpointOptions) {
    this.limits = { ...DEFAULT_SPEED_LIMITS, ...(opts.limits ?? {}) };
    this.now = opts.now ?? Date.now;
  }

  /** What is left of a client's budget now, in bytes. */
  remaining(client: string): number {
    const b = this.budget(client, false);
    return b ? Math.max(0, this.limits.budgetBytes - b.used) : this.limits.budgetBytes;
  }

  /** Serves one authenticated tunnel whose CONNECT named the speed-test target. */
  serve(s: tls.TLSSocket, client: string, early: Buffer): void {
    const why = this.refusal(client);
    if (why) {
      this.opts.metrics.refused.add(1, { reason: 'speedtest' });
      this.opts.log.warn(`speed test refused for ${client}: ${why}`);
      s.end(relayResponse(429, 'ESPEEDLIMIT', why));
      setTimeout(() => s.destroy(), 2000).unref();
      return;
    }
    const budget = this.budget(client, true)!;
    budget.active++;
    this.active++;
    // Bytes are charged as they move, so a client that hangs up half-way still pays for them.
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      budget.active--;
      this.active--;
    };
    const tally = (n: number, direction: 'up' | 'down'): void => {
      budget.used += n;
      this.opts.metrics.speedBytes.add(n, { direction });
    };
    s.once('close', release);
    s.write(relayResponse(200));
    this.readCommand(s, early, (line, rest) => {
      if (line === null) return void s.destroy();
      if (line === 'INFO') {
        const info = { ...this.limits, remainingBytes: this.remaining(client) };
        s.end(`INFO ${JSON.stringify(info)}\n`);
        return;
      }
      const m = COMMAND_RE.exec(line);
      if (!m) {
        s.end('ERR expected INFO, DOWN <bytes> <ms> or UP <bytes> <ms>\n');
        return;
      }
      const bytes = Math.min(Number(m[2]), this.limits.maxBytes, this.remaining(client));
      const ms = Math.min(Number(m[3]), this.limits.maxSeconds * 1000);
      s.write(`OK ${m[1]} ${bytes} ${ms}\n`);
      if (m[1] === 'DOWN') this.sendFor(s, bytes, ms, (n) => tally(n, 'down'));
      else this.receiveFor(s, rest, bytes, ms, (n) => tally(n, 'up'));
    });
  }

  private refusal(client: string): string | null {
    const b = this.budget(client, false);
    if (this.active >= this.limits.maxTotal) return `${this.limits.maxTotal} speed tests are running on this relay; try again later`;
    if (!b) return this.budgets.size >= MAX_TRACKED_CLIENTS ? 'too many clients are testing; try again later' : null;
    if (b.active >= this.limits.maxPerClient) return `${b.active} speed tests from ${client} are already running (at most ${this.limits.maxPerClient} at once)`;
    if (b.used >= this.limits.budgetBytes) {
      const inS = Math.ceil((b.windowStart + this.limits.windowMs - this.now()) / 1000);
      return `speed-test budget of ${client} used up (${mb(b.used)} of ${mb(this.limits.budgetBytes)} per ${this.limits.windowMs / 60_000} minutes); try again in ${inS} s`;
    }
    return null;
  }

  private budget(client: string, create: boolean): Budget | null {
    const t = this.now();
    let b = this.budgets.get(client);
    if (b && t - b.windowStart >= this.limits.windowMs) {
      if (b.active === 0) {
        this.budgets.delete(client);
        b = undefined;
      } else {
        b.windowStart = t;
        b.used = 0;
      }
    }
    if (!b && create) {
      if (this.budgets.size >= MAX_TRACKED_CLIENTS) this.forgetIdle(t);
      b = { windowStart: t, used: 0, active: 0 };
      this.budgets.set(client, b);
    }
    return b ?? null;
  }

  private forgetIdle(t: number): void {
    for (const [k, b] of this.budgets) if (b.active === 0 && t - b.windowStart >= this.limits.windowMs) this.budgets.delete(k);
  }

  /** One command line, within commandMs and 128 bytes; null when it does not come. */
  private readCommand(s: tls.TLSSocket, early: Buffer, done: (line: string | null, rest: Buffer) => void): void {
    let buf = early;
    let finished = false;
    const finish = (line: string | null, rest: Buffer): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.pause();
      done(line, rest);
    };
    const check = (): void => {
      const nl = buf.indexOf(10);
      if (nl >= 0) return finish(buf.subarray(0, nl).toString('latin1').trim(), buf.subarray(nl + 1));
      if (buf.length > 128) finish(null, Buffer.alloc(0));
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      check();
    };
    const onEnd = (): void => finish(null, Buffer.alloc(0));
    const timer = setTimeout(() => finish(null, Buffer.alloc(0)), this.limits.commandMs);
    s.on('data', onData);
    s.on('end', onEnd);
    s.resume();
    check();
  }

  private sendFor(s: tls.TLSSocket, bytes: number, ms: number, tally: (n: number) => void): void {
    const start = this.now();
    let sent = 0;
    const stop = (): void => {
      s.end();
      // A client that stops reading must not hold the socket (and its buffered bytes) for long.
      setTimeout(() => s.destroy(), 5000).unref();
    };
    const pump = (): void => {
      while (!s.destroyed) {
        if (sent >= bytes || this.now() - start >= ms) return stop();
        const n = Math.min(CHUNK.length, bytes - sent);
        sent += n;
        tally(n);
        if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          s.once('drain', pump);
          return;
        }
      }
    };
    // The time limit holds even when the client reads nothing and no 'drain' ever comes.
    const hard = setTimeout(() => {
      if (!s.destroyed && !s.writableEnded) stop();
    }, ms + 100);
    hard.unref();
    s.once('close', () => clearTimeout(hard));
    s.on('data', () => {});  // nothing is expected from the client any more
    s.resume();
    pump();
  }

  private receiveFor(s: tls.TLSSocket, early: Buffer, bytes: number, ms: number, tally: (n: number) => void): void {
    const warm = warmupMs(ms);
    let got = 0;
    let first = 0;
    let last = 0;
    let warmAt = -1;  // bytes received when the warm-up ended
    let warmTime = 0;
    let finished = false;
    const count = (n: number): void => {
      const t = this.now();
      if (got === 0) first = t;
      got += n;
      tally(n);
      last = t;
      if (warmAt < 0 && t - first >= warm) {
        warmAt = got;
        warmTime = t;
      }
      if (got >= bytes) finish();
    };
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.off('data', onData);
      s.pause();
      const warmBytes = warmAt < 0 ? 0 : got - warmAt;
      const warmMs = warmAt < 0 ? 0 : last - warmTime;
      s.end(`DONE ${got} ${got ? last - first : 0} ${warmBytes} ${warmMs}\n`);
      setTimeout(() => s.destroy(), 2000).unref();
    };
    const onData = (chunk: Buffer): void => count(chunk.length);
    // From the OK on: a client that sends nothing still ends at the time limit.
    const timer = setTimeout(finish, ms);
    timer.unref();
    s.on('data', onData);
    s.once('end', finish);
    if (early.length) count(early.length);
    s.resume();
  }
}

function mb(n: number): string {
  return `${Math.round(n / (1024 * 1024))} MiB`;
}
