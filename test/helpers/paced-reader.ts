/**
 * Runnable client that reads a download at a fixed pace, as a media player reads its stream: GET
 * /bytes/N from a byte server through a SOCKS5 proxy, never taking more than RATE bytes per second
 * from its socket (from the first byte on), so the kernel's buffers and the proxy see an
 * application that reads slower than the network could deliver.
 *   node dist/test/helpers/paced-reader.js --proxy-port P --address A --port Q --bytes N --rate BYTES_PER_S
 *        [--timeout-ms MS]
 * Prints one JSON line: status, bytes, seconds.
 */
import net from 'node:net';

interface Args { proxyPort: number; address: string; port: number; bytes: number; rate: number; timeoutMs: number }

function parseArgs(argv: string[]): Args {
  const out: Args = { proxyPort: 0, address: '', port: 0, bytes: 0, rate: 0, timeoutMs: 120_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--proxy-port') out.proxyPort = Number(v);
    else if (a === '--address') out.address = v;
    else if (a === '--port') out.port = Number(v);
    else if (a === '--bytes') out.bytes = Number(v);
    else if (a === '--rate') out.rate = Number(v);
    else if (a === '--timeout-ms') out.timeoutMs = Number(v);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.proxyPort || !net.isIPv4(out.address) || !out.port || !(out.bytes > 0) || !(out.rate > 0)) {
    throw new Error('usage: paced-reader --proxy-port P --address IPv4 --port Q --bytes N --rate BYTES_PER_S');
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const socket = net.connect({ host: '127.0.0.1', port: args.proxyPort });
  const started = performance.now();
  const timer = setTimeout(() => {
    process.stderr.write(`paced-reader: not done within ${args.timeoutMs} ms\n`);
    process.exit(3);
  }, args.timeoutMs);
  let stage: 'greeting' | 'connect' | 'headers' | 'body' = 'greeting';
  let pending = Buffer.alloc(0);
  let status = 0;
  let received = 0;
  let bodyStart = 0;
  let pacer: NodeJS.Timeout | undefined;

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.write(Buffer.from([5, 1, 0])));
    // The allowance grows with time from the first body byte; the socket is paused whenever the
    // reader is ahead of it, so the kernel holds the rest (and its window closes).
    const allowance = (): number => (bodyStart ? ((performance.now() - bodyStart) / 1000) * args.rate : 0);
    const pace = (): void => {
      if (received > allowance()) socket.pause();
    };
    pacer = setInterval(() => {
      if (stage === 'body' && received <= allowance()) socket.resume();
    }, 10);
    socket.on('data', (chunk: Buffer) => {
      if (stage === 'body') {
        received += chunk.length;
        if (received >= args.bytes) {
          socket.end();
          resolve();
          return;
        }
        pace();
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      if (stage === 'greeting') {
        if (pending.length < 2) return;
        if (pending[0] !== 5 || pending[1] !== 0) return reject(new Error('SOCKS greeting refused'));
        pending = pending.subarray(2);
        socket.write(Buffer.from([5, 1, 0, 1, ...args.address.split('.').map(Number), args.port >> 8, args.port & 0xff]));
        stage = 'connect';
      }
      if (stage === 'connect') {
        if (pending.length < 10) return;
        if (pending[1] !== 0) return reject(new Error(`SOCKS CONNECT failed with reply ${pending[1]}`));
        pending = pending.subarray(10);
        socket.write(`GET /bytes/${args.bytes} HTTP/1.1\r\nHost: ${args.address}:${args.port}\r\nConnection: close\r\n\r\n`);
        stage = 'headers';
      }
      if (stage === 'headers') {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(pending.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        received = pending.length - end - 4;
        pending = Buffer.alloc(0);
        stage = 'body';
        bodyStart = performance.now();
        pace();
      }
    });
    socket.once('end', () => resolve());
  });
  clearInterval(pacer);
  clearTimeout(timer);
  socket.destroy();
  process.stdout.write(JSON.stringify({ status, bytes: received, seconds: (performance.now() - started) / 1000 }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`paced-reader: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}\n`);
  process.exit(2);
});
