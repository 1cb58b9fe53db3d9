// The relay's speed-test endpoint (relay/speed.ts) on loopback, attacked: without the secret it
// serves nothing; every test is capped in bytes and time; each client address has a budget and a
// limit on tests at once; junk gets a clear refusal; and the secret never reaches the log.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { loadOrCreateCredentials, type RelayCredentials } from '../electron/core/relay/credentials';
import { DestinationPolicy } from '../electron/core/relay/policy';
import { RelayServer, type RelayServerOptions } from '../electron/core/relay/server';
import { SPEED_TARGET_HOST, SPEED_TARGET_PORT, type SpeedLimits } from '../electron/core/relay/speed';
import { basicAuth, HeadReader, type Head } from '../electron/core/relay/wire';

const CLI = path.resolve(__dirname, '..', 'electron', 'core', 'cli', 'main.js');
const MiB = 1024 * 1024;

let dir: string;
let creds: RelayCredentials;
const logLines: string[] = [];
const log = {
  info: (m: string) => void logLines.push(m),
  warn: (m: string) => void logLines.push(m),
  debug: (m: string) => void logLines.push(m),
};

function options(speedTest: Partial<SpeedLimits> | false): RelayServerOptions {
  return {
    host: '127.0.0.1', port: 0, credentials: creds, policy: new DestinationPolicy(), dial: 'tcp',
    maxConnections: 64, maxPerClient: 32, handshakeMs: 2000, idleMs: 30_000, connectMs: 3000, metrics: null, log, speedTest,
  };
}

async function withRelay<T>(speedTest: Partial<SpeedLimits> | false, fn: (port: number, r: RelayServer) => Promise<T>): Promise<T> {
  const r = new RelayServer(options(speedTest));
  const addr = await r.start();
  try {
    return await fn(addr.port, r);
  } finally {
    await r.stop();
  }
}

interface Tunnel {
  socket: tls.TLSSocket;
  head: Head;
  status: number;
  code: string | null;
  /** Bytes after the head, and everything that arrives later. */
  buffered: () => Buffer;
  ended: Promise<number>;   // ms from the answer to the end of the stream
}

/** TLS to the relay, a CONNECT to the speed-test target with `auth` (null: none), the answer head. */
function tunnel(port: number, auth: string | null, target = `${SPEED_TARGET_HOST}:${SPEED_TARGET_PORT}`): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    socket.on('error', () => {});
    const reader = new HeadReader();
    let buf = Buffer.alloc(0);
    let answeredAt = 0;
    let endResolve: (ms: number) => void = () => {};
    const ended = new Promise<number>((r) => (endResolve = r));
    socket.once('close', () => endResolve(performance.now() - answeredAt));
    const timer = setTimeout(() => reject(new Error('no answer head within 5 s')), 5000);
    let head: Head | null = null;
    socket.on('data', (chunk: Buffer) => {
      if (head) {
        buf = Buffer.concat([buf, chunk]);
        return;
      }
      head = reader.push(chunk);
      if (!head) return;
      clearTimeout(timer);
      answeredAt = performance.now();
      buf = Buffer.from(head.rest);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head.startLine)?.[1] ?? 0);
      resolve({ socket, head, status, code: head.headers.get('x-braid-error') ?? null, buffered: () => buf, ended });
    });
    socket.once('secureConnect', () => {
      const lines = [`CONNECT ${target} HTTP/1.1`, `Host: ${target}`];
      if (auth !== null) lines.push(`Proxy-Authorization: ${auth}`);
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
  });
}

async function firstLine(t: Tunnel, withinMs = 5000): Promise<string> {
  const start = Date.now();
  for (;;) {
    const b = t.buffered();
    const nl = b.indexOf(10);
    if (nl >= 0) return b.subarray(0, nl).toString();
    if (Date.now() - start > withinMs) throw new Error(`no line within ${withinMs} ms; got ${JSON.stringify(b.toString().slice(0, 200))}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const good = (): string => basicAuth(creds.secret);

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-speedtest-'));
  creds = loadOrCreateCredentials({ dir });
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  const leaked = logLines.filter((l) => l.includes(creds.secret) || l.includes(good().slice(6)));
  assert.deepEqual(leaked, [], 'the secret (or its Basic encoding) reached the log');
});

describe('the speed-test endpoint refuses whoever has not the secret', () => {
  test('no secret, a wrong one, a wrong user: 407 and nothing else, whatever the command', async () => {
    await withRelay({}, async (port, r) => {
      for (const auth of [null, basicAuth('x'.repeat(32)), 'Basic ' + Buffer.from(`nobody:${creds.secret}`).toString('base64')]) {
        const t = await tunnel(port, auth);
        t.socket.write('DOWN 100000000 10000\n');
        await t.ended;
        assert.equal(t.status, 407, `auth ${auth?.slice(0, 12)}`);
        assert.equal(t.code, 'EAUTH');
        // The refusal's own small body, and not one byte of test data.
        assert.ok(t.buffered().length < 200, `${t.buffered().length} bytes after a 407`);
      }
      assert.equal(r.metrics.speedBytes.values.size, 0, 'speed-test bytes were counted for refused clients');
      assert.equal([...r.metrics.authFailures.values.values()][0]?.value, 3);
    });
  });

  test('turned off (--speed-test off): 403 ESPEEDOFF even with the secret', async () => {
    await withRelay(false, async (port) => {
      const t = await tunnel(port, good());
      assert.equal(t.status, 403);
      assert.equal(t.code, 'ESPEEDOFF');
    });
  });
});

describe('every test is capped', () => {
  test('in bytes: a download asking 1 GB gets exactly the 1 MiB per-test cap, then the end', async () => {
    await withRelay({ maxBytes: MiB }, async (port) => {
      const t = await tunnel(port, good());
      assert.equal(t.status, 200);
      t.socket.write(`DOWN ${1e9} 10000\n`);
      assert.equal(await firstLine(t), `OK DOWN ${MiB} 10000`);
      await t.ended;
      const body = t.buffered().length - `OK DOWN ${MiB} 10000\n`.length;
      assert.equal(body, MiB);
    });
  });

  test('in time: an upload asking 60 s ends at the 1 s cap with the relay\'s count', async () => {
    await withRelay({ maxSeconds: 1 }, async (port) => {
      const t = await tunnel(port, good());
      t.socket.write(`UP ${1e9} 60000\n`);
      assert.equal(await firstLine(t), `OK UP ${256 * MiB} 1000`);
      const okAt = performance.now();
      let sent = 0;
      // Paced, so the test measures the cap and not this machine's TLS speed.
      const pacer = setInterval(() => {
        if (!t.socket.destroyed) t.socket.write(Buffer.alloc(64 * 1024, 1));
        sent += 64 * 1024;
      }, 10);
      try {
        const done = await new Promise<string>((resolve, reject) => {
          const check = setInterval(() => {
            const lines = t.buffered().toString().split('\n');
            if (lines[1]?.startsWith('DONE')) { clearInterval(check); resolve(lines[1]); }
            if (performance.now() - okAt > 6000) { clearInterval(check); reject(new Error('no DONE within 6 s')); }
          }, 10);
        });
        const elapsed = performance.now() - okAt;
        const [, got] = done.split(' ').map(Number);
        assert.ok(elapsed >= 950 && elapsed < 2000, `DONE after ${elapsed.toFixed(0)} ms`);
        assert.ok(got > 0 && got <= sent, `relay counted ${got} of ${sent}`);
      } finally {
        clearInterval(pacer);
      }
    });
  });

  test('in time: a download whose client never reads still ends at the cap', async () => {
    await withRelay({ maxSeconds: 1 }, async (port) => {
      const t = await tunnel(port, good());
      t.socket.write(`DOWN ${1e12} 60000\n`);
      await firstLine(t);
      t.socket.pause();
      await new Promise((r) => setTimeout(r, 1500));
      t.socket.resume();
      const ms = await Promise.race([t.ended, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
      assert.ok(ms > 0, 'the stream did not end within 10 s of the 1 s cap');
      // What was in flight when the cap hit: socket buffers, not a flood.
      assert.ok(t.buffered().length < 64 * MiB, `${t.buffered().length} bytes`);
    });
  });
});

describe('each client address is rate-limited', () => {
  test('a byte budget per window: the third 1 MiB download of a 2 MiB budget is refused with 429, and allowed again after the window', async () => {
    await withRelay({ maxBytes: MiB, budgetBytes: 2 * MiB, windowMs: 2500 }, async (port) => {
      for (let i = 0; i < 2; i++) {
        const t = await tunnel(port, good());
        t.socket.write(`DOWN ${MiB} 10000\n`);
        assert.equal(await firstLine(t), `OK DOWN ${MiB} 10000`);
        await t.ended;
      }
      const refused = await tunnel(port, good());
      assert.equal(refused.status, 429);
      assert.equal(refused.code, 'ESPEEDLIMIT');
      assert.match(refused.buffered().toString(), /budget of 127\.0\.0\.1 used up \(2 MiB of 2 MiB/);
      await new Promise((r) => setTimeout(r, 2700));
      const again = await tunnel(port, good());
      assert.equal(again.status, 200, 'still refused after the window');
      again.socket.destroy();
    });
  });

  test('a grant never exceeds what is left of the budget', async () => {
    await withRelay({ maxBytes: 4 * MiB, budgetBytes: 3 * MiB }, async (port) => {
      const a = await tunnel(port, good());
      a.socket.write(`DOWN ${2 * MiB} 10000\n`);
      await firstLine(a);
      await a.ended;
      const b = await tunnel(port, good());
      b.socket.write(`DOWN ${4 * MiB} 10000\n`);
      assert.equal(await firstLine(b), `OK DOWN ${MiB} 10000`);
      b.socket.destroy();
    });
  });

  test('tests at once: per client address, and in all', async () => {
    await withRelay({ maxPerClient: 2, maxTotal: 8 }, async (port) => {
      const open = [await tunnel(port, good()), await tunnel(port, good())];
      assert.deepEqual(open.map((t) => t.status), [200, 200]);
      const third = await tunnel(port, good());
      assert.equal(third.status, 429);
      assert.match(third.buffered().toString(), /2 speed tests from 127\.0\.0\.1 are already running/);
      for (const t of open) t.socket.destroy();
      await Promise.all(open.map((t) => t.ended));
      await new Promise((r) => setTimeout(r, 50));
      const later = await tunnel(port, good());
      assert.equal(later.status, 200, 'slots were not given back when the tests closed');
      later.socket.destroy();
    });
    await withRelay({ maxPerClient: 8, maxTotal: 1 }, async (port) => {
      const one = await tunnel(port, good());
      const two = await tunnel(port, good());
      assert.equal(two.status, 429);
      assert.match(two.buffered().toString(), /1 speed tests are running on this relay/);
      one.socket.destroy();
    });
  });
});

describe('junk is refused plainly', () => {
  test('an unknown command gets ERR and the end; no command at all is cut after commandMs; INFO tells the limits', async () => {
    await withRelay({ commandMs: 500 }, async (port) => {
      const bad = await tunnel(port, good());
      bad.socket.write('FLOOD 192.0.2.1 99999\n');
      assert.match(await firstLine(bad), /^ERR expected INFO, DOWN/);
      await bad.ended;
      const silent = await tunnel(port, good());
      const ms = await Promise.race([silent.ended, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
      assert.ok(ms >= 400 && ms < 3000, `a silent tunnel closed after ${ms} ms`);
      const info = await tunnel(port, good());
      info.socket.write('INFO\n');
      const line = await firstLine(info);
      const limits = JSON.parse(line.slice('INFO '.length)) as SpeedLimits & { remainingBytes: number };
      assert.equal(limits.maxSeconds, 10);
      assert.equal(limits.remainingBytes, limits.budgetBytes);
    });
  });
});

test('braid relay --help states the limits', async () => {
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [CLI, 'relay', '--help'], (err, stdout) => (err ? reject(err) : resolve(stdout))));
  assert.match(out, /--speed-test on\|off/);
  assert.match(out.replace(/\s+/g, ' '), /capped at 10 s and 256 MiB per test, 2 tests at once and 1024 MiB per 10 minutes per client address, and 8 tests at once in all/);
});
