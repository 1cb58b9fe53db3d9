/**
 * Bad, hostile and truncated input to the proxy, over raw sockets against the real `braid up`.
 * Every case checks the exact reply bytes and that the proxy closed the connection; at the end
 * the same process must still serve good requests.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BraidProxy, startBraid } from './helpers/proc';
import { exchange, Exchange, readBytes, socksConnectRequest } from './helpers/raw-client';
import { loadNative } from '../electron/core/proxy/native';
import { OriginServer, refusedPort, startOrigin } from './helpers/servers';
import { skipOrFail } from './helpers/prerequisites';

const HANDSHAKE_MS = 800;
const GREETING = Buffer.from([5, 1, 0]);
const CHOSEN_NONE = Buffer.from([5, 0]);
const rep = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

let tmp: string;
let origin: OriginServer;
let origin6: OriginServer | null = null;
let proxy: BraidProxy;
let authProxy: BraidProxy;
let limitProxy: BraidProxy;
let deadPort: number;
/** A port on 127.0.0.2 whose listener never accepts and whose queue is full: connects hang. */
let hangPort = 0;
let hangFd = -1;
const hangFillers: net.Socket[] = [];

function writeConfig(name: string, config: unknown): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-malformed-'));
  origin = await startOrigin({ blobs: { small: 4096 } });
  try {
    origin6 = await startOrigin({ host: '::1', blobs: { small: 4096 } });
  } catch {
    origin6 = null; // no IPv6 loopback on this machine: the IPv6 case is skipped
  }
  deadPort = await refusedPort();
  const native = loadNative().mod;
  if (native) {
    hangPort = await refusedPort('127.0.0.2');
    hangFd = native.listenFd({ host: '127.0.0.2', port: hangPort, backlog: 1, mptcp: false });
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ host: '127.0.0.2', port: hangPort });
      s.on('error', () => {});
      hangFillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const cfg = writeConfig('fast.json', { timeouts: { handshakeMs: HANDSHAKE_MS, connectMs: 1500 } });
  proxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--config', cfg]);
  authProxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--auth', 'alice:s3cret', '--config', cfg]);
  const limited = writeConfig('limit.json', { limits: { maxConnections: 2 }, timeouts: { handshakeMs: HANDSHAKE_MS } });
  limitProxy = await startBraid(['up', '--port', '0', '--dial', 'tcp', '--config', limited]);
});

after(async () => {
  await Promise.all([proxy, authProxy, limitProxy].filter(Boolean).map((p) => p.stop()));
  await origin?.close();
  await origin6?.close();
  for (const s of hangFillers) s.destroy();
  if (hangFd >= 0) loadNative().mod?.closeFd(hangFd);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function assertClosedWith(x: Exchange, expected: Buffer, what: string): void {
  assert.equal(x.data.toString('hex'), expected.toString('hex'), `${what}: reply bytes`);
  assert.ok(x.closed, `${what}: the proxy should have closed the connection (waited ${x.ms} ms)`);
}

function httpStatus(x: Exchange): number {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(x.data.toString('latin1'));
  assert.ok(m, `expected an HTTP response, got ${JSON.stringify(x.data.toString('latin1').slice(0, 200))}`);
  return Number(m[1]);
}

function httpBody(data: Buffer): Buffer {
  const end = data.indexOf('\r\n\r\n');
  assert.ok(end >= 0, 'response has a head');
  return data.subarray(end + 4);
}

async function socks(send: Buffer[], opts: { port?: number; byteGapMs?: number; timeoutMs?: number } = {}): Promise<Exchange> {
  return exchange(opts.port ?? proxy.port, send, { byteGapMs: opts.byteGapMs, timeoutMs: opts.timeoutMs ?? 4000 });
}

async function http(text: string | Buffer, port = proxy.port, timeoutMs = 4000): Promise<Exchange> {
  return exchange(port, [typeof text === 'string' ? Buffer.from(text, 'latin1') : text], { timeoutMs });
}

describe('SOCKS5 malformed input', () => {
  test('greeting with no methods gets 05 FF', async () => {
    assertClosedWith(await socks([Buffer.from([5, 0])]), Buffer.from([5, 0xff]), 'no methods');
  });

  test('only username/password offered while no auth is configured gets 05 FF', async () => {
    assertClosedWith(await socks([Buffer.from([5, 1, 2])]), Buffer.from([5, 0xff]), 'userpass only');
  });

  test('request with version 4 after the greeting is closed without a reply', async () => {
    const x = await socks([GREETING, Buffer.from([4, 1, 0, 1, 127, 0, 0, 1, 0, 80])]);
    assertClosedWith(x, CHOSEN_NONE, 'bad request version');
  });

  for (const [cmd, name] of [[2, 'BIND'], [3, 'UDP ASSOCIATE'], [9, 'unknown command 9']] as const) {
    test(`${name} gets 0x07 (command not supported)`, async () => {
      const x = await socks([GREETING, socksConnectRequest('127.0.0.1', origin.port, cmd)]);
      assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x07)]), name);
    });
  }

  for (const atyp of [0x00, 0x02, 0x05, 0xff]) {
    test(`address type ${atyp} gets 0x08 (address type not supported)`, async () => {
      const x = await socks([GREETING, Buffer.from([5, 1, 0, atyp, 127, 0, 0, 1, 0, 80])]);
      assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x08)]), `atyp ${atyp}`);
    });
  }

  test('a domain name with control characters gets 0x04 (host unreachable)', async () => {
    const x = await socks([GREETING, socksConnectRequest('bad\u0000name\r\n', 80)]);
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x04)]), 'control characters');
  });

  test('a 255-byte label gets 0x04 (host unreachable)', async () => {
    const x = await socks([GREETING, socksConnectRequest('a'.repeat(255), 80)]);
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x04)]), 'long label');
  });

  test('a name that does not resolve gets 0x04 (host unreachable)', async () => {
    const x = await socks([GREETING, socksConnectRequest('no-such-host.invalid', 80)], { timeoutMs: 15_000 });
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x04)]), '.invalid');
  });

  test('destination port 0 gets 0x02 (not allowed)', async () => {
    const x = await socks([GREETING, socksConnectRequest('127.0.0.1', 0)]);
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x02)]), 'port 0');
  });

  test("the proxy's own address gets 0x02 (not allowed), not a loop", async () => {
    const x = await socks([GREETING, socksConnectRequest('127.0.0.1', proxy.port)]);
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x02)]), 'self');
  });

  test('a refused destination gets 0x05 (connection refused)', async () => {
    const x = await socks([GREETING, socksConnectRequest('127.0.0.1', deadPort)]);
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x05)]), 'refused');
  });

  test('a destination that never answers gets 0x06 (TTL expired) after connectMs', async (t) => {
    if (!hangPort) return skipOrFail(t, `${t.name} (proxy-malformed.test.ts)`, 'needs the native addon for a non-accepting listener');
    const x = await socks([GREETING, socksConnectRequest('127.0.0.2', hangPort)], { timeoutMs: 6000 });
    assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x06)]), 'timeout');
    assert.ok(x.ms >= 1400, `answered after ${x.ms} ms, connectMs is 1500`);
  });

  test('a truncated greeting is closed after the handshake timeout, with no reply', async () => {
    const x = await socks([Buffer.from([5, 2, 0])]);
    assertClosedWith(x, Buffer.alloc(0), 'truncated greeting');
    assert.ok(x.ms >= HANDSHAKE_MS - 100, `closed after ${x.ms} ms, before the ${HANDSHAKE_MS} ms handshake timeout`);
  });

  test('a truncated request is closed after the handshake timeout', async () => {
    const x = await socks([GREETING, Buffer.from([5, 1, 0, 3, 20, 0x61, 0x62])]);
    assertClosedWith(x, CHOSEN_NONE, 'truncated request');
    assert.ok(x.ms >= HANDSHAKE_MS - 100, `closed after ${x.ms} ms`);
  });

  test('a TLS ClientHello (not a proxy protocol) is closed without a reply', async () => {
    const x = await socks([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])]);
    assertClosedWith(x, Buffer.alloc(0), 'TLS');
  });

  test('1 MiB of random bytes after a greeting is closed without a reply', async () => {
    const junk = crypto.randomBytes(1024 * 1024);
    junk[0] = 0x06; // not version 5, whatever the random draw
    const x = await socks([GREETING, junk], { timeoutMs: 8000 });
    assertClosedWith(x, CHOSEN_NONE, 'random');
  });

  test('a SOCKS4 request gets a SOCKS4 rejection (0x5B)', async () => {
    const x = await socks([Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0x61, 0])]);
    assertClosedWith(x, Buffer.from([0, 0x5b, 0, 0, 0, 0, 0, 0]), 'socks4');
  });
});

describe('SOCKS5 authentication (RFC 1929)', () => {
  const userpass = (u: string, p: string): Buffer =>
    Buffer.concat([Buffer.from([1, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)]);

  test('wrong password gets 01 01 and a close', async () => {
    const x = await socks([Buffer.from([5, 1, 2]), userpass('alice', 'wrong')], { port: authProxy.port });
    assertClosedWith(x, Buffer.from([5, 2, 1, 1]), 'wrong password');
  });

  test('wrong user name gets 01 01 and a close', async () => {
    const x = await socks([Buffer.from([5, 1, 2]), userpass('mallory', 's3cret')], { port: authProxy.port });
    assertClosedWith(x, Buffer.from([5, 2, 1, 1]), 'wrong user');
  });

  test('a client offering only no-auth gets 05 FF', async () => {
    const x = await socks([GREETING], { port: authProxy.port });
    assertClosedWith(x, Buffer.from([5, 0xff]), 'no-auth only');
  });

  test('a bad sub-negotiation version is closed without a status', async () => {
    const bad = userpass('alice', 's3cret');
    bad[0] = 2;
    const x = await socks([Buffer.from([5, 1, 2]), bad], { port: authProxy.port });
    assertClosedWith(x, Buffer.from([5, 2]), 'auth version 2');
  });

  test('right credentials, sent byte by byte, connect', async () => {
    const x = await exchange(
      authProxy.port,
      [Buffer.from([5, 2, 0, 2]), userpass('alice', 's3cret'), socksConnectRequest('127.0.0.1', origin.port), Buffer.from('GET /blob/small HTTP/1.0\r\n\r\n')],
      { byteGapMs: 1, timeoutMs: 10_000 },
    );
    assert.equal(x.data.subarray(0, 6).toString('hex'), '050201000500');
    assert.equal(httpBody(x.data.subarray(14)).toString('hex'), origin.blobs.get('small')!.toString('hex'));
  });

  test('HTTP without Proxy-Authorization gets 407 with Proxy-Authenticate', async () => {
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nHost: x\r\n\r\n`, authProxy.port);
    assert.equal(httpStatus(x), 407);
    assert.match(x.data.toString('latin1'), /\r\nProxy-Authenticate: Basic realm="braid"\r\n/);
    assert.ok(x.closed);
  });

  test('HTTP with wrong Basic credentials gets 407', async () => {
    const cred = Buffer.from('alice:nope').toString('base64');
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${cred}\r\n\r\n`, authProxy.port);
    assert.equal(httpStatus(x), 407);
    assert.ok(x.closed);
  });

  test('HTTP with right Basic credentials is forwarded, without the credentials', async () => {
    const cred = Buffer.from('alice:s3cret').toString('base64');
    const before = origin.requests.length;
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${cred}\r\nConnection: close\r\n\r\n`, authProxy.port);
    assert.equal(httpStatus(x), 200);
    assert.equal(httpBody(x.data).toString('hex'), origin.blobs.get('small')!.toString('hex'));
    const seen = origin.requests.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].headers['proxy-authorization'], undefined);
    assert.equal(seen[0].url, '/blob/small');
  });
});

describe('HTTP malformed input', () => {
  const cases: [string, string, number][] = [
    ['garbage request line', 'GARBAGE\r\n\r\n', 400],
    ['origin-form target (not a proxy request)', 'GET /blob/small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 400],
    ['unsupported HTTP version', 'GET http://127.0.0.1/ HTTP/2.0\r\n\r\n', 505],
    ['header line without colon', 'GET http://127.0.0.1/ HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n', 400],
    ['folded header', 'GET http://127.0.0.1/ HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n', 400],
    ['Content-Length with Transfer-Encoding', 'POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ['non-numeric Content-Length', 'POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: abc\r\n\r\n', 400],
    ['conflicting Content-Lengths', 'POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['https:// URI without CONNECT', 'GET https://127.0.0.1/ HTTP/1.1\r\n\r\n', 400],
    ['CONNECT without a port', 'CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n', 400],
    ['bad host name', 'GET http://bad_host!name/ HTTP/1.1\r\n\r\n', 400],
    ['port out of range', 'GET http://127.0.0.1:70000/ HTTP/1.1\r\n\r\n', 400],
  ];
  for (const [name, text, status] of cases) {
    test(`${name} gets ${status}`, async () => {
      const x = await http(text);
      assert.equal(httpStatus(x), status);
      assert.match(x.data.toString('latin1'), /\r\nConnection: close\r\n/);
      assert.ok(x.closed, 'closed');
    });
  }

  test('a header section over 64 KiB gets 431', async () => {
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
    assert.equal(httpStatus(x), 431);
    assert.ok(x.closed);
  });

  test('100 KiB without a line end gets 431', async () => {
    const x = await http(`GET http://127.0.0.1/${'b'.repeat(100 * 1024)}`);
    assert.equal(httpStatus(x), 431);
    assert.ok(x.closed);
  });

  test('bad chunked request body gets 400', async () => {
    const x = await http(`POST ${origin.base}/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n`);
    assert.equal(httpStatus(x), 400);
    assert.ok(x.closed);
  });

  test('a truncated head is closed after the handshake timeout, with no reply', async () => {
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nHost`);
    assertClosedWith(x, Buffer.alloc(0), 'truncated head');
    assert.ok(x.ms >= HANDSHAKE_MS - 100, `closed after ${x.ms} ms`);
  });

  test('a refused destination gets 502', async () => {
    const x = await http(`GET http://127.0.0.1:${deadPort}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(httpStatus(x), 502);
    assert.match(x.data.toString('latin1'), /ECONNREFUSED/);
    assert.ok(x.closed);
  });

  test('CONNECT to a refused destination gets 502', async () => {
    const x = await http(`CONNECT 127.0.0.1:${deadPort} HTTP/1.1\r\nHost: 127.0.0.1:${deadPort}\r\n\r\n`);
    assert.equal(httpStatus(x), 502);
    assert.ok(x.closed);
  });

  test('a destination that never answers gets 504', async (t) => {
    if (!hangPort) return skipOrFail(t, `${t.name} (proxy-malformed.test.ts)`, 'needs the native addon for a non-accepting listener');
    const x = await http(`GET http://127.0.0.2:${hangPort}/ HTTP/1.1\r\nHost: x\r\n\r\n`, proxy.port, 6000);
    assert.equal(httpStatus(x), 504);
    assert.ok(x.closed);
  });

  test('a name that does not resolve gets 502', async () => {
    const x = await http('GET http://no-such-host.invalid/ HTTP/1.1\r\n\r\n', proxy.port, 15_000);
    assert.equal(httpStatus(x), 502);
    assert.ok(x.closed);
  });
});

describe('connection limit', () => {
  test('beyond maxConnections SOCKS gets 0x01 and HTTP gets 503; freed slots are usable again', async () => {
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = net.connect({ host: '127.0.0.1', port: limitProxy.port });
        s.on('error', () => {});
        held.push(s);
        s.write(Buffer.concat([GREETING, socksConnectRequest('127.0.0.1', origin.port)]));
        const reply = await readBytes(s, 12);
        assert.equal(reply.subarray(0, 4).toString('hex'), '05000500', 'held connection succeeded');
      }
      const x = await socks([GREETING, socksConnectRequest('127.0.0.1', origin.port)], { port: limitProxy.port });
      assertClosedWith(x, Buffer.concat([CHOSEN_NONE, rep(0x01)]), 'over the limit');
      const h = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\n\r\n`, limitProxy.port);
      assert.equal(httpStatus(h), 503);
      assert.ok(h.closed);
    } finally {
      for (const s of held) s.destroy();
    }
    // The proxy notices the closes asynchronously; bounded retries.
    let last: Exchange | null = null;
    for (let i = 0; i < 20; i++) {
      last = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nConnection: close\r\n\r\n`, limitProxy.port);
      if (last.data.length > 0 && httpStatus(last) === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(httpStatus(last!), 200);
  });
});

describe('random input', () => {
  test('300 random inputs behind each protocol prefix are all answered or closed, none hangs', async () => {
    const prefixes = [
      Buffer.from([5]),
      GREETING,
      Buffer.concat([GREETING, Buffer.from([5, 1, 0])]),
      Buffer.from('G'),
      Buffer.from('GET http://127.0.0.1/ HTTP/1.1\r\n'),
      Buffer.from('CONNECT '),
      Buffer.from([4]),
      Buffer.alloc(0),
    ];
    const cases = Array.from({ length: 300 }, (_, i) => {
      const tail = crypto.randomBytes(crypto.randomInt(0, 3000));
      return Buffer.concat([prefixes[i % prefixes.length], tail]);
    });
    for (let i = 0; i < cases.length; i += 50) {
      const batch = cases.slice(i, i + 50);
      const results = await Promise.all(batch.map((c) => exchange(proxy.port, [c], { timeoutMs: HANDSHAKE_MS + 4000 })));
      results.forEach((x, j) => assert.ok(x.closed, `input ${batch[j].subarray(0, 40).toString('hex')}... left open after ${x.ms} ms`));
    }
    assert.ok(proxy.alive(), proxy.stderr());
  });
});

describe('after all that, the same proxy still serves', () => {
  test('SOCKS5 IPv4 CONNECT sent byte by byte', async () => {
    const x = await exchange(
      proxy.port,
      [GREETING, socksConnectRequest('127.0.0.1', origin.port), Buffer.from('GET /blob/small HTTP/1.0\r\n\r\n')],
      { byteGapMs: 1, timeoutMs: 10_000 },
    );
    assert.equal(x.data.subarray(0, 4).toString('hex'), '05000500');
    assert.equal(httpBody(x.data.subarray(12)).toString('hex'), origin.blobs.get('small')!.toString('hex'));
  });

  test('SOCKS5 domain-name CONNECT', async () => {
    const x = await socks([GREETING, socksConnectRequest('localhost', origin.port), Buffer.from('GET /blob/small HTTP/1.0\r\n\r\n')]);
    assert.equal(x.data.subarray(0, 4).toString('hex'), '05000500');
    assert.equal(httpBody(x.data.subarray(12)).toString('hex'), origin.blobs.get('small')!.toString('hex'));
  });

  test('SOCKS5 IPv6 CONNECT', async (t) => {
    if (origin6 === null) return skipOrFail(t, `${t.name} (proxy-malformed.test.ts)`, 'no IPv6 loopback');
    const x = await socks([GREETING, socksConnectRequest('::1', origin6!.port), Buffer.from('GET /blob/small HTTP/1.0\r\n\r\n')]);
    assert.equal(x.data.subarray(0, 4).toString('hex'), '05000500');
    // IPv4 BND from a v6 connection would be wrong: the reply carries the IPv6 local address.
    assert.equal(x.data[5], 0x04);
    assert.equal(httpBody(x.data.subarray(24)).toString('hex'), origin6!.blobs.get('small')!.toString('hex'));
  });

  test('HTTP forward', async () => {
    const x = await http(`GET ${origin.base}/blob/small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(httpStatus(x), 200);
    assert.equal(httpBody(x.data).toString('hex'), origin.blobs.get('small')!.toString('hex'));
  });

  test('the process never exited', () => {
    for (const p of [proxy, authProxy, limitProxy]) assert.ok(p.alive(), `proxy exited; stderr: ${p.stderr()}`);
  });
});
