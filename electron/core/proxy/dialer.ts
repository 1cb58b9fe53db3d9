/**
 * Connects to a destination the way a browser would: every address the name resolves to, both
 * families interleaved, a new attempt every `attemptDelayMs` while earlier ones are still pending
 * (RFC 8305 "happy eyeballs"), first success wins and every other attempt is closed.
 *
 * Dialling goes through the native addon's non-blocking connect so that the same code path makes
 * MPTCP (`mode: 'mptcp'`) and plain TCP (`mode: 'tcp'`, IPPROTO_TCP) sockets. Only when the addon is
 * not loaded at all does `tcp` mode use net.connect, so the proxy still works on a machine without it.
 *
 * With a FallbackMemory, an MPTCP dial that the destination answers with plain TCP is closed before
 * any byte moves and dialled again as plain TCP (same address, same path), and later dials to that
 * destination are plain TCP from the start: the kernel's fallen-back sockets can stall or end early
 * (fallback-memory.ts says why).
 */
import dns from 'node:dns';
import net from 'node:net';
import { BraidError, errorCode } from '../errors';
import type { DialMode } from '../config/schema';
import type { FirstCandidate, RoutePlan, RouteTarget } from '../paths/route-choice';
import { ExplainedDialError } from './dial-errors';
import type { FallbackMemory } from './fallback-memory';
import type { NativeModule } from './native';
import { socketFd } from '../socket-fd';

export interface DialTarget {
  host: string;     // as the client asked: a name or a numeric address (no brackets)
  port: number;
  signal?: AbortSignal;
  /** the destination per-destination rules match, when it is not what is dialled (through a relay) */
  ruleTarget?: RouteTarget['ruleTarget'];
}

/** How the connection's paths were chosen, for the connections list and the secondary controller. */
export interface DialRoute {
  rule: string | null;
  /** the interface of the first subflow (null: left to the routing table) */
  via: string | null;
  note: string | null;
  /** paths that are `secondary` on this connection */
  secondary: string[];
  /** paths that are `use` on this connection */
  use: string[];
  /** the MPTCP token the path manager knows it by, when it has one */
  token: number | null;
}

/** The policy's say in dialling: which interface each attempt leaves by (paths/routing.ts). */
export interface DialRouting {
  plan(t: RouteTarget): RoutePlan;
  /** The connection is up: hand it to the path manager; returns its MPTCP token, or null. */
  attach(fd: number, plan: RoutePlan, via: FirstCandidate | null): number | null;
}

export interface DialResult {
  /**
   * Connected and paused: nothing is read (or lost) until the consumer calls resume(), which it
   * must do once its listeners are in place. Adding a 'data' listener does not start a stream that
   * was explicitly paused, so a consumer that only listens would wait forever; every Upstream hands
   * its sockets over in this one state so that such a consumer fails with every one of them.
   */
  socket: net.Socket;
  address: string;  // the resolved address that connected
  port: number;
  family: 4 | 6;
  /** The MPTCP socket's fd when `socket` is layered on top of it (TLS to a relay). */
  fd?: number | null;
  route?: DialRoute;
  /** MPTCP was asked for but the destination does not speak it: `socket` is plain TCP (FallbackMemory). */
  fellBack?: boolean;
}

/** Where the proxy sends a connection: straight to the destination, or through a relay. */
export interface Upstream {
  readonly mode: DialMode;
  dial(target: DialTarget): Promise<DialResult>;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export interface DialerOptions {
  mode: DialMode;
  connectMs: number;
  native: NativeModule | null;
  attemptDelayMs?: number;
  lookup?: (host: string) => Promise<ResolvedAddress[]>;
  /** Refuses destinations that are the proxy's own listener, which would loop forever. */
  isSelf?: (address: string, port: number) => boolean;
  /** SO_MARK for every socket it makes (read at each dial: transparent mode comes and goes); 0 = none. */
  mark?: () => number;
  /** Which path each attempt leaves by (read at each dial: path management comes and goes); null = the routing table's. */
  routing?: () => DialRouting | null;
  /** How long attempts on `use` paths have before a lower tier (secondary, backup) is tried too. */
  tierDelayMs?: number;
  /** Destinations known not to speak MPTCP: dialled plain TCP in `mptcp` mode (null: keep fallen-back sockets). */
  fallbackMemory?: FallbackMemory | null;
}

interface PlannedAttempt extends ResolvedAddress {
  plan: RoutePlan | null;
  via: FirstCandidate | null;
  rank: number;
}

const TIER_RANK: Record<string, number> = { use: 0, secondary: 1, backup: 2 };

/**
 * The attempts for a dial, best first: per tier (use, secondary, backup), each candidate path in
 * order, the addresses interleaved by family. Throws the plan's error (ENOPATH) when no allowed
 * path reaches any of the addresses.
 */
export function planAttempts(addrs: ResolvedAddress[], routing: DialRouting | null, target: DialTarget): PlannedAttempt[] {
  if (!routing) return addrs.map((a) => ({ ...a, plan: null, via: null, rank: 0 }));
  const plans = addrs.map((a) => ({ a, plan: routing.plan({ host: target.host, address: a.address, port: target.port, ruleTarget: target.ruleTarget }) }));
  const out: PlannedAttempt[] = [];
  for (const { a, plan } of plans) if (plan.candidates === null) out.push({ ...a, plan, via: null, rank: 0 });
  const bound = plans.filter((p) => p.plan.candidates && p.plan.candidates.length > 0);
  for (const tier of ['use', 'secondary', 'backup'] as const) {
    const per = bound.map((p) => ({ ...p, c: p.plan.candidates!.filter((c) => c.tier === tier) }));
    const depth = Math.max(0, ...per.map((p) => p.c.length));
    for (let i = 0; i < depth; i++) {
      for (const p of per) if (p.c[i]) out.push({ ...p.a, plan: p.plan, via: p.c[i]!, rank: TIER_RANK[tier]! });
    }
  }
  if (out.length === 0) throw plans.find((p) => p.plan.error)?.plan.error ?? new ExplainedDialError('ENOPATH', `no path reaches ${target.host}`);
  return out;
}

export async function lookupAll(host: string): Promise<ResolvedAddress[]> {
  const list = await dns.promises.lookup(host, { all: true, verbatim: true });
  return list.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

/** Alternates families starting with whichever the resolver put first (RFC 8305 section 4). */
export function interleaveFamilies(addrs: ResolvedAddress[]): ResolvedAddress[] {
  if (addrs.length === 0) return [];
  const first = addrs[0].family;
  const a = addrs.filter((x) => x.family === first);
  const b = addrs.filter((x) => x.family !== first);
  const out: ResolvedAddress[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]);
    if (i < b.length) out.push(b[i]);
  }
  return out;
}

/** Errors that only say "this family has no route here": a later address's error says more. */
const WEAK_ERRORS = new Set(['ENETUNREACH', 'EAFNOSUPPORT', 'EADDRNOTAVAIL', 'ENETDOWN']);

function pickError(errors: unknown[]): unknown {
  return errors.find((e) => !WEAK_ERRORS.has(errorCode(e))) ?? errors[0];
}

interface Connected {
  socket: net.Socket;
  /** the socket is MPTCP (it may still have fallen back when there is no FallbackMemory) */
  mptcp: boolean;
  /** dialled plain TCP because the destination does not speak MPTCP */
  fellBack: boolean;
}

interface Attempt {
  promise: Promise<Connected>;
  cancel(): void;
}

export class Dialer implements Upstream {
  private readonly attemptDelayMs: number;
  private readonly tierDelayMs: number;
  private readonly lookup: (host: string) => Promise<ResolvedAddress[]>;

  constructor(private readonly opts: DialerOptions) {
    if (opts.mode === 'mptcp' && !opts.native) {
      throw new BraidError('ENOMPTCP', 'MPTCP dialling needs the native addon, which is not loaded');
    }
    this.attemptDelayMs = opts.attemptDelayMs ?? 250;
    this.tierDelayMs = opts.tierDelayMs ?? 2000;
    this.lookup = opts.lookup ?? lookupAll;
  }

  get mode(): DialMode {
    return this.opts.mode;
  }

  dial(target: DialTarget): Promise<DialResult> {
    const { host, port, signal } = target;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return Promise.reject(new BraidError('EBADPORT', `destination port ${port} is not allowed`));
    }
    const started = Date.now();
    const deadline = started + this.opts.connectMs;

    return new Promise<DialResult>((resolve, reject) => {
      let done = false;
      const attempts: Attempt[] = [];
      const errors: unknown[] = [];
      let queue: PlannedAttempt[] = [];
      let routing: DialRouting | null = null;
      let maxRankStarted = -1;
      let pending = 0;
      let staggerTimer: NodeJS.Timeout | undefined;

      const finish = (err: unknown, result?: DialResult): void => {
        if (done) return;
        done = true;
        clearTimeout(overall);
        clearTimeout(staggerTimer);
        signal?.removeEventListener('abort', onAbort);
        for (const a of attempts) a.cancel();
        if (result) resolve(result);
        else reject(err);
      };
      const overall = setTimeout(() => {
        finish(new BraidError('ETIMEDOUT', `connecting to ${host}:${port} timed out after ${this.opts.connectMs} ms`));
      }, this.opts.connectMs);
      const onAbort = (): void => finish(new BraidError('EABORTED', `dial to ${host}:${port} aborted`));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });

      const startNext = (): void => {
        clearTimeout(staggerTimer);
        if (done) return;
        const next = queue.shift();
        if (!next) return;
        maxRankStarted = Math.max(maxRankStarted, next.rank);
        const remaining = Math.max(1, deadline - Date.now());
        const attempt = this.attempt(next.address, port, remaining, next.via);
        attempts.push(attempt);
        pending++;
        attempt.promise.then(
          ({ socket, mptcp, fellBack }) => {
            pending--;
            if (done) {
              socket.destroy();
              return;
            }
            const fd = socketFd(socket);
            let token: number | null = null;
            if (routing && next.plan && fd !== null && mptcp) {
              try {
                token = routing.attach(fd, next.plan, next.via);
              } catch {
                /* the connection works without its extra subflows; nothing to fail for */
              }
            }
            const route: DialRoute | undefined = next.plan
              ? { rule: next.plan.rule, via: next.via?.iface ?? null, note: next.plan.note, secondary: next.plan.secondary, use: next.plan.use, token }
              : undefined;
            finish(null, { socket, address: next.address, port, family: next.family, route, ...(fellBack ? { fellBack } : {}) });
          },
          (err) => {
            pending--;
            errors.push(err);
            if (done) return;
            if (queue.length > 0) startNext();
            else if (pending === 0) finish(pickError(errors));
          },
        );
        // A lower tier (secondary, backup) only gets its turn when the better paths failed or are slow.
        if (queue.length > 0) staggerTimer = setTimeout(startNext, queue[0]!.rank > maxRankStarted ? this.tierDelayMs : this.attemptDelayMs);
      };

      const literal = net.isIP(host);
      // Through a then() so that a lookup that throws synchronously (odd names) rejects instead.
      const resolving: Promise<ResolvedAddress[]> = literal
        ? Promise.resolve([{ address: host, family: literal as 4 | 6 }])
        : Promise.resolve().then(() => this.lookup(host));
      resolving.then(
        (addrs) => {
          if (done) return;
          if (addrs.length === 0) return finish(new BraidError('ENOTFOUND', `${host} has no address`));
          if (this.opts.isSelf && addrs.some((a) => this.opts.isSelf!(a.address, port))) {
            return finish(new BraidError('EPROXYLOOP', `${host}:${port} is this proxy's own listener`));
          }
          routing = this.opts.routing?.() ?? null;
          try {
            queue = planAttempts(interleaveFamilies(addrs), routing, target);
          } catch (err) {
            return finish(err);
          }
          startNext();
        },
        (err) => {
          // A custom lookup's own error (the relay's policy refusal) already says what happened.
          if (err instanceof BraidError) return finish(err);
          const code = errorCode(err);
          finish(new BraidError(code === 'EUNKNOWN' ? 'ENOTFOUND' : code, `cannot resolve ${host}: ${code}`, { cause: err }));
        },
      );
    });
  }

  private attempt(address: string, port: number, timeoutMs: number, via: FirstCandidate | null): Attempt {
    const native = this.opts.native;
    // Bound to the path's interface and address: its routes (and policy routing by source) apply.
    const bind = via ? { device: via.iface, localAddress: via.localAddress } : {};
    if (native) {
      let cancelled = false;
      const deadline = Date.now() + timeoutMs;
      const memory = this.opts.mode === 'mptcp' ? this.opts.fallbackMemory ?? null : null;
      // The path as it is now: the interface and its address (another network on the same interface is another path).
      const path = via ? `${via.iface} ${via.localAddress}` : null;
      const known = memory?.has(address, port, path) ?? false;
      const connect = (mptcp: boolean): Promise<number> =>
        // Through a then() so that a synchronous throw from the addon becomes this attempt's failure.
        Promise.resolve().then(() => native.connectFd({ address, port, timeoutMs: Math.max(1, deadline - Date.now()), mptcp, mark: this.opts.mark?.() ?? 0, ...bind }));
      const close = (fd: number): void => {
        try {
          native.closeFd(fd);
        } catch {
          /* already closed: nothing leaks */
        }
      };
      const hand = (fd: number, isMptcp: boolean, fellBack: boolean): Connected => {
        // The native connect cannot be interrupted; a loser that completes late is closed here.
        if (cancelled) {
          close(fd);
          throw new BraidError('ECANCELED', 'attempt lost the race');
        }
        return { socket: new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true }).pause(), mptcp: isMptcp, fellBack };
      };
      const mptcp = this.opts.mode === 'mptcp' && !known;
      const promise = connect(mptcp).then(async (fd): Promise<Connected> => {
        if (!cancelled && mptcp && memory && fellBackAtConnect(native, fd)) {
          // Nothing has been sent or read on it yet: a plain TCP socket takes its place.
          memory.remember(address, port, path);
          close(fd);
          return hand(await connect(false), false, true);
        }
        return hand(fd, mptcp, known);
      });
      return { promise, cancel: () => void (cancelled = true) };
    }
    let socket: net.Socket | undefined;
    const promise = new Promise<Connected>((resolve, reject) => {
      const s = net.connect({ host: address, port, allowHalfOpen: true, timeout: timeoutMs, ...(via ? { localAddress: via.localAddress } : {}) });
      socket = s;
      const onError = (err: Error): void => {
        s.destroy();
        reject(err);
      };
      s.once('error', onError);
      s.once('timeout', () => onError(new BraidError('ETIMEDOUT', `connect ${address}:${port} timed out`)));
      s.once('connect', () => {
        s.off('error', onError);
        s.setTimeout(0);
        s.removeAllListeners('timeout');
        resolve({ socket: s.pause(), mptcp: false, fellBack: false });
      });
    });
    return {
      promise,
      cancel: () => {
        if (socket && socket.connecting) socket.destroy();
      },
    };
  }
}

/** The MPTCP dial came back as plain TCP: no MP_CAPABLE in the SYN/ACK, or the kernel gave up on MPTCP's SYN. */
function fellBackAtConnect(native: NativeModule, fd: number): boolean {
  try {
    const s = native.mptcpStatus(fd);
    return !s.mptcp || s.fallback;
  } catch {
    return false; // unknown: keep the socket as it is
  }
}
