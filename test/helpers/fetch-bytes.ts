/**
 * Runnable raw client (no proxy) for namespace tests and the benchmark:
 *   node dist/test/helpers/fetch-bytes.js --address A --port P --bytes N [--tcp] [--seed S] [--no-hash]
 * Connects with our addon's connectFd (MPTCP unless --tcp), GETs /bytes/N and prints one JSON line:
 * bytes received, SHA-256, transfer seconds and Mbit/s, plus the client-side socketInfo taken when
 * the last byte arrived (before the socket closes).
 */
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { connectFd, socketInfo, type MptcpInfo } from '../../electron/core/native/mptcp';

interface Args { address: string; port: number; bytes: number; mptcp: boolean; seed?: string; hash: boolean; timeoutMs: number }

function parseArgs(argv: string[]): Args {
  const out: Partial<Args> & { mptcp: boolean; hash: boolean; timeoutMs: number } = { mptcp: true, hash: true, timeoutMs: 120_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--address') out.address = value();
    else if (a === '--port') out.port = Number(value());
    else if (a === '--bytes') out.bytes = Number(value());
    else if (a === '--tcp') out.mptcp = false;
    else if (a === '--seed') out.seed = value();
    else if (a === '--no-hash') out.hash = false;
    else if (a === '--timeout-ms') out.timeoutMs = Number(value());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.address || !Number.isInteger(out.port) || !Number.isSafeInteger(out.bytes)) {
    throw new Error('usage: fetch-bytes --address A --port P --bytes N [--tcp] [--seed S] [--no-hash]');
  }
  return out as Args;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const fd = await connectFd({ address: args.address, port: args.port, mptcp: args.mptcp, timeoutMs: 10_000 });
  const socket = new net.Socket({ fd, readable: true, writable: true });
  const hash = crypto.createHash('sha256');
  let received = 0;
  let info: MptcpInfo | null = null;
  let infoError: string | null = null;
  const started = process.hrtime.bigint();
  let firstByte: bigint | null = null;
  const result = await new Promise<{ status: number }>((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no complete response within ${args.timeoutMs} ms`)); }, args.timeoutMs);
    const path = `/bytes/${args.bytes}${args.seed ? `?seed=${encodeURIComponent(args.seed)}` : ''}`;
    const req = http.request({ createConnection: () => socket, path, method: 'GET', headers: { host: `${args.address}:${args.port}`, connection: 'close' } }, (res) => {
      res.on('data', (chunk: Buffer) => {
        if (firstByte === null) firstByte = process.hrtime.bigint();
        received += chunk.length;
        if (args.hash) hash.update(chunk);
        if (received >= args.bytes && info === null) {
          try { info = socketInfo(fd); } catch (err) { infoError = `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`; }
        }
      });
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0 }); });
      res.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    req.end();
  });
  const ended = process.hrtime.bigint();
  const seconds = Number(ended - started) / 1e9;
  socket.destroy();
  process.stdout.write(JSON.stringify({
    status: result.status,
    bytes: received,
    sha256: args.hash ? hash.digest('hex') : null,
    seconds,
    mbit: (received * 8) / seconds / 1e6,
    firstByteSeconds: firstByte === null ? null : Number((firstByte as bigint) - started) / 1e9,
    info,
    infoError,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`fetch-bytes: ${(err as { code?: string }).code ?? ''} ${(err as Error).message}\n`);
  process.exit(2);
});
