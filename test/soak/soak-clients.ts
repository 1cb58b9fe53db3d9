/**
 * The soak's load: W workers, each opening one connection after another through a proxy until the
 * time is up. Every request picks SOCKS5, HTTP forwarding or CONNECT, and a size from 1 KB to 20 MB
 * (log-spaced); some are aborted on purpose part way. A completed body is checked against the
 * SHA-256 of the deterministic content it should be (byte-stream.ts, seed "soak").
 *
 *   node soak-clients.js --seconds S --workers W --direct PORT:ADDR:DPORT --relay PORT:ADDR:DPORT
 *                        [--relay-share 0.33] [--abort-share 0.08] [--timeout-ms 300000]
 *
 * A third of the workers (by default) use the relay route. Every 10 s and at the end it prints one
 * JSON line: {"progress": {...}} / {"final": {...}} with counts, bytes and errors by code.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { expectedSha256 } from '../helpers/byte-stream';

const SEED = 'soak';
type Kind = 'socks5' | 'http' | 'connect';
const KINDS: Kind[] = ['socks5', 'http', 'connect'];

interface Route { name: 'direct' | 'relay'; proxyPort: number; address: string; port: number }

export interface SoakCounts {
  started: number;
  completed: number;
  aborted: number;
  failed: number;
  /** still running when the time was up and the grace after it had passed: cut, not failed */
  cutAtEnd: number;
  corrupt: number;
  bytes: number;
  byKind: Record<string, number>;
  /** per route; ttfbMsSum over completed requests: connect to the response head, set-up included */
  byRoute: Record<string, { completed: number; failed: number; ttfbMsSum: number; bytes: number; seconds: Record<string, number> }>;
  errors: Record<string, number>;
  inflight: number;
}

/** Sizes from 1 KB to 20 MB, log-spaced, so that small and large transfers both happen often. */
export const SIZES: number[] = Array.from({ length: 24 }, (_, i) => Math.round(1000 * Math.pow(20_000, i / 23)));

class Failure extends Error {
  constructor(readonly code: string, message?: string) {
    super(message ?? code);
  }
}

interface Args { seconds: number; workers: number; direct: Route; relay: Route; relayShare: number; abortShare: number; timeoutMs: number }

function route(name: 'direct' | 'relay', text: string | undefined): Route {
  const m = /^(\d+):([\d.]+):(\d+)$/.exec(text ?? '');
  if (!m) throw new Error(`--${name} PROXYPORT:ADDRESS:PORT`);
  return { name, proxyPort: Number(m[1]), address: m[2]!, port: Number(m[3]) };
}

function parseArgs(argv: string[]): Args {
  const get = (k: string): string | undefined => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const a: Args = {
    seconds: Number(get('--seconds') ?? 60),
    workers: Number(get('--workers') ?? 200),
    direct: route('direct', get('--direct')),
    relay: route('relay', get('--relay')),
    relayShare: Number(get('--relay-share') ?? 1 / 3),
    abortShare: Number(get('--abort-share') ?? 0.08),
    timeoutMs: Number(get('--timeout-ms') ?? 300_000),
  };
  if (!(a.seconds > 0 && a.seconds <= 24 * 3600)) throw new Error('--seconds: 1..86400');
  if (!(a.workers >= 1 && a.workers <= 2000)) throw new Error('--workers: 1..2000');
  return a;
}

const rand = (n: number): number => crypto.randomInt(n);

/** Requests in flight, to cut at the end. */
const live = new Set<() => void>();
/** After the time is up, requests still running get this long to finish. */
const END_GRACE_MS = 30_000;

/** One request on a fresh connection; resolves with the body bytes, or throws a Failure. */
function request(r: Route, kind: Kind, size: number, abortAt: number | null, timeoutMs: number, expected: string): Promise<{ bytes: number; aborted: boolean; ttfbMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let ttfbMs = 0;
    const s = net.connect({ host: '127.0.0.1', port: r.proxyPort });
    const cut = (): void => done(new Failure('CUT_AT_END'));
    live.add(cut);
    const hash = crypto.createHash('sha256');
    const get = `GET /bytes/${size} HTTP/1.1\r\nHost: ${r.address}:${r.port}\r\nConnection: close\r\n\r\n`;
    let stage: 'greeting' | 'socks' | 'connect' | 'head' | 'body' = 'head';
    let buf: Buffer = Buffer.alloc(0);
    let body = 0;
    let settled = false;
    const done = (err: Failure | null, aborted = false): void => {
      if (settled) return;
      settled = true;
      live.delete(cut);
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve({ bytes: body, aborted, ttfbMs });
    };
    const timer = setTimeout(() => done(new Failure('TIMEOUT', `no complete response in ${timeoutMs} ms`)), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => done(new Failure(e.code ?? 'ESOCKET', e.message)));
    s.on('close', () => done(new Failure(stage === 'body' ? 'TRUNCATED' : `CLOSED_IN_${stage.toUpperCase()}`)));
    s.once('connect', () => {
      if (kind === 'socks5') {
        stage = 'greeting';
        s.write(Buffer.from([5, 1, 0]));
      } else if (kind === 'connect') {
        stage = 'connect';
        s.write(`CONNECT ${r.address}:${r.port} HTTP/1.1\r\nHost: ${r.address}:${r.port}\r\n\r\n`);
      } else {
        s.write(`GET http://${r.address}:${r.port}/bytes/${size} HTTP/1.1\r\nHost: ${r.address}:${r.port}\r\nConnection: close\r\n\r\n`);
      }
    });
    s.on('data', (chunk: Buffer) => {
      if (stage === 'body') return onBody(chunk);
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (stage === 'greeting') {
        if (buf.length < 2) return;
        if (buf[1] !== 0) return done(new Failure(`SOCKS_METHOD_${buf[1]}`));
        buf = buf.subarray(2);
        stage = 'socks';
        const a = r.address.split('.').map(Number);
        s.write(Buffer.from([5, 1, 0, 1, ...a, r.port >> 8, r.port & 0xff]));
      }
      if (stage === 'socks') {
        if (buf.length < 10) return;
        if (buf[1] !== 0) return done(new Failure(`SOCKS_REP_${buf[1]}`));
        buf = buf.subarray(10);
        stage = 'head';
        s.write(get);
      }
      if (stage === 'connect') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf.toString('latin1', 0, end))?.[1] ?? 0);
        if (status !== 200) return done(new Failure(`CONNECT_${status}`));
        buf = buf.subarray(end + 4);
        stage = 'head';
        s.write(get);
      }
      if (stage === 'head') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
        if (status !== 200) return done(new Failure(`HTTP_${status}`));
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
        if (len !== size) return done(new Failure('BAD_LENGTH', `Content-Length ${len}, asked ${size}`));
        stage = 'body';
        ttfbMs = Date.now() - t0;
        const rest = buf.subarray(end + 4);
        buf = Buffer.alloc(0);
        if (rest.length) onBody(rest);
        else if (size === 0) finishBody();
      }
    });
    const onBody = (chunk: Buffer): void => {
      const take = Math.min(chunk.length, size - body);
      hash.update(take === chunk.length ? chunk : chunk.subarray(0, take));
      body += take;
      if (abortAt !== null && body >= abortAt) return done(null, true);
      if (body >= size) finishBody();
    };
    const finishBody = (): void => {
      if (hash.digest('hex') !== expected) return done(new Failure('CORRUPT', `body of ${size} bytes does not hash as expected`));
      done(null);
    };
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const expected = new Map(SIZES.map((n) => [n, expectedSha256(n, SEED)]));
  const counts: SoakCounts = { started: 0, completed: 0, aborted: 0, failed: 0, cutAtEnd: 0, corrupt: 0, bytes: 0, byKind: {}, byRoute: { direct: { completed: 0, failed: 0, ttfbMsSum: 0, bytes: 0, seconds: {} }, relay: { completed: 0, failed: 0, ttfbMsSum: 0, bytes: 0, seconds: {} } }, errors: {}, inflight: 0 };
  const deadline = Date.now() + args.seconds * 1000;
  const relayWorkers = Math.round(args.workers * args.relayShare);
  const worker = async (i: number): Promise<void> => {
    const r = i < relayWorkers ? args.relay : args.direct;
    // Bounded: a worker can never do more than this many requests, whatever happens.
    for (let n = 0; n < 1_000_000 && Date.now() < deadline; n++) {
      const kind = KINDS[rand(KINDS.length)]!;
      const size = SIZES[rand(SIZES.length)]!;
      const abortAt = Math.random() < args.abortShare ? 1 + rand(Math.max(1, size - 1)) : null;
      counts.started++;
      counts.inflight++;
      counts.byKind[kind] = (counts.byKind[kind] ?? 0) + 1;
      const t0 = Date.now();
      try {
        const res = await request(r, kind, size, abortAt, args.timeoutMs, expected.get(size)!);
        counts.bytes += res.bytes;
        counts.byRoute[r.name]!.bytes += res.bytes;
        if (res.aborted) counts.aborted++;
        else {
          counts.completed++;
          counts.byRoute[r.name]!.completed++;
          counts.byRoute[r.name]!.ttfbMsSum += res.ttfbMs;
        }
      } catch (err) {
        const code = err instanceof Failure ? err.code : 'EXCEPTION';
        if (code === 'CUT_AT_END') {
          counts.cutAtEnd++;
          continue;
        }
        counts.failed++;
        counts.byRoute[r.name]!.failed++;
        counts.errors[code] = (counts.errors[code] ?? 0) + 1;
        if (code === 'CORRUPT') counts.corrupt++;
        // A failing route is not hammered in a tight loop.
        await new Promise((res) => setTimeout(res, 200));
      } finally {
        counts.inflight--;
        // How long requests took, by route, in buckets: a stall shows up as a tail.
        const sec = (Date.now() - t0) / 1000;
        const bucket = sec < 1 ? '<1s' : sec < 5 ? '<5s' : sec < 30 ? '<30s' : sec < 120 ? '<120s' : '>=120s';
        const b = counts.byRoute[r.name]!.seconds;
        b[bucket] = (b[bucket] ?? 0) + 1;
      }
      await new Promise((res) => setTimeout(res, rand(200)));
    }
  };
  const progress = setInterval(() => process.stdout.write(JSON.stringify({ progress: { t: Date.now(), ...counts } }) + '\n'), 10_000);
  const cutter = setTimeout(() => {
    for (const cut of [...live]) cut();
  }, deadline - Date.now() + END_GRACE_MS);
  await Promise.all(Array.from({ length: args.workers }, (_, i) => worker(i)));
  clearInterval(progress);
  clearTimeout(cutter);
  process.stdout.write(JSON.stringify({ final: { t: Date.now(), ...counts } }) + '\n');
}

if (require.main === module) {
  main().then(() => process.exit(0), (err) => {
    process.stderr.write(`soak-clients: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
