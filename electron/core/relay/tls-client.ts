/**
 * The client side of the relay's TLS: TLS 1.3 over an already connected socket, trusting the
 * certificate by the share link's pin (the relay's certificate is self-signed), not by a CA. Used by
 * the proxy's relay dialer and by `braid doctor`, which reports a mismatch rather than refusing.
 */
import net from 'node:net';
import tls from 'node:tls';
import { BraidError, errorMessage } from '../errors';
import { sealKeys, type SealKeys } from '../proxy/seal-tunnel';
import { socketFd } from '../socket-fd';
import { openRelayReading } from './open-tls';
import { certificatePin, type RelayLink } from './share-link';

export interface RelayTls {
  socket: tls.TLSSocket;
  pin: string;
  pinOk: boolean;
  /** the keys the addon can seal this connection's upload with (proxy/seal-tunnel.ts), if any */
  upload: SealKeys | null;
  /** what the relay sends is opened by the addon, not by Node's TLS (open-tls.ts) */
  opened: boolean;
}

/** NSS key log lines naming each end's first application traffic secret (TLS 1.3). */
const SECRET_LINE = /^(CLIENT|SERVER)_TRAFFIC_SECRET_0 [0-9a-f]+ ([0-9a-f]+)\s*$/i;

/**
 * TLS 1.3 over `raw`, and the certificate's pin (compared with the link's: the caller decides what
 * a mismatch means). With `open`, what the relay sends is opened by the addon when it can be.
 */
export function tlsToRelay(raw: net.Socket, link: RelayLink, timeoutMs: number, opts: { open?: boolean } = {}): Promise<RelayTls> {
  const fd = socketFd(raw);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      servername: net.isIP(link.host) ? undefined : link.host,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: false,
    });
    // The client's own secret, for sealing its upload in the addon, and the relay's, for opening
    // what it sends; never logged or stored.
    let secret: Buffer | null = null;
    let serverSecret: Buffer | null = null;
    const onKeylog = (line: Buffer): void => {
      const m = SECRET_LINE.exec(line.toString('latin1'));
      if (m && m[1].toUpperCase() === 'CLIENT') secret = Buffer.from(m[2], 'hex');
      else if (m) serverSecret = Buffer.from(m[2], 'hex');
    };
    socket.on('keylog', onKeylog);
    const timer = setTimeout(() => fail(new BraidError('ETIMEDOUT', `no TLS handshake within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err) => fail(new BraidError('ERELAYTLS', `TLS with the relay failed: ${errorMessage(err)}`)));
    socket.once('secureConnect', () => {
      // First, in the turn that read the relay's Finished (open-tls.ts says why it must be now).
      const cipher = socket.getCipher()?.standardName;
      const opened = opts.open === true && fd !== null && openRelayReading(socket, fd, cipher, serverSecret);
      clearTimeout(timer);
      socket.off('keylog', onKeylog);
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      const der = socket.getPeerCertificate(false)?.raw;
      const pin = der ? certificatePin(der) : '';
      resolve({ socket, pin, pinOk: pin === link.pin, upload: sealKeys(cipher, secret), opened });
    });
  });
}
