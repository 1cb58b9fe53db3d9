/**
 * Runnable upload sink for the bench's upload direction:
 *   node dist/test/bench/upload-sink.js --port N [--tcp] [--host ADDR]
 * Accepts `PUT|POST /sink` on a socket made by our addon (MPTCP unless --tcp), reads the whole body
 * and answers 200 with `{"bytes":N,"sha256":"…"}` only after the last byte arrived, so the client's
 * total time covers the whole upload. Prints `listening <port>` when ready.
 *
 * The body is hashed so the bench can prove every byte came through intact (`/sink?hash=0` only
 * counts: unshaped, on a 2-core machine, hashing would take CPU from the proxies measured).
 */
import crypto from 'node:crypto';
import http from 'node:http';
import { listenFd } from '../../electron/core/native/mptcp';

function parseArgs(argv: string[]): { port: number; host: string; mptcp: boolean } {
  const out = { port: 0, host: '::', mptcp: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--tcp') out.mptcp = false;
    else if (a === '--port') {
      out.port = Number(value());
      if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('--port must be 0..65535');
    } else if (a === '--host') out.host = value();
    else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    if ((req.method !== 'PUT' && req.method !== 'POST') || !(req.url ?? '').startsWith('/sink')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try PUT /sink\n');
      return;
    }
    const hash = (req.url ?? '').includes('hash=0') ? null : crypto.createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash?.update(chunk);
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ bytes, sha256: hash ? hash.digest('hex') : null }) + '\n');
    });
    req.on('error', () => res.destroy());
  });
  const fd = listenFd({ host: args.host, port: args.port, dualStack: args.host === '::', mptcp: args.mptcp });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => resolve());
  });
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : args.port} ${args.mptcp ? 'mptcp' : 'tcp'}\n`);
  const stop = (): void => { server.close(); server.closeAllConnections(); setTimeout(() => process.exit(0), 500).unref(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`upload-sink: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}\n`);
  process.exit(2);
});
