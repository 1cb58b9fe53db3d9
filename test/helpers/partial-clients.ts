/**
 * Clients that give up during the proxy handshake, for the socket-release test: each connects,
 * sends the first bytes of a SOCKS5 or HTTP request (cut at some point), shuts down its write side,
 * and then either closes at once (as a browser's abandoned speculative connection does) or reads
 * until the proxy closes, to check the reply the proxy owed it.
 *
 *   node partial-clients.js --port P [--auth-port Q] --count N --concurrency C
 *
 * Runs inside the proxy's namespace. Prints one JSON line: per case, how many ran, how many got the
 * expected reply, and the first few mismatches.
 */
import net from 'node:net';

export interface PartialCase {
  name: string;
  /** 'auth' cases go to the proxy started with --auth */
  target: 'plain' | 'auth';
  send: Buffer;
  /** what a client that waits must receive before the proxy closes: exact bytes, or an HTTP status */
  expect: { bytes: Buffer } | { httpStatus: number };
}

const b = (...xs: number[]): Buffer => Buffer.from(xs);
const t = (s: string): Buffer => Buffer.from(s, 'latin1');
const GREET = b(5, 1, 0);
const CHOSEN = b(5, 0);
const rep = (code: number): Buffer => b(5, code, 0, 1, 0, 0, 0, 0, 0, 0);
// Addresses from the documentation ranges: the namespace has no route to anything, so a complete
// request fails at once with "network unreachable" and the client gets the reply for that.
const DEST4 = [203, 0, 113, 9];

export const CASES: PartialCase[] = [
  { name: 'socks: nothing', target: 'plain', send: b(), expect: { bytes: b() } },
  { name: 'socks: version byte only', target: 'plain', send: b(5), expect: { bytes: b() } },
  { name: 'socks: greeting without methods', target: 'plain', send: b(5, 2), expect: { bytes: b() } },
  { name: 'socks: greeting one method short', target: 'plain', send: b(5, 2, 0), expect: { bytes: b() } },
  { name: 'socks: greeting only', target: 'plain', send: GREET, expect: { bytes: CHOSEN } },
  { name: 'socks: request head', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0)]), expect: { bytes: Buffer.concat([CHOSEN, rep(1)]) } },
  { name: 'socks: half an IPv4 address', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0, 1, 203, 0)]), expect: { bytes: Buffer.concat([CHOSEN, rep(1)]) } },
  { name: 'socks: IPv4 without port', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0, 1, ...DEST4)]), expect: { bytes: Buffer.concat([CHOSEN, rep(1)]) } },
  { name: 'socks: half an IPv6 address', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0)]), expect: { bytes: Buffer.concat([CHOSEN, rep(1)]) } },
  { name: 'socks: half a domain name', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0, 3, 11), t('examp')]), expect: { bytes: Buffer.concat([CHOSEN, rep(1)]) } },
  { name: 'socks: complete CONNECT, no route', target: 'plain', send: Buffer.concat([GREET, b(5, 1, 0, 1, ...DEST4, 1, 187)]), expect: { bytes: Buffer.concat([CHOSEN, rep(3)]) } },
  { name: 'socks auth: greeting only', target: 'auth', send: b(5, 1, 2), expect: { bytes: b(5, 2) } },
  { name: 'socks auth: half the credentials', target: 'auth', send: Buffer.concat([b(5, 1, 2, 1, 5), t('ali')]), expect: { bytes: Buffer.concat([b(5, 2), b(1, 1)]) } },
  { name: 'http: method only', target: 'plain', send: t('GET'), expect: { httpStatus: 400 } },
  { name: 'http: request line without end', target: 'plain', send: t('GET http://198.51.100.7/ HTTP/1.1'), expect: { httpStatus: 400 } },
  { name: 'http: head without blank line', target: 'plain', send: t('GET http://198.51.100.7/x HTTP/1.1\r\nHost: 198.51.100.7\r\n'), expect: { httpStatus: 400 } },
  { name: 'http: CONNECT line only', target: 'plain', send: t('CONNECT 198.51.100.7:443 HTTP/1.1\r\n'), expect: { httpStatus: 400 } },
  { name: 'http: complete GET, no route', target: 'plain', send: t('GET http://198.51.100.7/ HTTP/1.1\r\nHost: 198.51.100.7\r\n\r\n'), expect: { httpStatus: 502 } },
  { name: 'http: complete CONNECT, no route', target: 'plain', send: t('CONNECT 198.51.100.7:443 HTTP/1.1\r\nHost: 198.51.100.7:443\r\n\r\n'), expect: { httpStatus: 502 } },
];

export interface CaseResult {
  name: string;
  ran: number;
  waited: number;
  ok: number;
  mismatches: string[];
}

export interface PartialReport {
  clients: number;
  closedAtOnce: number;
  waited: number;
  connectErrors: number;
  seconds: number;
  /** ms since epoch when the last client was done */
  finishedAt: number;
  cases: CaseResult[];
}

const WAIT_MS = 5000;

function expectationMet(c: PartialCase, got: Buffer): string | null {
  if ('bytes' in c.expect) {
    return got.equals(c.expect.bytes) ? null : `expected ${c.expect.bytes.toString('hex') || '(nothing)'}, got ${got.toString('hex') || '(nothing)'}`;
  }
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(got.toString('latin1'));
  if (m && Number(m[1]) === c.expect.httpStatus) return null;
  return `expected HTTP ${c.expect.httpStatus}, got ${JSON.stringify(got.toString('latin1').slice(0, 60))}`;
}

/** One client; resolves with null (fine), a mismatch text, or 'connect' when it could not connect. */
function runOne(port: number, c: PartialCase, wait: boolean): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    let settled = false;
    let connected = false;
    const finish = (r: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(`no close within ${WAIT_MS} ms; got ${Buffer.concat(parts).toString('hex')}`), WAIT_MS);
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected) return finish('connect');
      // The proxy may reset after its reply when the client's FIN crossed its own; what arrived counts.
      if (wait) finish(expectationMet(c, Buffer.concat(parts)));
      else finish(null);
      void e;
    });
    sock.on('data', (d: Buffer) => parts.push(d));
    sock.on('close', () => finish(wait ? expectationMet(c, Buffer.concat(parts)) : null));
    sock.once('connect', () => {
      connected = true;
      // end(data): the request bytes, then FIN; the client keeps reading when it waits.
      sock.end(c.send, () => {
        if (!wait) finish(null);
      });
    });
  });
}

function parseArgs(argv: string[]): { port: number; authPort: number | null; count: number; concurrency: number } {
  const out = { port: 0, authPort: null as number | null, count: 1000, concurrency: 200 };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--port') out.port = v;
    else if (argv[i] === '--auth-port') out.authPort = v;
    else if (argv[i] === '--count') out.count = v;
    else if (argv[i] === '--concurrency') out.concurrency = v;
    else throw new Error(`unknown argument ${argv[i]}`);
    i++;
  }
  if (!(out.port > 0 && out.port < 65536)) throw new Error('--port is required');
  if (!(out.count >= 1 && out.count <= 50_000)) throw new Error('--count: 1..50000');
  if (!(out.concurrency >= 1 && out.concurrency <= 5000)) throw new Error('--concurrency: 1..5000');
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cases = CASES.filter((c) => c.target === 'plain' || args.authPort !== null);
  const results = new Map<string, CaseResult>(cases.map((c) => [c.name, { name: c.name, ran: 0, waited: 0, ok: 0, mismatches: [] }]));
  const started = Date.now();
  let next = 0;
  let connectErrors = 0;
  let closedAtOnce = 0;
  let waited = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= args.count) return;
      const c = cases[i % cases.length]!;
      // Alternate per round of cases, so that every case runs both ways.
      const wait = Math.floor(i / cases.length) % 2 === 0;
      const r = await runOne(c.target === 'auth' ? args.authPort! : args.port, c, wait);
      const res = results.get(c.name)!;
      if (r === 'connect') { connectErrors++; continue; }
      res.ran++;
      if (wait) { res.waited++; waited++; } else closedAtOnce++;
      if (r === null) { if (wait) res.ok++; } else if (res.mismatches.length < 3) res.mismatches.push(r);
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, () => worker()));
  const report: PartialReport = {
    clients: args.count, closedAtOnce, waited, connectErrors, seconds: (Date.now() - started) / 1000, finishedAt: Date.now(), cases: [...results.values()],
  };
  process.stdout.write(JSON.stringify(report) + '\n');
}

if (require.main === module) {
  main().then(() => process.exit(0), (err) => {
    process.stderr.write(`partial-clients: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
