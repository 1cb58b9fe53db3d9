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
import { loadNative, NativeModule } from '../electron/core/proxy/native';
import { mptcpAvailable } from './helpers/servers';
import { requireFor } from './helpers/prerequisites';

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
    const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
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
