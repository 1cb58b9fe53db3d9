/**
 * The soak's destination: `GET /bytes/<N>` answers N bytes of the deterministic content of
 * test/helpers/byte-stream.ts (seed "soak"), over an MPTCP listener (plain TCP with --tcp, as most
 * servers on the internet are), with nothing printed per request (a soak serves tens of thousands).
 *
 *   node soak-origin.js --port P [--tcp]
 */
import http from 'node:http';
import { listenFd } from '../../electron/core/native/mptcp';
import { byteChunks } from '../helpers/byte-stream';

export const SOAK_SEED = 'soak';
const MAX_BYTES = 64 * 1024 * 1024;

function serve(req: http.IncomingMessage, res: http.ServerResponse): void {
  const m = /^\/bytes\/(\d{1,9})$/.exec(req.url ?? '');
  const n = m ? Number(m[1]) : NaN;
  if (req.method !== 'GET' || !(n >= 0 && n <= MAX_BYTES)) {
    res.writeHead(404, { 'Content-Length': 0 }).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n });
  const chunks = byteChunks(n, SOAK_SEED);
  const pump = (): void => {
    for (;;) {
      const next = chunks.next();
      if (next.done) return void res.end();
      if (!res.write(next.value)) return void res.once('drain', pump);
    }
  };
  res.on('close', () => chunks.return(undefined));
  pump();
}

function main(): void {
  const i = process.argv.indexOf('--port');
  const port = Number(process.argv[i + 1]);
  if (i < 0 || !(port > 0 && port < 65536)) throw new Error('usage: soak-origin.js --port P');
  const fd = listenFd({ host: '::', port, dualStack: true, backlog: 1024, mptcp: !process.argv.includes('--tcp') });
  const server = http.createServer(serve);
  server.keepAliveTimeout = 5000;
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen({ fd }, () => process.stdout.write(`listening ${port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}

main();
