/**
 * The dialer in-process: happy-eyeballs ordering and timing on loopback addresses, the overall
 * deadline, cancellation, the losers being closed (no fd left), and the one error table.
 * A destination that hangs is made real: a listening socket nobody accepts from, its accept queue
 * full, so the kernel drops further SYNs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BraidError } from '../electron/core/errors';
import { dialFailureReply, SOCKS_REPLY } from '../electron/core/proxy/dial-errors';
import { Dialer, interleaveFamilies, ResolvedAddress } from '../electron/core/proxy/dialer';
import { FallbackMemory } from '../electron/core/proxy/fallback-memory';
import { loadNative, NativeModule } from '../electron/core/proxy/native';
import { mptcpAvailable } from './helpers/servers';
import { requireFor } from './helpers/prerequisites';
import { fdOf } from './helpers/sockets';

const native = loadNative().mod;
const mp = mptcpAvailable();

let good: net.Server;
let port: number;
let hangFd = -1;
const fillers: net.Socket[] = [];

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

before(async () => {
  good = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => good.listen({ host: '127.0.0.1', port: 0 }, () => r()));
  port = (good.address() as net.AddressInfo).port;
  if (native) {
    hangFd = native.listenFd({ host: '127.0.0.2', port, backlog: 1, mptcp: false });
    // Fill the accept queue (backlog + 1 entries on Linux); later SYNs are dropped.
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ host: '127.0.0.2', port });
      s.on('error', () => {});
      fillers.push(s);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  for (const s of fillers) s.destroy();
  if (native && hangFd >= 0) native.closeFd(hangFd);
  await new Promise<void>((r) => good.close(() => r()));
});

const at = (...addrs: string[]) => async (): Promise<ResolvedAddress[]> => addrs.map((a) => ({ address: a, family: net.isIP(a) as 4 | 6 }));

function dialer(lookup: () => Promise<ResolvedAddress[]>, opts: { connectMs?: number; mod?: NativeModule | null; attemptDelayMs?: number } = {}): Dialer {
  const mod = opts.mod === undefined ? native : opts.mod;
  return new Dialer({ mode: 'tcp', connectMs: opts.connectMs ?? 3000, native: mod, attemptDelayMs: opts.attemptDelayMs ?? 250, lookup });
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.equal((err as BraidError).code, code, String(err));
    return true;
  });
}

describe('address order', () => {
  test('families are interleaved starting with the first', () => {
    const list: ResolvedAddress[] = [
      { address: '::1', family: 6 },
      { address: '::2', family: 6 },
      { address: '1.1.1.1', family: 4 },
      { address: '2.2.2.2', family: 4 },
      { address: '3.3.3.3', family: 4 },
    ];
    assert.deepEqual(interleaveFamilies(list).map((a) => a.address), ['::1', '1.1.1.1', '::2', '2.2.2.2', '3.3.3.3']);
  });
});

for (const [name, mod] of [['native connect', native], ['net.connect (no addon)', null]] as const) {
  describe(`dialling with ${name}`, { skip: requireFor(`dialling with ${name} (dialer.test.ts)`, name === 'native connect' && !native ? 'native addon not loaded' : false) }, () => {
    test('a refused address is skipped at once', async () => {
      // The stagger delay is what a dialer that ignored the refusal would wait: made long here, so
      // that "at once" and "after the delay" are seconds apart whatever the machine's load.
      const staggerMs = 10_000;
      const t0 = Date.now();
      const r = await dialer(at('127.0.0.3', '127.0.0.1'), { mod, attemptDelayMs: staggerMs }).dial({ host: 'example', port });
      const ms = Date.now() - t0;
      r.socket.destroy();
      assert.equal(r.address, '127.0.0.1');
      assert.ok(ms < staggerMs / 2, `took ${ms} ms: the next attempt waited for the ${staggerMs} ms stagger delay`);
    });

    test('all refused rejects with ECONNREFUSED', async () => {
      await expectCode(dialer(at('127.0.0.3', '127.0.0.4'), { mod }).dial({ host: 'example', port }), 'ECONNREFUSED');
    });

    test('a resolver failure keeps its code', async () => {
      const fail = async (): Promise<ResolvedAddress[]> => {
        throw Object.assign(new Error('nope'), { code: 'ENOTFOUND' });
      };
      await expectCode(dialer(fail, { mod }).dial({ host: 'nothing.invalid', port }), 'ENOTFOUND');
    });

    test('port 0 is refused before any connect', async () => {
      await expectCode(dialer(at('127.0.0.1'), { mod }).dial({ host: 'example', port: 0 }), 'EBADPORT');
    });

    test('an aborted dial rejects with EABORTED', async () => {
      const ac = new AbortController();
      const p = dialer(() => new Promise(() => {}), { mod }).dial({ host: 'example', port, signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await expectCode(p, 'EABORTED');
    });
  });
}

describe('happy eyeballs against a destination that hangs', { skip: requireFor('happy eyeballs against a destination that hangs (dialer.test.ts)', native ? false : 'needs the native addon for a non-accepting listener') }, () => {
  test('the hanging listener really hangs', async () => {
    await expectCode(dialer(at('127.0.0.2'), { connectMs: 400 }).dial({ host: 'example', port }), 'ETIMEDOUT');
  });

  test('the next address starts after the stagger delay and wins', async () => {
    const t0 = Date.now();
    const r = await dialer(at('127.0.0.2', '127.0.0.1')).dial({ host: 'example', port });
    const ms = Date.now() - t0;
    r.socket.destroy();
    assert.equal(r.address, '127.0.0.1');
    assert.ok(ms >= 200 && ms < 2000, `won after ${ms} ms; expected about 250`);
  });

  test('the overall deadline covers every attempt', async () => {
    const t0 = Date.now();
    await expectCode(dialer(at('127.0.0.2', '127.0.0.2'), { connectMs: 700 }).dial({ host: 'example', port }), 'ETIMEDOUT');
    const ms = Date.now() - t0;
    assert.ok(ms >= 650 && ms < 2000, `gave up after ${ms} ms; expected about 700`);
  });

  test('losing attempts are closed: no file descriptor is left', async () => {
    const baseline = openFds();
    for (let i = 0; i < 10; i++) {
      const r = await dialer(at('127.0.0.2', '127.0.0.1'), { connectMs: 600 }).dial({ host: 'example', port });
      r.socket.destroy();
    }
    // The hanging attempts settle at their own timeout (the rest of connectMs); bounded wait.
    let now = openFds();
    for (let i = 0; i < 40 && now > baseline; i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = openFds();
    }
    assert.ok(now <= baseline, `${now - baseline} file descriptors leaked`);
  });

  test('MPTCP dialling works the same way', { skip: requireFor('MPTCP dialling (dialer.test.ts)', mp.ok ? false : mp.reason) }, async () => {
    // An MPTCP listener on 127.0.0.1 and, on the same port, a hanging one on 127.0.0.2.
    const mptcpServer = net.createServer((s) => s.on('error', () => {}));
    const accepted: net.Socket[] = [];
    mptcpServer.on('connection', (s) => accepted.push(s));
    await new Promise<void>((r) => mptcpServer.listen({ fd: native!.listenFd({ host: '127.0.0.1', port: 0 }) }, () => r()));
    const mport = (mptcpServer.address() as net.AddressInfo).port;
    const hang = native!.listenFd({ host: '127.0.0.2', port: mport, backlog: 1, mptcp: false });
    const hangFillers = [0, 1, 2].map(() => net.connect({ host: '127.0.0.2', port: mport }).on('error', () => {}));
    await new Promise((r) => setTimeout(r, 100));
    try {
      const d = new Dialer({ mode: 'mptcp', connectMs: 3000, native, attemptDelayMs: 250, lookup: at('127.0.0.2', '127.0.0.1') });
      const r = await d.dial({ host: 'example', port: mport });
      try {
        assert.equal(r.address, '127.0.0.1');
        // The kernel's word (SO_PROTOCOL, MPTCP_INFO) on the socket the dialer handed over.
        const info = native!.socketInfo(fdOf(r.socket));
        assert.equal(info.mptcp, true, 'the dialer made a plain TCP socket in mptcp mode');
        assert.equal(info.fallback, false, 'MPTCP to an MPTCP listener fell back');
        for (let i = 0; i < 50 && accepted.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
        assert.equal(native!.socketInfo(fdOf(accepted[0]!)).mptcp, true, 'the server accepted a plain TCP connection');
      } finally {
        r.socket.destroy();
      }
      // The same dial in tcp mode gives a TCP socket: the check above tells the two apart.
      const t = await new Dialer({ mode: 'tcp', connectMs: 3000, native, attemptDelayMs: 250, lookup: at('127.0.0.1') }).dial({ host: 'example', port: mport });
      assert.equal(native!.socketInfo(fdOf(t.socket)).mptcp, false);
      t.socket.destroy();
    } finally {
      for (const s of [...hangFillers, ...accepted]) s.destroy();
      native!.closeFd(hang);
      await new Promise<void>((r) => mptcpServer.close(() => r()));
    }
  });
});

describe('destinations that do not speak MPTCP (FallbackMemory)', { skip: requireFor('fallback memory in the dialer (dialer.test.ts)', mp.ok ? false : mp.reason) }, () => {
  /** A plain TCP listener that counts the connections it accepts and what each one sent. */
  async function countingServer(mptcp: boolean): Promise<{ port: number; conns: { bytes: number; closed: boolean }[]; close(): Promise<void> }> {
    const conns: { bytes: number; closed: boolean }[] = [];
    const sockets: net.Socket[] = [];
    const srv = net.createServer((s) => {
      const c = { bytes: 0, closed: false };
      conns.push(c);
      sockets.push(s);
      s.on('data', (d) => (c.bytes += d.length));
      s.on('close', () => (c.closed = true));
      s.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(mptcp ? { fd: native!.listenFd({ host: '127.0.0.1', port: 0 }) } : { host: '127.0.0.1', port: 0 }, () => r()));
    return {
      port: (srv.address() as net.AddressInfo).port,
      conns,
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => srv.close(() => r()));
      },
    };
  }
  const until = async (ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 20));
  };

  test('the first dial is redone as plain TCP before any byte moves; later dials are plain TCP from the start', async () => {
    const srv = await countingServer(false);
    const memory = new FallbackMemory();
    const d = new Dialer({ mode: 'mptcp', connectMs: 3000, native, lookup: at('127.0.0.1'), fallbackMemory: memory });
    try {
      const first = await d.dial({ host: 'example', port: srv.port });
      assert.equal(first.fellBack, true, 'the dial did not report the fallback');
      assert.equal(native!.socketInfo(fdOf(first.socket)).mptcp, false, 'the socket handed over is still an MPTCP socket');
      assert.equal(memory.has('127.0.0.1', srv.port), true, 'the destination was not remembered');
      first.socket.write('x');
      await until(() => srv.conns.length === 2 && srv.conns[0]!.closed && srv.conns[1]!.bytes === 1);
      assert.equal(srv.conns.length, 2, 'the MPTCP attempt and the plain TCP one');
      assert.equal(srv.conns[0]!.closed, true, 'the fallen-back MPTCP socket was not closed');
      assert.equal(srv.conns[0]!.bytes, 0, 'a byte went over the fallen-back socket');
      assert.equal(srv.conns[1]!.bytes, 1);
      first.socket.destroy();

      const second = await d.dial({ host: 'example', port: srv.port });
      assert.equal(second.fellBack, true);
      assert.equal(native!.socketInfo(fdOf(second.socket)).mptcp, false);
      await until(() => srv.conns.length >= 3);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(srv.conns.length, 3, 'a remembered destination was dialled MPTCP again');
      second.socket.destroy();
    } finally {
      await srv.close();
    }
  });

  test('without a memory the fallen-back MPTCP socket is used as it is', async () => {
    const srv = await countingServer(false);
    try {
      const r = await new Dialer({ mode: 'mptcp', connectMs: 3000, native, lookup: at('127.0.0.1') }).dial({ host: 'example', port: srv.port });
      const info = native!.socketInfo(fdOf(r.socket));
      assert.equal(r.fellBack, undefined);
      assert.equal(info.mptcp && info.fallback, true, 'expected an MPTCP socket that fell back');
      r.socket.destroy();
    } finally {
      await srv.close();
    }
  });

  test('a destination that speaks MPTCP is neither redialled nor remembered', async () => {
    const srv = await countingServer(true);
    const memory = new FallbackMemory();
    try {
      const r = await new Dialer({ mode: 'mptcp', connectMs: 3000, native, lookup: at('127.0.0.1'), fallbackMemory: memory }).dial({ host: 'example', port: srv.port });
      const info = native!.socketInfo(fdOf(r.socket));
      assert.equal(r.fellBack, undefined);
      assert.equal(info.mptcp && !info.fallback, true, 'expected MPTCP end to end');
      assert.equal(memory.size, 0);
      await until(() => srv.conns.length >= 1);
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(srv.conns.length, 1);
      r.socket.destroy();
    } finally {
      await srv.close();
    }
  });

  test('in tcp mode the memory is not consulted', async () => {
    const srv = await countingServer(false);
    const memory = new FallbackMemory();
    memory.remember('127.0.0.1', srv.port);
    try {
      const r = await new Dialer({ mode: 'tcp', connectMs: 3000, native, lookup: at('127.0.0.1'), fallbackMemory: memory }).dial({ host: 'example', port: srv.port });
      assert.equal(r.fellBack, undefined, 'plain TCP asked for is not a fallback');
      r.socket.destroy();
    } finally {
      await srv.close();
    }
  });
});

describe('FallbackMemory', () => {
  test('entries expire after the TTL and are then dialled MPTCP again', () => {
    let now = 1000;
    const m = new FallbackMemory({ ttlMs: 500, now: () => now });
    m.remember('192.0.2.1', 443);
    assert.equal(m.has('192.0.2.1', 443), true);
    assert.equal(m.has('192.0.2.1', 80), false, 'the port is part of the key');
    now += 499;
    assert.equal(m.has('192.0.2.1', 443), true);
    now += 1;
    assert.equal(m.has('192.0.2.1', 443), false);
    assert.equal(m.size, 0, 'an expired entry is dropped when looked up');
  });

  test('the path the first subflow leaves by is part of the key', () => {
    const m = new FallbackMemory();
    m.remember('192.0.2.1', 443, 'wlan0');
    assert.equal(m.has('192.0.2.1', 443, 'wlan0'), true);
    assert.equal(m.has('192.0.2.1', 443, 'usb0'), false, 'a fallback on one path says nothing about another');
    assert.equal(m.has('192.0.2.1', 443), false, 'nor about the routing table\'s choice');
  });

  test('IPv6 spellings that differ only in case are one destination', () => {
    const m = new FallbackMemory();
    m.remember('2001:DB8::1', 443);
    assert.equal(m.has('2001:db8::1', 443), true);
  });

  test('it is bounded: the entry remembered longest ago goes first, and remembering again refreshes', () => {
    let now = 0;
    const m = new FallbackMemory({ max: 3, now: () => now });
    for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
      m.remember(a, 80);
      now++;
    }
    m.remember('192.0.2.1', 80); // refreshed: now the newest
    m.remember('192.0.2.4', 80);
    assert.equal(m.size, 3);
    assert.equal(m.has('192.0.2.2', 80), false, 'the oldest entry was kept');
    for (const a of ['192.0.2.1', '192.0.2.3', '192.0.2.4']) assert.equal(m.has(a, 80), true, a);
  });
});

describe('the error table', () => {
  test('each dial failure maps to its SOCKS reply and HTTP status', () => {
    const expected: [string, number, number][] = [
      ['ECONNREFUSED', SOCKS_REPLY.CONNECTION_REFUSED, 502],
      ['ENETUNREACH', SOCKS_REPLY.NETWORK_UNREACHABLE, 502],
      ['EHOSTUNREACH', SOCKS_REPLY.HOST_UNREACHABLE, 502],
      ['ETIMEDOUT', SOCKS_REPLY.TTL_EXPIRED, 504],
      ['ENOTFOUND', SOCKS_REPLY.HOST_UNREACHABLE, 502],
      ['EAI_AGAIN', SOCKS_REPLY.HOST_UNREACHABLE, 502],
      ['EPROXYLOOP', SOCKS_REPLY.NOT_ALLOWED, 403],
      ['ELIMIT', SOCKS_REPLY.GENERAL_FAILURE, 503],
      ['ESOMETHINGELSE', SOCKS_REPLY.GENERAL_FAILURE, 502],
    ];
    for (const [code, socks, http] of expected) {
      const r = dialFailureReply(code);
      assert.deepEqual([r.socks, r.http], [socks, http], code);
    }
  });
});
