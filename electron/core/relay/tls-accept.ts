/**
 * The relay's side of TLS: each accepted connection becomes a server TLSSocket here rather than
 * inside tls.Server, so that the relay knows, per connection, what the addon needs to seal the
 * download (proxy/seal-tunnel.ts):
 * - the server's application traffic secret, from the socket's own 'keylog';
 * - how many records Node sent under it before the relay's first write: the TLS 1.3 session tickets
 *   (NewSessionTicket), which OpenSSL sends right after the handshake (two after a full handshake,
 *   none after a resumption here). Node tells of each only through its server's 'newSession'
 *   event, without naming the connection, so each socket gets its own small emitter as `server`
 *   (the TLSSocket option tls.Server passes itself as) and the events are counted per connection.
 * `ticketCountingWorks()` checks once that this count matches what a client receives; the relay
 * seals nothing where it does not.
 *
 * What tls.Server did for the relay is kept: the handshake timeout, a handshake error reported
 * (and the socket destroyed), and control released once secure (`_releaseControl`, as tls.Server
 * does: before it, TLS errors are only reported as '_tlsError', and an established connection
 * whose records go bad would neither error nor close). Both are Node's, not documented for callers
 * other than tls.Server.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { BraidError } from '../errors';
import { sealKeys, type SealKeys } from '../proxy/seal-tunnel';

export interface AcceptedTls {
  socket: tls.TLSSocket;
  /** the keys the addon can seal this connection's download with, if any */
  download: SealKeys | null;
  /** session tickets Node sent: the records under the server's application secret before the relay wrote */
  tickets(): number;
}

/** NSS key log line naming the server's first application traffic secret (TLS 1.3). */
const SERVER_SECRET_LINE = /^SERVER_TRAFFIC_SECRET_0 [0-9a-f]+ ([0-9a-f]+)\s*$/i;

type Controlled = tls.TLSSocket & { _releaseControl?: () => boolean };

/**
 * TLS over an accepted `raw` socket: `onSecure` once the handshake is done, or `onFail` once (the
 * socket destroyed) if it fails or does not finish within handshakeMs.
 */
export function acceptTls(
  raw: net.Socket,
  context: tls.SecureContext,
  handshakeMs: number,
  onSecure: (accepted: AcceptedTls) => void,
  onFail: (err: Error) => void,
): void {
  let tickets = 0;
  let secret: Buffer | null = null;
  const counter = new EventEmitter();
  counter.on('newSession', (_id: Buffer, _data: Buffer, done: () => void) => {
    tickets++;
    done();
  });
  const socket = new tls.TLSSocket(raw, { isServer: true, secureContext: context, server: counter as unknown as net.Server }) as Controlled;
  // The server's own secret, for sealing its download in the addon; never logged or stored.
  const onKeylog = (line: Buffer): void => {
    const m = SERVER_SECRET_LINE.exec(line.toString('latin1'));
    if (m) secret = Buffer.from(m[1], 'hex');
  };
  socket.on('keylog', onKeylog);
  let settled = false;
  const fail = (err: Error): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.destroy();
    onFail(err);
  };
  const timer = setTimeout(() => fail(new BraidError('ETIMEDOUT', `no TLS handshake within ${handshakeMs} ms`)), handshakeMs);
  socket.on('_tlsError', fail);
  socket.on('error', fail);
  const onClose = (): void => fail(new BraidError('ERELAYCLOSED', 'closed during the TLS handshake'));
  socket.once('close', onClose);
  socket.once('secure', () => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.off('keylog', onKeylog);
    socket.off('_tlsError', fail);
    socket.off('error', fail);
    socket.off('close', onClose);  // only ours: Node's own 'close' listener frees the SSL object
    // Should a runtime lack it, its errors are taken from '_tlsError' directly, which is all
    // releasing control changes.
    if (typeof socket._releaseControl !== 'function' || !socket._releaseControl()) socket.on('_tlsError', (err: Error) => socket.destroy(err));
    onSecure({ socket, download: sealKeys(socket.getCipher()?.standardName, secret), tickets: () => tickets });
  });
}

/**
 * Once per relay: a handshake over loopback with acceptTls at one end and Node's TLS client at the
 * other, where the tickets counted must be the tickets the client received (its 'session' events),
 * all before the server's first application byte. False on any difference or failure.
 */
export function ticketCountingWorks(context: tls.SecureContext, timeoutMs = 5000): Promise<boolean> {
  return new Promise((resolve) => {
    let counted = -1;
    const server = net.createServer((raw) => {
      acceptTls(raw, context, timeoutMs, (a) => {
        a.socket.on('error', () => {});
        a.socket.once('data', () => {
          counted = a.tickets();
          a.socket.end('y');
        });
      }, () => finish(false));
    });
    let client: tls.TLSSocket | null = null;
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client?.destroy();
      server.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    server.on('error', () => finish(false));
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      let received = 0;
      const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1.3' });
      client = c;
      c.on('session', () => received++);
      c.on('error', () => finish(false));
      c.once('secureConnect', () => c.write('x'));
      c.once('data', () => finish(counted >= 1 && counted === received));
    });
  });
}
