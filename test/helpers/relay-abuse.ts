/**
 * Runnable hostile client for relay tests:
 *   node dist/test/helpers/relay-abuse.js --host H --port P [--timeout-ms N]
 * Opens, all at once: connections that send random bytes, one that stops halfway through a TLS
 * record of a ClientHello, one that connects and says nothing, one that finishes TLS and then sends
 * half a CONNECT head. Prints one JSON line: for each, how it ended and after how long (the relay
 * must close every one of them by itself; `open` means it still was after the time limit).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

interface Outcome { kind: string; ended: 'closed' | 'open'; ms: number }

function args(): { host: string; port: number; timeoutMs: number } {
  const a = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = a.indexOf(`--${name}`);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const host = get('host');
  const port = Number(get('port'));
  if (!host || !Number.isInteger(port)) throw new Error('usage: relay-abuse --host H --port P [--timeout-ms N]');
  return { host, port, timeoutMs: Number(get('timeout-ms') ?? 15_000) };
}

function watch(kind: string, socket: net.Socket, timeoutMs: number): Promise<Outcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    socket.on('error', () => {});
    socket.resume();
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ kind, ended: 'open', ms: Date.now() - t0 });
    }, timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ kind, ended: 'closed', ms: Date.now() - t0 });
    });
  });
}

async function main(): Promise<void> {
  const { host, port, timeoutMs } = args();
  const raw = (kind: string, payload: Buffer | null): Promise<Outcome> => {
    const s = net.connect(port, host, () => {
      if (payload) s.write(payload);
    });
    return watch(kind, s, timeoutMs);
  };
  // A TLS handshake record header announcing 512 bytes of ClientHello, then only a few of them.
  const halfHello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), crypto.randomBytes(16)]);
  const halfHead = new Promise<Outcome>((resolve) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false }, () => s.write('CONNECT 192.0.2.1:80 HTTP/1.1\r\nHost: 192'));
    void watch('tls-then-half-connect', s, timeoutMs).then(resolve);
  });
  const outcomes = await Promise.all([
    raw('random-4k', crypto.randomBytes(4096)),
    raw('random-64k', crypto.randomBytes(65536)),
    raw('http-not-tls', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
    raw('half-client-hello', halfHello),
    raw('silent', null),
    halfHead,
  ]);
  process.stdout.write(JSON.stringify(outcomes) + '\n');
}

main().catch((err) => {
  process.stderr.write(`relay-abuse: ${(err as Error).message}\n`);
  process.exit(2);
});
