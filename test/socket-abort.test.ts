// tcpSocketAbort (native sock_diag SOCK_DESTROY), which the path manager uses to reset a
// quality-demoted path's first subflow: on a loopback TCP connection it resets exactly that socket
// (the client sees ECONNABORTED, the server a reset), says false for a socket that is gone, finds
// an unbound socket also when given an ifindex, and refuses bad arguments with a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { tcpSocketAbort } from '../electron/core/native/kernel-socket';
import { skipUnlessRoot } from './helpers/netns';

test('tcpSocketAbort resets one TCP socket by its ends', { skip: skipUnlessRoot(), timeout: 10_000 }, async () => {
  const accepted: net.Socket[] = [];
  const srv = net.createServer((s) => void accepted.push(s.on('error', () => {})));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const c = net.connect(port, '127.0.0.1');
    await once(c, 'connect');
    const errored = once(c, 'error');
    const serverReset = new Promise<string | undefined>((resolve) => {
      const watch = (): void => void accepted[0]!.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)).once('close', () => resolve(undefined));
      if (accepted.length) watch(); else srv.once('connection', () => setImmediate(watch));
    });
    const local = { address: c.localAddress!, port: c.localPort! };
    const remote = { address: '127.0.0.1', port };
    assert.equal(tcpSocketAbort(local, remote, 1), true, 'found with the loopback ifindex although not bound to it');
    const [err] = (await errored) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNABORTED');
    assert.equal(await serverReset, 'ECONNRESET');
    assert.equal(tcpSocketAbort(local, remote), false, 'gone');
    assert.throws(() => tcpSocketAbort({ address: 'nope', port: 1 }, remote), /tcpSocketAbort: the local end address is not an IP address/);
    assert.throws(() => tcpSocketAbort(local, { address: '::1', port }), /both ends must be of one address family/);
    assert.throws(() => tcpSocketAbort(local, remote, -1), /ifindex must be a non-negative integer/);
    assert.throws(() => tcpSocketAbort(local, { address: '127.0.0.1', port: 70000 }), /port must be 0-65535/);
  } finally {
    for (const s of accepted) s.destroy();
    srv.close();
  }
});
