// The native addon against the real kernel, on loopback: MPTCP sockets, errors with errno names,
// fallback detection, and no fd leaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { supported, listenFd, connectFd, socketInfo, closeFd } from '../electron/core/native/mptcp';

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

function serve(fd: number | null, onConn: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(onConn);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const ready = () => resolve({ server, port: (server.address() as net.AddressInfo).port });
    if (fd === null) server.listen(0, '127.0.0.1', ready);
    else server.listen({ fd }, ready);
  });
}

function echoOnce(sock: net.Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const timer = setTimeout(() => reject(new Error('echo timed out')), 5000);
    sock.on('data', (d) => {
      parts.push(d);
      n += d.length;
      if (n >= payload.length) {
        clearTimeout(timer);
        resolve(Buffer.concat(parts));
      }
    });
    sock.on('error', reject);
    sock.write(payload);
  });
}

const echo = (s: net.Socket) => s.pipe(s);

test('this kernel gives MPTCP sockets', () => {
  const s = supported();
  assert.equal(s.mptcp, true, `MPTCP unavailable: ${s.reason}`);
  assert.equal(s.reason, null);
  assert.equal(typeof s.fullInfo, 'boolean');
});

test('MPTCP listen + connect over loopback carries data and reports MPTCP', async () => {
  const { server, port } = await serve(listenFd({ host: '127.0.0.1', port: 0 }), echo);
  try {
    const fd = await connectFd({ address: '127.0.0.1', port });
    const sock = new net.Socket({ fd, readable: true, writable: true });
    const payload = Buffer.alloc(256 * 1024, 7);
    const back = await echoOnce(sock, payload);
    assert.ok(back.equals(payload));
    const info = socketInfo(fd);
    assert.equal(info.mptcp, true);
    assert.equal(info.fallback, false);
    assert.ok(info.subflows.length >= 1);
    const sf = info.subflows[0];
    assert.equal(sf.localAddress, '127.0.0.1');
    assert.equal(sf.remotePort, port);
    assert.equal(sf.interface, 'lo');
    assert.ok(sf.bytesSent >= payload.length, `subflow bytesSent ${sf.bytesSent}`);
    assert.ok(sf.bytesReceived >= payload.length, `subflow bytesReceived ${sf.bytesReceived}`);
    if (supported().fullInfo) assert.ok(info.bytesSent >= payload.length, `connection bytesSent ${info.bytesSent}`);
    sock.destroy();
  } finally {
    server.close();
  }
});

test('IPv6 dual-stack listener accepts IPv4 and IPv6 MPTCP clients', async () => {
  const { server, port } = await serve(listenFd({ host: '::', port: 0, dualStack: true }), echo);
  try {
    for (const address of ['127.0.0.1', '::1']) {
      const fd = await connectFd({ address, port });
      const sock = new net.Socket({ fd, readable: true, writable: true });
      const back = await echoOnce(sock, Buffer.from('ping'));
      assert.equal(back.toString(), 'ping');
      const info = socketInfo(fd);
      assert.equal(info.subflows[0].family, address.includes(':') ? 6 : 4);
      sock.destroy();
    }
  } finally {
    server.close();
  }
});

test('a destination that does not speak MPTCP works and is reported as fallback', async () => {
  const { server, port } = await serve(null, echo);
  try {
    const fd = await connectFd({ address: '127.0.0.1', port });
    const sock = new net.Socket({ fd, readable: true, writable: true });
    assert.equal((await echoOnce(sock, Buffer.from('hi'))).toString(), 'hi');
    const info = socketInfo(fd);
    assert.equal(info.mptcp, true);
    assert.equal(info.fallback, true);
    assert.equal(info.subflows.length, 1);
    sock.destroy();
  } finally {
    server.close();
  }
});

test('plain TCP mode gives a TCP socket described as one path', async () => {
  const { server, port } = await serve(listenFd({ host: '127.0.0.1', port: 0, mptcp: false }), echo);
  try {
    const fd = await connectFd({ address: '127.0.0.1', port, mptcp: false });
    const sock = new net.Socket({ fd, readable: true, writable: true });
    await echoOnce(sock, Buffer.from('x'));
    const info = socketInfo(fd);
    assert.equal(info.mptcp, false);
    assert.equal(info.fallback, false);
    assert.equal(info.subflows.length, 1);
    sock.destroy();
  } finally {
    server.close();
  }
});

test('errors carry the errno name and the syscall', async () => {
  const closed = await serve(null, echo);
  const port = closed.port;
  await new Promise((r) => closed.server.close(r));
  await assert.rejects(connectFd({ address: '127.0.0.1', port }), (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal(e.syscall, 'connect');
    assert.match(e.message, /127\.0\.0\.1:\d+/);
    return true;
  });
  const taken = await serve(listenFd({ host: '127.0.0.1', port: 0 }), echo);
  try {
    assert.throws(() => listenFd({ host: '127.0.0.1', port: taken.port, reuseAddr: false }), { code: 'EADDRINUSE', syscall: 'bind' });
  } finally {
    taken.server.close();
  }
  assert.throws(() => listenFd({ host: 'localhost', port: 0 }), /option 'host'/);
  await assert.rejects(connectFd({ address: '127.0.0.1', port: 1, device: 'no-such-dev0' }), { code: 'ENODEV' });
  assert.throws(() => socketInfo(987654), { code: 'EBADF' });
});

test('connect times out with ETIMEDOUT on a destination that never answers', async () => {
  // A TCP listener nobody accepts from: once its accept queue is full the kernel drops further SYNs,
  // which is what a black-holed destination looks like from here (loopback only).
  const free = await serve(null, echo);
  await new Promise((r) => free.server.close(r));
  const lfd = listenFd({ host: '127.0.0.1', port: free.port, backlog: 1, mptcp: false });
  const fillers: number[] = [];
  try {
    let timedOut = false;
    for (let i = 0; i < 8 && !timedOut; i++) {
      try {
        fillers.push(await connectFd({ address: '127.0.0.1', port: free.port, mptcp: false, timeoutMs: 400 }));
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'ETIMEDOUT');
        assert.equal((e as NodeJS.ErrnoException).syscall, 'connect');
        timedOut = true;
      }
    }
    assert.ok(timedOut, 'no connect attempt timed out');
  } finally {
    for (const fd of fillers) closeFd(fd);
    closeFd(lfd);
  }
});

test('connects, refusals and timeouts leave no fd behind', async () => {
  const { server, port } = await serve(listenFd({ host: '127.0.0.1', port: 0 }), echo);
  // A destination that never answers: a listener nobody accepts from, its queue full (see above).
  const free = await serve(null, echo);
  await new Promise((r) => free.server.close(r));
  const hangFd = listenFd({ host: '127.0.0.1', port: free.port, backlog: 1, mptcp: false });
  const fillers: number[] = [];
  const codes = new Map<string, number>();
  const attempt = async (o: { port: number; mptcp: boolean; timeoutMs: number }): Promise<void> => {
    try {
      // Until the hanging listener's queue is full its connects succeed: kept, closed at the end.
      fillers.push(await connectFd({ address: '127.0.0.1', ...o }));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'none';
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
  };
  const round = async (): Promise<void> => {
    closeFd(await connectFd({ address: '127.0.0.1', port }));
    await attempt({ port: 1, mptcp: true, timeoutMs: 3000 });            // refused
    await attempt({ port: free.port, mptcp: false, timeoutMs: 150 });    // times out
  };
  try {
    // Fill the queue and let lazily opened descriptors (libuv, the addon) appear before counting.
    for (let i = 0; i < 4; i++) await round();
    const before = openFds();
    codes.clear();
    for (let i = 0; i < 30; i++) await round();
    assert.deepEqual(Object.fromEntries(codes), { ECONNREFUSED: 30, ETIMEDOUT: 30 }, 'every refusal and every timeout seen, with its code');
    assert.equal(openFds() - before, 0, `fds before ${before}, after ${openFds()}`);
  } finally {
    for (const fd of fillers) closeFd(fd);
    closeFd(hangFd);
    server.close();
  }
});
