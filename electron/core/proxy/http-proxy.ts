/**
 * HTTP proxy: CONNECT tunnels and absolute-URI forwarding of plain HTTP with keep-alive on the
 * client connection. Requests are handled one at a time; pipelined requests wait in the buffer.
 * Heads are rewritten (origin-form target, Host, hop-by-hop headers dropped); bodies in both
 * directions are forwarded byte for byte as framed by http-parse's BodyReader.
 *
 * This file is the per-connection state machine; the messages it builds are in http-message.ts,
 * the origin connection and response reading in http-origin.ts, the parsing in http-parse.ts.
 */
import type net from 'node:net';
import { errorCode, errorMessage } from '../errors';
import { basicAuthMatches } from './auth';
import { dialFailureReply, dialFailureText } from './dial-errors';
import { errorResponse, originRequest, parseAuthority, responseHead, switchingProtocolsHead } from './http-message';
import { detachOrigin, newExchange, openOrigin, originGone, readResponse, type Exchange, type OriginConnection } from './http-origin';
import { headerValues, HttpParseError, MAX_HEAD_BYTES, parseRequestHead, RequestHead, takeRequestHead, type ResponseHead } from './http-parse';
import { dialFor, replyAndClose, Session, startTunnel } from './session';

type State = 'head' | 'dial' | 'body' | 'wait' | 'tunnel' | 'closed';

export function handleHttp(session: Session, first: Buffer): void {
  new HttpProxySession(session).start(first);
}

class HttpProxySession {
  private cbuf: Buffer = Buffer.alloc(0);
  private scanFrom = 0;
  private state: State = 'head';
  private ex: Exchange | null = null;
  private up: OriginConnection | null = null;
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
      this.session.conn?.hold('down', false);
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
          const { head, rest, scanFrom } = takeRequestHead(this.cbuf, this.scanFrom);
          this.cbuf = rest;
          this.scanFrom = scanFrom;
          if (!head) return;
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

    const fwd = originRequest(req);
    if ('status' in fwd) return this.fail(fwd.status, fwd.message);
    this.ex = newExchange(req, fwd, this.clientEnded);
    session.conn.protocol = 'http';
    // Known now, not only once connected: a listing must not show a dialling request as a handshake.
    const dest = this.ex.dest;
    if (session.conn.destination?.host !== dest.host || session.conn.destination?.port !== dest.port) session.conn.destination = { ...dest, address: null };
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
      (err) => this.dialFailed(err, 'http', dest),
    );
  }

  private onConnect(req: RequestHead): void {
    const dest = parseAuthority(req.target, null);
    if (!dest) return this.fail(400, `CONNECT target must be host:port, got ${JSON.stringify(req.target.slice(0, 80))}`);
    this.dropUpstream();
    this.session.conn!.protocol = 'http-connect';
    this.session.conn!.destination = { ...dest, address: null };
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
      (err) => this.dialFailed(err, 'http CONNECT', dest),
    );
  }

  private dialFailed(err: unknown, what: string, dest: { host: string; port: number }): void {
    if (this.state !== 'dial') return;
    const code = errorCode(err);
    this.session.log.info(`${what} ${dest.host}:${dest.port}: ${code} ${errorMessage(err)}`);
    this.fail(dialFailureReply(code).http, `${dialFailureText(err)} (${dest.host}:${dest.port}, ${code})`);
  }

  // ---- upstream side ----

  private async getUpstream(host: string, port: number): Promise<{ up: OriginConnection; reused: boolean }> {
    const key = `${host.toLowerCase()}:${port}`;
    const cur = this.up;
    if (cur && cur.key === key && cur.reusable && !cur.gone && !cur.socket.destroyed) {
      cur.buf = Buffer.alloc(0);
      return { up: cur, reused: true };
    }
    this.dropUpstream();
    const res = await dialFor(this.session, host, port);
    if (this.state === 'closed') {
      res.socket.destroy();
      throw new Error('client went away');
    }
    const up: OriginConnection = openOrigin(res.socket, key, {
      data: () => {
        if (up !== this.up) return;
        if (this.state === 'dial') return; // head not written yet; processed right after
        this.guard(() => this.processResponse());
      },
      drain: () => this.resume('up-drain'),
      gone: () => this.guard(() => this.onUpstreamGone(up)),
    });
    this.up = up;
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
    readResponse(up, ex, {
      head: (res, final) => {
        if (final) this.writeClient(responseHead(res, ex.closeClientAfter));
        else if (ex.clientVersion === '1.1') this.writeClient(responseHead(res, false));
      },
      body: (bytes) => this.writeClient(bytes),
      done: () => this.responseDone(),
      switchProtocols: (res) => this.onSwitchingProtocols(res),
      fail: (message) => this.upstreamFail(message),
    });
  }

  private onSwitchingProtocols(res: ResponseHead): void {
    const up = this.up!;
    this.writeClient(switchingProtocolsHead(res));
    if (up.buf.length > 0) this.writeClient(up.buf);
    this.state = 'tunnel';
    this.pauses.clear();
    this.client.setTimeout(0);
    this.client.removeAllListeners('drain');
    detachOrigin(up);
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

  private onUpstreamGone(up: OriginConnection): void {
    if (up !== this.up || up.gone) return;
    up.gone = true;
    up.reusable = false;
    const ex = this.ex;
    this.up = null;
    up.socket.destroy();
    if (!ex || ex.resDone) return;
    switch (originGone(ex)) {
      case 'body-ends':
        ex.resBody!.done = true;
        ex.reqDone = true;
        return this.responseDone();
      case 'retry':
        ex.retried = true;
        ex.headScan = 0;
        this.session.log.debug(`http ${ex.dest.host}:${ex.dest.port}: kept-alive connection closed by origin, retrying`);
        return this.sendRequest(ex);
      case 'cut':
        this.client.destroy();
        this.state = 'closed';
        return;
      case 'fail':
        return this.fail(502, 'origin closed the connection without a complete response');
    }
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
    if (!this.client.write(data) && this.up) {
      this.up.socket.pause();
      this.session.conn?.hold('down', true);
    }
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
