/**
 * The client side of the relay's TLS: TLS 1.3 over an already connected socket, trusting the
 * certificate by the share link's pin (the relay's certificate is self-signed), not by a CA. Used by
 * the proxy's relay dialer and by `braid doctor`, which reports a mismatch rather than refusing.
 */
import net from 'node:net';
import tls from 'node:tls';
import { BraidError, errorMessage } from '../errors';
import { certificatePin, type RelayLink } from './share-link';

export interface RelayTls {
  socket: tls.TLSSocket;
  pin: string;
  pinOk: boolean;
}

/** TLS 1.3 over `raw`, and the certificate's pin (compared with the link's: the caller decides what a mismatch means). */
export function tlsToRelay(raw: net.Socket, link: RelayLink, timeoutMs: number): Promise<RelayTls> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      servername: net.isIP(link.host) ? undefined : link.host,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => fail(new BraidError('ETIMEDOUT', `no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err) => fail(new BraidError('ERELAYTLS', `TLS with the relay failed: ${errorMessage(err)}`)));
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      const der = socket.getPeerCertificate(false)?.raw;
      const pin = der ? certificatePin(der) : '';
      resolve({ socket, pin, pinOk: pin === link.pin });
    });
  });
}
