/**
 * HTTP proxy: CONNECT tunnels and absolute-URI forwarding of plain HTTP with keep-alive on the
 * client connection. Requests are handled one at a time; pipelined requests wait in the buffer.
 * Heads are rewritten (origin-form target, Host, hop-by-hop headers dropped); bodies in both
 * directions are forwarded byte for byte as framed by http-parse's BodyReader.
 */
import net from 'node:net';
import { errorCode, errorMessage } from '../errors';
import { basicAuthMatches } from './auth';
import { dialFailureReply } from './dial-errors';
import { isValidHostname } from './hostname';
import {
  BodyReader,
  findHeadEnd,
  headerTokens,
  headerValues,
  HttpParseError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  requestFraming,
  ResponseHead,
  responseFraming,
  skipLeadingNewlines,
} from './http-parse';
import { dialFor, replyAndClose, Session, startTunnel } from './session';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** Never forwarded: they describe one hop, not the message (RFC 9110 section 7.6.1). */
const HOP_BY_HOP = ['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'te', 'upgrade', 'proxy-authenticate'];
/** Framing headers stay even if a peer lists them in Connection: the body is forwarded as framed. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'host']);

export function errorResponse(status: number, message: string, extra: string[] = []): Buffer {
  const body = `${status} ${STATUS_TEXT[status] ?? 'Error'}: ${message}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...extra,
  ];
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body, 'utf8');
}

export function parseAuthority(authority: string, defaultPort: number | null): { host: string; port: number } | null {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return null;
    host = authority.slice(1, close);
    const rest = authority.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return null;
    portText = rest ? rest.slice(1) : undefined;
    if (net.isIPv6(host) === false) return null;
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon >= 0 ? authority.slice(0, colon) : authority;
    portText = colon >= 0 ? authority.slice(colon + 1) : undefined;
    if (!isValidHostname(host) || host.includes(':')) return null;
  }
  let port: number;
  if (portText === undefined || portText === '') {
    if (defaultPort === null) return null;
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) return null;
    port = Number(portText);
  }
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

interface Upstream {
  socket: net.Socket;
  key: string;
  buf: Buffer;
  reusable: boolean;
  gone: boolean;
}

interface Exchange {
  method: string;
  reqBody: BodyReader;
  reqDone: boolean;
  res: ResponseHead | null;
  resBody: BodyReader | null;
  resDone: boolean;
  headScan: number;
  sentToClient: boolean;
  keepAliveClient: boolean;
  closeClientAfter: boolean;
  clientVersion: '1.0' | '1.1';
  head: Buffer;
  dest: { host: string; port: number };
  /** Sent on a kept-alive origin connection, which the origin may have closed meanwhile. */
  reused: boolean;
  retried: boolean;
}

type State = 'head' | 'dial' | 'body' | 'wait' | 'tunnel' | 'closed';

export function handleHttp(session: Session, first: Buffer): void {
  new HttpProxySession(session).start(first);
}

class HttpProxySession {
  private cbuf: Buffer = Buffer.alloc(0);
  private scanFrom = 0;
  private state: State = 'head';
  private ex: Exchange | null = null;
  private up: Upstream | null = null;
  private readonly pauses = new Set<string>();
  private clientEnded = false;
  private readonly client: net.Socket;

  constructor(private readonly session: Session) {
    this.client = session.socket;
  }

  start(first: Buffer): void {
    const c = this.client;
    c.on('data', (chunk: Buffer) => this.onClientData(chunk));
    c.on('end', () => this.onClientEnd());
    c.on('close', () => this.teardown());
    c.on('drain', () => {
      if (this.up && !this.up.gone) this.up.socket.resume();
    });
    // Between requests and during slow exchanges; a tunnel uses the relay's own idle timer.
    c.setTimeout(this.session.config.timeouts.idleMs, () => {
      this.session.log.debug(`http ${c.remoteAddress}:${c.remotePort}: idle timeout`);
      c.destroy();
    });
    this.onClientData(first);
  }

  // ---- client side ----

  private onClientData(chunk: Buffer): void {
    this.cbuf = this.cbuf.length === 0 ? chunk : Buffer.concat([this.cbuf, chunk]);
    this.guard(() => this.pump());
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    this.guard(() => {
      this.pump();
      if (this.state === 'tunnel' || this.state === 'closed') return;
      // A CONNECT being dialled: the relay sees the EOF (readableEnded) when it starts.
      if (this.state === 'dial' && !this.ex) return;
      // Part of a request head and then EOF: it can never be completed; say so, then close.
      if (!this.ex) return this.cbuf.length > 0 ? this.fail(400, 'incomplete request: the client closed its side') : this.closeClient();
      // A client may half-close after its request (printf ... | nc -N): answer, then close.
      this.ex.closeClientAfter = true;
      if (this.state === 'body') this.abort('client closed in the middle of its request body');
    });
  }

  /** A bug in here must cost one connection, never the process. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof HttpParseError) this.fail(err.status, err.message);
      else {
        this.session.log.warn(`http internal error: ${errorMessage(err)}`);
        this.fail(502, 'internal proxy error');
      }
    }
  }

  private pause(reason: string): void {
    this.pauses.add(reason);
    this.client.pause();
  }

  private resume(reason: string): void {
    this.pauses.delete(reason);
    if (this.pauses.size === 0 && this.state !== 'closed') this.client.resume();
  }

  private pump(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      switch (this.state) {
        case 'head': {
          if (this.ex) return;
          const skip = skipLeadingNewlines(this.cbuf);
          if (skip > 0) {
            this.cbuf = this.cbuf.subarray(skip);
            this.scanFrom = 0;
          }
          const end = findHeadEnd(this.cbuf, this.scanFrom);
          if (end < 0) {
            if (this.cbuf.length > MAX_HEAD_BYTES) throw new HttpParseError(431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
            this.scanFrom = this.cbuf.length;
            return;
          }
          if (end > MAX_HEAD_BYTES) throw new HttpParseError(431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
          const head = this.cbuf.subarray(0, end);
          this.cbuf = this.cbuf.subarray(end);
          this.scanFrom = 0;
          this.onRequest(parseRequestHead(head));
          break;
        }
        case 'body': {
          const ex = this.ex!;
          const n = ex.reqBody.feed(this.cbuf);
          if (n > 0) {
            this.writeUp(this.cbuf.subarray(0, n));
            this.cbuf = this.cbuf.subarray(n);
          }
          if (!ex.reqBody.done) {
            if (this.clientEnded) this.abort('client closed in the middle of its request body');
            return;
          }
          ex.reqDone = true;
          this.state = 'wait';
          break;
        }
        case 'wait':
          // Pipelined input waits for the current response, within a bound.
          if (this.cbuf.length > MAX_HEAD_BYTES) this.pause('pipeline');
          return;
        default:
          return;
      }
    }
  }

  private onRequest(req: RequestHead): void {
    const { session } = this;
    session.handshakeDone();
    if (!session.conn) return this.fail(dialFailureReply('ELIMIT').http, 'too many connections');
    const auth = session.config.proxy.auth;
    if (auth && !basicAuthMatches(auth, headerValues(req.headers, 'proxy-authorization')[0])) {
      return this.fail(407, 'proxy authentication required', ['Proxy-Authenticate: Basic realm="braid"']);
    }
    if (req.method === 'CONNECT') return this.onConnect(req);

    const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(req.target);
    if (!m) {
      if (/^https:\/\//i.test(req.target)) return this.fail(400, 'https:// URIs need CONNECT');
      return this.fail(400, `request target must be an absolute http:// URI, got ${JSON.stringify(req.target.slice(0, 80))}`);
    }
    const authority = m[1].slice(m[1].lastIndexOf('@') + 1);
    const dest = parseAuthority(authority, 80);
    if (!dest) return this.fail(400, `bad host in ${JSON.stringify(req.target.slice(0, 80))}`);
    let path = m[2] || '/';
    if (path.startsWith('?')) path = '/' + path;

    const framing = requestFraming(req);
    const connTokens = [...headerTokens(req.headers, 'connection'), ...headerTokens(req.headers, 'proxy-connection')];
    const keepAliveClient = req.version === '1.1' && !connTokens.includes('close');
    const upgrade = connTokens.includes('upgrade') && headerValues(req.headers, 'upgrade').length > 0;

    const drop = new Set([...HOP_BY_HOP, ...connTokens.filter((t) => !FRAMING.has(t)), 'host']);
    const lines = [`${req.method} ${path} HTTP/${req.version}`, `Host: ${authority}`];
    for (const h of req.headers) if (!drop.has(h.lname)) lines.push(h.line);
    if (upgrade) {
      for (const h of req.headers) if (h.lname === 'upgrade') lines.push(h.line);
      lines.push('Connection: Upgrade');
    }
    const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');

    this.ex = {
      method: req.method,
      reqBody: new BodyReader(framing, 400),
      reqDone: false,
      res: null,
      resBody: null,
      resDone: false,
      headScan: 0,
      sentToClient: false,
      keepAliveClient,
      closeClientAfter: !keepAliveClient || this.clientEnded,
      clientVersion: req.version,
      head,
      dest,
      reused: false,
      retried: false,
    };
    session.conn.protocol = 'http';
    this.sendRequest(this.ex);
  }

  private sendRequest(ex: Exchange): void {
    const { dest } = ex;
    this.state = 'dial';
    this.pause('dial');
    this.getUpstream(dest.host, dest.port).then(
      ({ up, reused }) => {
        if (this.state !== 'dial' || this.ex !== ex) return;
        ex.reused = reused;
        this.resume('dial');
        this.writeUp(ex.head);
        this.state = ex.reqDone ? 'wait' : 'body';
        this.guard(() => this.pump());
        // The origin may already have answered while we were writing.
        if (up.buf.length > 0) this.guard(() => this.processResponse());
      },
      (err) => {
        if (this.state !== 'dial') return;
        const code = errorCode(err);
        const reply = dialFailureReply(code);
        this.session.log.info(`http ${dest.host}:${dest.port}: ${code} ${errorMessage(err)}`);
        this.fail(reply.http, `${reply.reason} (${dest.host}:${dest.port}, ${code})`);
      },
    );
  }

  private onConnect(req: RequestHead): void {
    const dest = parseAuthority(req.target, null);
    if (!dest) return this.fail(400, `CONNECT target must be host:port, got ${JSON.stringify(req.target.slice(0, 80))}`);
    this.dropUpstream();
    this.session.conn!.protocol = 'http-connect';
    this.state = 'dial';
    this.pause('dial');
    dialFor(this.session, dest.host, dest.port).then(
      (res) => {
        if (this.state !== 'dial' || this.client.destroyed) {
          res.socket.destroy();
          return;
        }
        this.state = 'tunnel';
        this.pauses.clear();
        this.client.setTimeout(0);
        this.client.removeAllListeners('drain');
        this.writeClient(Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1'));
        this.session.log.debug(`http CONNECT ${dest.host}:${dest.port} via ${res.address}`);
        const early = this.cbuf;
        this.cbuf = Buffer.alloc(0);
        startTunnel(this.session, res.socket, early);
      },
      (err) => {
        if (this.state !== 'dial') return;
        const code = errorCode(err);
        const reply = dialFailureReply(code);
        this.session.log.info(`http CONNECT ${dest.host}:${dest.port}: ${code} ${errorMessage(err)}`);
        this.fail(reply.http, `${reply.reason} (${dest.host}:${dest.port}, ${code})`);
      },
    );
  }

  // ---- upstream side ----

  private async getUpstream(host: string, port: number): Promise<{ up: Upstream; reused: boolean }> {
    const key = `${host.toLowerCase()}:${port}`;
    const cur = this.up;
    if (cur && cur.key === key && cur.reusable && !cur.gone && !cur.socket.destroyed) {
      cur.buf = Buffer.alloc(0);
      return { up: cur, reused: true };
    }
    this.dropUpstream();
    const res = await dialFor(this.session, host, port);
    const up: Upstream = { socket: res.socket, key, buf: Buffer.alloc(0), reusable: true, gone: false };
    if (this.state === 'closed') {
      res.socket.destroy();
      throw new Error('client went away');
    }
    this.up = up;
    up.socket.on('data', (chunk: Buffer) => {
      if (up !== this.up) return;
      up.buf = up.buf.length === 0 ? chunk : Buffer.concat([up.buf, chunk]);
      if (this.state === 'dial') return; // head not written yet; processed right after
      this.guard(() => this.processResponse());
    });
    up.socket.on('drain', () => this.resume('up-drain'));
    up.socket.on('end', () => this.guard(() => this.onUpstreamGone(up)));
    up.socket.on('close', () => this.guard(() => this.onUpstreamGone(up)));
    // A relay's connection comes paused (its first bytes held back until someone reads); a 'data'
    // listener alone does not restart a stream that was paused explicitly.
    up.socket.resume();
    return { up, reused: false };
  }

  private dropUpstream(): void {
    if (this.up) {
      this.up.gone = true;
      this.up.socket.destroy();
      this.up = null;
    }
  }

  private processResponse(): void {
    const up = this.up;
    const ex = this.ex;
    if (!up) return;
    if (!ex || ex.resDone) {
      // Bytes from an origin we did not ask anything: it cannot be reused safely.
      if (up.buf.length > 0) this.dropUpstream();
      return;
    }
    for (let guard = 0; guard < 1000 && up.buf.length > 0; guard++) {
      if (!ex.res) {
        const end = findHeadEnd(up.buf, ex.headScan);
        if (end < 0) {
          if (up.buf.length > MAX_HEAD_BYTES) return this.upstreamFail('response head from origin is too large');
          ex.headScan = up.buf.length;
          return;
        }
        let res: ResponseHead;
        try {
          res = parseResponseHead(up.buf.subarray(0, end));
        } catch (err) {
          return this.upstreamFail(errorMessage(err));
        }
        up.buf = up.buf.subarray(end);
        ex.headScan = 0;
        if (res.status === 101) return this.onSwitchingProtocols(res);
        if (res.status >= 100 && res.status < 200) {
          // Interim responses (100 Continue) pass through; the final one follows.
          if (ex.clientVersion === '1.1') this.writeClient(this.responseHead(res, false));
          continue;
        }
        let framing;
        try {
          framing = responseFraming(ex.method, res);
        } catch (err) {
          return this.upstreamFail(errorMessage(err));
        }
        const originTokens = headerTokens(res.headers, 'connection');
        up.reusable = res.version === '1.1' && !originTokens.includes('close') && framing.kind !== 'close';
        if (framing.kind === 'close') ex.closeClientAfter = true;
        ex.res = res;
        ex.resBody = new BodyReader(framing, 502);
        this.writeClient(this.responseHead(res, ex.closeClientAfter));
        if (ex.resBody.done) return this.responseDone();
        continue;
      }
      const n = ex.resBody!.feed(up.buf);
      if (n > 0) {
        this.writeClient(up.buf.subarray(0, n));
        up.buf = up.buf.subarray(n);
      }
      if (ex.resBody!.done) return this.responseDone();
      return;
    }
  }

  private responseHead(res: ResponseHead, close: boolean): Buffer {
    const tokens = headerTokens(res.headers, 'connection').filter((t) => !FRAMING.has(t));
    const drop = new Set([...HOP_BY_HOP, ...tokens]);
    const lines = [res.statusLine];
    for (const h of res.headers) if (!drop.has(h.lname)) lines.push(h.line);
    if (close) lines.push('Connection: close');
    return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  }

  private onSwitchingProtocols(res: ResponseHead): void {
    const up = this.up!;
    const lines = [res.statusLine];
    for (const h of res.headers) if (h.lname !== 'keep-alive' && h.lname !== 'proxy-connection') lines.push(h.line);
    this.writeClient(Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'));
    if (up.buf.length > 0) this.writeClient(up.buf);
    this.state = 'tunnel';
    this.pauses.clear();
    this.client.setTimeout(0);
    this.client.removeAllListeners('drain');
    up.socket.removeAllListeners('data');
    up.socket.removeAllListeners('end');
    up.socket.removeAllListeners('close');
    up.socket.removeAllListeners('drain');
    this.up = null;
    const early = this.cbuf;
    this.cbuf = Buffer.alloc(0);
    startTunnel(this.session, up.socket, early);
  }

  private responseDone(): void {
    const ex = this.ex!;
    const up = this.up;
    ex.resDone = true;
    if (up && up.buf.length > 0) up.reusable = false;
    if (!ex.reqDone || ex.closeClientAfter) {
      // An answer before the whole request was sent leaves the request stream unsynchronised.
      this.dropUpstream();
      this.closeClient();
      return;
    }
    if (up && !up.reusable) this.dropUpstream();
    this.ex = null;
    this.state = 'head';
    this.resume('pipeline');
    this.pump();
  }

  private onUpstreamGone(up: Upstream): void {
    if (up !== this.up || up.gone) return;
    up.gone = true;
    up.reusable = false;
    const ex = this.ex;
    this.up = null;
    up.socket.destroy();
    if (!ex || ex.resDone) return;
    if (ex.res && ex.resBody?.framing.kind === 'close') {
      ex.resBody.done = true;
      ex.reqDone = true;
      this.responseDone();
      return;
    }
    if (!ex.res && !ex.sentToClient && ex.reused && !ex.retried && ex.reqDone && ex.reqBody.framing.kind === 'none') {
      // The origin closed its idle keep-alive connection as we reused it: the request was never
      // processed, and one without a body can be sent again on a fresh connection.
      ex.retried = true;
      ex.headScan = 0;
      this.session.log.debug(`http ${ex.dest.host}:${ex.dest.port}: kept-alive connection closed by origin, retrying`);
      this.sendRequest(ex);
      return;
    }
    if (ex.sentToClient) {
      // A truncated body can only be signalled by cutting the client connection.
      this.client.destroy();
      this.state = 'closed';
      return;
    }
    this.fail(502, 'origin closed the connection without a complete response');
  }

  private upstreamFail(message: string): void {
    this.session.log.info(`http upstream: ${message}`);
    this.dropUpstream();
    if (this.ex?.sentToClient) {
      this.state = 'closed';
      this.client.destroy();
    } else this.fail(502, message);
  }

  // ---- writing and closing ----

  private writeUp(data: Buffer): void {
    const up = this.up;
    if (!up || up.gone) return;
    if (this.session.conn) this.session.conn.bytesUp += data.length;
    if (!up.socket.write(data)) this.pause('up-drain');
  }

  private writeClient(data: Buffer): void {
    if (this.client.destroyed) return;
    if (this.ex) this.ex.sentToClient = true;
    if (this.session.conn) this.session.conn.bytesDown += data.length;
    if (!this.client.write(data) && this.up) this.up.socket.pause();
  }

  private fail(status: number, message: string, extra: string[] = []): void {
    if (this.state === 'closed') return;
    const sent = this.ex?.sentToClient ?? false;
    this.state = 'closed';
    this.dropUpstream();
    this.session.log.debug(`http ${this.client.remoteAddress}:${this.client.remotePort}: ${status} ${message}`);
    if (sent) this.client.destroy();
    else replyAndClose(this.client, errorResponse(status, message, extra));
  }

  private abort(why: string): void {
    this.session.log.debug(`http ${this.client.remoteAddress}:${this.client.remotePort}: ${why}`);
    this.state = 'closed';
    this.dropUpstream();
    this.client.destroy();
  }

  private closeClient(): void {
    this.state = 'closed';
    this.client.setTimeout(0);
    replyAndClose(this.client);
  }

  private teardown(): void {
    if (this.state === 'tunnel') return;
    this.state = 'closed';
    this.dropUpstream();
  }
}
