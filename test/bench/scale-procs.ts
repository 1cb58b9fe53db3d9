/**
 * The processes of the bench's scale section, one file, chosen by the first argument; each runs
 * inside a namespace that scale-bench.ts made.
 *
 *   hold-server --port P
 *       MPTCP listener that echoes what it gets and otherwise holds every connection open.
 *   clients --port P --count N [--socks DEST_ADDR:DEST_PORT] [--hold-seconds S]
 *       opens N connections to 127.0.0.1:P (through SOCKS5 to DEST when given, else straight, for
 *       the reference proxy), exchanges 64 bytes on each, prints `ready {...}`, then keeps them
 *       idle until SIGTERM (or S seconds).
 *   ref-proxy --port P --dest ADDR:PORT
 *       the reference: a bare Node process that, for each accepted connection, dials DEST over
 *       MPTCP with the same addon call as Braid and pipes the two sockets. On SIGUSR2 it measures the
 *       CPU time of one socketInfo() per upstream connection (what sampling every connection costs
 *       at the least) and prints `sample {...}`.
 */
import net from 'node:net';
import { connectFd, listenFd, socketInfo } from '../../electron/core/native/mptcp';

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

function hostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const port = Number(text.slice(i + 1));
  if (i <= 0 || !(port > 0 && port < 65536)) throw new Error(`bad ADDR:PORT ${text}`);
  return { host: text.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

async function holdServer(argv: string[]): Promise<void> {
  const port = Number(arg(argv, '--port'));
  const fd = listenFd({ host: '::', port, dualStack: true, backlog: 4096 });
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => s.write(d));
  });
  await new Promise<void>((r) => server.listen({ fd }, r));
  process.stdout.write(`listening ${port}\n`);
}

async function clients(argv: string[]): Promise<void> {
  const port = Number(arg(argv, '--port'));
  const count = Number(arg(argv, '--count'));
  const socksTo = arg(argv, '--socks');
  const holdSeconds = Number(arg(argv, '--hold-seconds') ?? 900);
  if (!(count >= 1 && count <= 20_000)) throw new Error('--count: 1..20000');
  const dest = socksTo ? hostPort(socksTo) : null;
  const open: net.Socket[] = [];
  let failed = 0;
  let firstError = '';
  const payload = Buffer.alloc(64, 0x61);
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      let stage = dest ? 0 : 2;
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => fail('timed out'), 20_000);
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (!firstError) firstError = why;
        failed++;
        s.destroy();
        resolve();
      };
      s.on('error', (e) => fail(e.message));
      s.once('connect', () => {
        if (dest) s.write(Buffer.from([5, 1, 0]));
        else s.write(payload);
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (stage === 0 && buf.length >= 2) {
          buf = buf.subarray(2);
          stage = 1;
          const a = dest!.host.split('.').map(Number);
          s.write(Buffer.from([5, 1, 0, 1, ...a, dest!.port >> 8, dest!.port & 0xff]));
        }
        if (stage === 1 && buf.length >= 10) {
          if (buf[1] !== 0) return fail(`SOCKS reply ${buf[1]}`);
          buf = buf.subarray(10);
          stage = 2;
          s.write(payload);
        }
        if (stage === 2 && buf.length >= payload.length) {
          stage = 3;
          clearTimeout(timer);
          s.removeAllListeners('data');
          s.removeAllListeners('error');
          s.on('error', () => {});
          open.push(s);
          resolve();
        }
      });
    });
  const started = Date.now();
  for (let i = 0; i < count; i += 100) await Promise.all(Array.from({ length: Math.min(100, count - i) }, one));
  process.stdout.write(`ready ${JSON.stringify({ open: open.length, failed, firstError, seconds: (Date.now() - started) / 1000 })}\n`);
  const stop = (): void => {
    for (const s of open) s.destroy();
    setTimeout(() => process.exit(0), 200);
  };
  process.on('SIGTERM', stop);
  setTimeout(stop, holdSeconds * 1000).unref();
  setInterval(() => {}, 60_000);
}

async function refProxy(argv: string[]): Promise<void> {
  const port = Number(arg(argv, '--port'));
  const dest = hostPort(arg(argv, '--dest') ?? '');
  const upstreamFds = new Set<number>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    client.on('error', () => {});
    client.pause();
    connectFd({ address: dest.host, port: dest.port, timeoutMs: 10_000 }).then((fd) => {
      const up = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
      up.on('error', () => {});
      upstreamFds.add(fd);
      const gone = (): void => {
        upstreamFds.delete(fd);
        client.destroy();
        up.destroy();
      };
      client.once('close', gone);
      up.once('close', gone);
      client.pipe(up);
      up.pipe(client);
      client.resume();
    }, () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  process.on('SIGUSR2', () => {
    const per: number[] = [];
    for (let pass = 0; pass < 5; pass++) {
      const t0 = process.cpuUsage();
      let n = 0;
      for (const fd of upstreamFds) {
        try {
          n += socketInfo(fd, false).subflows.length;
        } catch { /* closed meanwhile */ }
      }
      const spent = process.cpuUsage(t0);
      per.push((spent.user + spent.system) / Math.max(1, upstreamFds.size));
      if (n < 0) throw new Error('unreachable');
    }
    per.sort((a, b) => a - b);
    process.stdout.write(`sample ${JSON.stringify({ connections: upstreamFds.size, usPerConnection: per[2] })}\n`);
  });
  process.stdout.write(`listening ${port}\n`);
}

const [mode, ...rest] = process.argv.slice(2);
const run = mode === 'hold-server' ? holdServer : mode === 'clients' ? clients : mode === 'ref-proxy' ? refProxy : null;
if (!run) {
  process.stderr.write('usage: scale-procs.js hold-server|clients|ref-proxy ...\n');
  process.exit(2);
}
run(rest).catch((err) => {
  process.stderr.write(`scale-procs ${mode}: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
