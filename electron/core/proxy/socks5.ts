/**
 * SOCKS5 (RFC 1928) with optional username/password (RFC 1929). Only CONNECT is served. Input is
 * parsed incrementally: every step waits until its whole message is buffered, whatever the
 * segmentation, and every message has a fixed maximum size, so nothing grows without bound.
 */
import net from 'node:net';
import { errorCode, errorMessage } from '../errors';
import { dialFailureReply, SOCKS_REPLY } from './dial-errors';
import { dialFor, replyAndClose, Session, startTunnel } from './session';
import { isValidHostname } from './hostname';
import { credentialsMatch } from './auth';

const VERSION = 0x05;
const AUTH_VERSION = 0x01;
const METHOD_NONE = 0x00;
const METHOD_USERPASS = 0x02;
const METHOD_UNACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;
/** Bytes a client may send after its request before we have answered it (optimistic data). */
const MAX_EARLY_BYTES = 64 * 1024;

type State = 'greeting' | 'auth' | 'request' | 'connecting' | 'closed';

export function socksReply(rep: number, bind?: { address: string; port: number }): Buffer {
  const family = bind ? net.isIP(bind.address) : 0;
  if (bind && family === 6) {
    const out = Buffer.alloc(22);
    out.set([VERSION, rep, 0x00, ATYP_IPV6]);
    ipv6ToBuffer(bind.address).copy(out, 4);
    out.writeUInt16BE(bind.port, 20);
    return out;
  }
  const out = Buffer.alloc(10);
  out.set([VERSION, rep, 0x00, ATYP_IPV4]);
  if (bind && family === 4) Buffer.from(bind.address.split('.').map(Number)).copy(out, 4);
  out.writeUInt16BE(bind?.port ?? 0, 8);
  return out;
}

function ipv6ToBuffer(address: string): Buffer {
  let a = address.split('%')[0];
  const out = Buffer.alloc(16);
  // An IPv4-mapped tail ("::ffff:1.2.3.4") fills the last four bytes.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) a = a.slice(0, -v4[0].length) + '0:0';
  const [head, tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  groups.slice(0, 8).forEach((g, i) => out.writeUInt16BE(parseInt(g, 16) || 0, i * 2));
  if (v4) out.set([1, 2, 3, 4].map((i) => Number(v4[i]) & 0xff), 12);
  return out;
}

function bufferToIpv6(b: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(i).toString(16));
  // Normalised form so the dialer and logs see the usual spelling.
  return new net.SocketAddress({ address: parts.join(':'), family: 'ipv6' }).address;
}

export function handleSocks5(session: Session, first: Buffer): void {
  const { socket, config, log } = session;
  const auth = config.proxy.auth;
  let buf: Buffer = Buffer.alloc(0);
  let state: State = 'greeting';

  // Both return false so that a step can end with `return fail(...)`: nothing more to parse.
  const fail = (rep: number, why: string): false => {
    state = 'closed';
    log.debug(`socks5 ${socket.remoteAddress}:${socket.remotePort}: reply ${rep} (${why})`);
    replyAndClose(socket, socksReply(rep));
    return false;
  };
  const drop = (why: string): false => {
    state = 'closed';
    log.debug(`socks5 ${socket.remoteAddress}:${socket.remotePort}: closing (${why})`);
    replyAndClose(socket);
    return false;
  };

  const step = (): boolean => {
    switch (state) {
      case 'greeting': {
        if (buf.length < 2) return false;
        if (buf[0] !== VERSION) return drop(`version ${buf[0]}`);
        const n = buf[1];
        if (buf.length < 2 + n) return false;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        const want = auth ? METHOD_USERPASS : METHOD_NONE;
        if (!methods.includes(want)) {
          state = 'closed';
          replyAndClose(socket, Buffer.from([VERSION, METHOD_UNACCEPTABLE]));
          return false;
        }
        socket.write(Buffer.from([VERSION, want]));
        state = auth ? 'auth' : 'request';
        return true;
      }
      case 'auth': {
        if (buf.length < 2) return false;
        if (buf[0] !== AUTH_VERSION) return drop(`auth version ${buf[0]}`);
        const ulen = buf[1];
        if (buf.length < 3 + ulen) return false;
        const plen = buf[2 + ulen];
        if (buf.length < 3 + ulen + plen) return false;
        const user = buf.subarray(2, 2 + ulen).toString('utf8');
        const pass = buf.subarray(3 + ulen, 3 + ulen + plen).toString('utf8');
        buf = buf.subarray(3 + ulen + plen);
        if (!credentialsMatch(auth!, user, pass)) {
          state = 'closed';
          log.info(`socks5 ${socket.remoteAddress}:${socket.remotePort}: bad credentials`);
          replyAndClose(socket, Buffer.from([AUTH_VERSION, 0x01]));
          return false;
        }
        socket.write(Buffer.from([AUTH_VERSION, 0x00]));
        state = 'request';
        return true;
      }
      case 'request': {
        if (buf.length < 4) return false;
        if (buf[0] !== VERSION) return drop(`request version ${buf[0]}`);
        const cmd = buf[1];
        const atyp = buf[3];
        // Answered as soon as they are known: the rest of the request cannot change the answer.
        if (cmd !== CMD_CONNECT) return fail(SOCKS_REPLY.COMMAND_NOT_SUPPORTED, `command ${cmd}`);
        let host: string;
        let end: number;
        if (atyp === ATYP_IPV4) {
          end = 4 + 4 + 2;
          if (buf.length < end) return false;
          host = Array.from(buf.subarray(4, 8)).join('.');
        } else if (atyp === ATYP_IPV6) {
          end = 4 + 16 + 2;
          if (buf.length < end) return false;
          host = bufferToIpv6(buf.subarray(4, 20));
        } else if (atyp === ATYP_DOMAIN) {
          if (buf.length < 5) return false;
          const len = buf[4];
          end = 5 + len + 2;
          if (buf.length < end) return false;
          host = buf.subarray(5, 5 + len).toString('latin1');
          if (!isValidHostname(host)) return fail(SOCKS_REPLY.HOST_UNREACHABLE, `bad host name ${JSON.stringify(host)}`);
        } else {
          return fail(SOCKS_REPLY.ADDRESS_TYPE_NOT_SUPPORTED, `address type ${atyp}`);
        }
        const port = buf.readUInt16BE(end - 2);
        buf = buf.subarray(end);
        session.handshakeDone();
        if (!session.conn) return fail(dialFailureReply('ELIMIT').socks, 'connection limit reached');
        session.conn.protocol = 'socks5';
        session.conn.destination = { host, port, address: null };
        state = 'connecting';
        connect(host, port);
        return false;
      }
      case 'connecting':
        // Optimistic data is kept for after the reply, within a bound.
        if (buf.length > MAX_EARLY_BYTES) socket.pause();
        return false;
      case 'closed':
        return false;
    }
  };

  const connect = (host: string, port: number): void => {
    dialFor(session, host, port).then(
      (res) => {
        if (state !== 'connecting' || socket.destroyed) {
          res.socket.destroy();
          return;
        }
        state = 'closed';
        const bind = { address: res.socket.localAddress ?? '0.0.0.0', port: res.socket.localPort ?? 0 };
        socket.write(socksReply(SOCKS_REPLY.SUCCEEDED, bind));
        log.debug(`socks5 ${socket.remoteAddress}:${socket.remotePort} -> ${host}:${port} via ${res.address}`);
        startTunnel(session, res.socket, buf);
        buf = Buffer.alloc(0);
      },
      (err) => {
        if (state !== 'connecting') return;
        const code = errorCode(err);
        log.info(`socks5 ${host}:${port}: ${code} ${errorMessage(err)}`);
        fail(dialFailureReply(code).socks, code);
      },
    );
  };

  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    try {
      while (step()) {
        /* each step consumes a whole message or waits for more */
      }
    } catch (err) {
      // A parser bug must cost one connection, never the process.
      log.warn(`socks5 internal error: ${errorMessage(err)}`);
      fail(SOCKS_REPLY.GENERAL_FAILURE, 'internal error');
    }
  };
  // The client closed its side before its request was complete: it will never be, so answer what
  // is owed now and close, instead of holding a half-closed socket until the handshake timeout. A
  // message it had begun gets its failure reply; between messages there is nothing to answer.
  // After a complete request ('connecting') the EOF is a legitimate half-close that the tunnel keeps.
  const onEnd = (): void => {
    if (state === 'greeting' || ((state === 'auth' || state === 'request') && buf.length === 0)) drop(`client closed in the ${state} step`);
    else if (state === 'auth') {
      state = 'closed';
      replyAndClose(socket, Buffer.from([AUTH_VERSION, 0x01]));
    } else if (state === 'request') fail(SOCKS_REPLY.GENERAL_FAILURE, 'client closed before its request was complete');
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  onData(first);
}
