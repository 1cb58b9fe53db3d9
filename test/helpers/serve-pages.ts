/**
 * Runnable web server for namespace tests that load pages in a browser:
 *   node dist/test/helpers/serve-pages.js --http PORT --https PORT --cert FILE --key FILE --marker TEXT
 * Serves, on both ports, `/` (an HTML page whose body names the scheme and the marker) and
 * `/bytes/N` (N bytes of byte-stream.ts's keystream, so a client can check them by hash).
 * Prints `listening HTTP_PORT HTTPS_PORT` when ready and one line `GET <scheme> <path>` per request.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { byteChunks } from './byte-stream';

interface Args {
  http: number;
  https: number;
  cert: string;
  key: string;
  marker: string;
}

function parseArgs(argv: string[]): Args {
  const out: Partial<Args> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i]!, argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--http' || name === '--https') out[name.slice(2) as 'http' | 'https'] = Number(value);
    else if (name === '--cert' || name === '--key' || name === '--marker') out[name.slice(2) as 'cert' | 'key' | 'marker'] = value;
    else throw new Error(`unknown argument ${name}`);
  }
  for (const k of ['http', 'https', 'cert', 'key', 'marker'] as const) if (out[k] === undefined) throw new Error(`--${k} is required`);
  return out as Args;
}

/** The page a browser loads: its visible text is what the test looks for in the DOM. */
export function pageHtml(scheme: string, marker: string): string {
  return `<!doctype html><html><head><title>${scheme} page</title></head><body><p id="m">${scheme} page ${marker}</p></body></html>\n`;
}

function handler(scheme: string, marker: string): http.RequestListener {
  return (req, res) => {
    process.stdout.write(`${req.method} ${scheme} ${req.url}\n`);
    const bytes = /^\/bytes\/(\d{1,10})$/.exec(req.url ?? '');
    if (bytes) {
      const n = Number(bytes[1]);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': n });
      const chunks = byteChunks(n);
      const next = (): void => {
        for (let r = chunks.next(); !r.done; r = chunks.next()) if (!res.write(r.value)) return void res.once('drain', next);
        res.end();
      };
      next();
      return;
    }
    if (req.url === '/' || req.url === '/index.html') {
      const body = pageHtml(scheme, marker);
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  };
}

function listen(server: net.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '::', () => resolve((server.address() as net.AddressInfo).port));
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const plain = http.createServer(handler('http', args.marker));
  const secure = https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) }, handler('https', args.marker));
  const [p1, p2] = [await listen(plain, args.http), await listen(secure, args.https)];
  process.stdout.write(`listening ${p1} ${p2}\n`);
  const stop = (): void => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`serve-pages: ${(err as Error).message}\n`);
  process.exit(2);
});
