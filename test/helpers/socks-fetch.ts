/**
 * Runnable client for failover tests: GET /bytes/N from a byte server through a SOCKS5 proxy,
 * timing every chunk as it arrives.
 *   node dist/test/helpers/socks-fetch.js --proxy-port P --address A --port Q --bytes N
 *        [--progress BYTES] [--timeout-ms MS]
 * Prints `progress <received>` each time another BYTES arrived (so a test can act mid-transfer),
 * then one JSON line: status, bytes, SHA-256 of the body, seconds, and the longest gap between two
 * consecutive chunks (the stall a user would see), with when it started.
 */
import crypto from 'node:crypto';
import net from 'node:net';

interface Args { proxyPort: number; address: string; port: number; bytes: number; progress: number; timeoutMs: number }

function parseArgs(argv: string[]): Args {
  const out: Args = { proxyPort: 0, address: '', port: 0, bytes: 0, progress: 1_000_000, timeoutMs: 60_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--proxy-port') out.proxyPort = Number(v);
    else if (a === '--address') out.address = v;
    else if (a === '--port') out.port = Number(v);
    else if (a === '--bytes') out.bytes = Number(v);
    else if (a === '--progress') out.progress = Number(v);
    else if (a === '--timeout-ms') out.timeoutMs = Number(v);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.proxyPort || net.isIPv4(out.address) === false || !out.port || !Number.isSafeInteger(out.bytes) || out.bytes <= 0) {
    throw new Error('usage: socks-fetch --proxy-port P --address IPv4 --port Q --bytes N');
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const socket = net.connect({ host: '127.0.0.1', port: args.proxyPort });
  const hash = crypto.createHash('sha256');
  const started = performance.now();
  const timer = setTimeout(() => {
    process.stderr.write(`socks-fetch: no complete response within ${args.timeoutMs} ms\n`);
    process.exit(3);
  }, args.timeoutMs);

  let stage: 'greeting' | 'connect' | 'headers' | 'body' = 'greeting';
  let pending = Buffer.alloc(0);
  let status = 0;
  let received = 0;
  let nextProgress = args.progress;
  let last = 0;
  let maxGapMs = 0;
  let maxGapAtBytes = 0;
  let firstBodyAt = 0;

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(Buffer.from([5, 1, 0])));
    const body = (chunk: Buffer, now: number): void => {
      if (chunk.length === 0) return;
      if (received === 0) firstBodyAt = now;
      else if (now - last > maxGapMs) { maxGapMs = now - last; maxGapAtBytes = received; }
      last = now;
      received += chunk.length;
      hash.update(chunk);
      while (received >= nextProgress && nextProgress <= args.bytes) {
        process.stdout.write(`progress ${received}\n`);
        nextProgress += args.progress;
      }
      if (received >= args.bytes) { socket.end(); resolve(); }
    };
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      if (stage === 'body') { body(chunk, now); return; }
      pending = Buffer.concat([pending, chunk]);
      if (stage === 'greeting') {
        if (pending.length < 2) return;
        if (pending[0] !== 5 || pending[1] !== 0) { reject(new Error(`SOCKS greeting refused: ${pending.subarray(0, 2).toString('hex')}`)); return; }
        pending = pending.subarray(2);
        const req = Buffer.from([5, 1, 0, 1, ...args.address.split('.').map(Number), args.port >> 8, args.port & 0xff]);
        socket.write(req);
        stage = 'connect';
      }
      if (stage === 'connect') {
        if (pending.length < 10) return;
        if (pending[1] !== 0) { reject(new Error(`SOCKS CONNECT failed with reply ${pending[1]}`)); return; }
        pending = pending.subarray(10);   // IPv4 bound address in the reply
        socket.write(`GET /bytes/${args.bytes} HTTP/1.1\r\nHost: ${args.address}:${args.port}\r\nConnection: close\r\n\r\n`);
        stage = 'headers';
      }
      if (stage === 'headers') {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(pending.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        const rest = pending.subarray(end + 4);
        pending = Buffer.alloc(0);
        stage = 'body';
        body(rest, now);
      }
    });
    socket.once('end', () => resolve());
  });
  clearTimeout(timer);
  const ended = performance.now();
  socket.destroy();
  process.stdout.write(JSON.stringify({
    status,
    bytes: received,
    sha256: hash.digest('hex'),
    seconds: (ended - started) / 1000,
    bodySeconds: (last - firstBodyAt) / 1000,
    maxGapMs,
    maxGapAtBytes,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`socks-fetch: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}\n`);
  process.exit(2);
});
