/**
 * The origin side of plain-HTTP forwarding: the (kept-alive) connection to the origin, one
 * request/response exchange on it, and reading the origin's responses from its buffered bytes.
 */
import type net from 'node:net';
import { errorMessage } from '../errors';
import type { OriginRequest } from './http-message';
import { BodyReader, findHeadEnd, headerTokens, MAX_HEAD_BYTES, parseResponseHead, responseFraming, type RequestHead, type ResponseHead } from './http-parse';

export interface OriginConnection {
  socket: net.Socket;
  key: string;
  buf: Buffer;
  reusable: boolean;
  gone: boolean;
}

export interface Exchange {
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

/** A request about to be forwarded; the client closes after it unless it keeps alive and has not half-closed. */
export function newExchange(req: RequestHead, fwd: OriginRequest, clientEnded: boolean): Exchange {
  return {
    method: req.method,
    reqBody: new BodyReader(fwd.framing, 400),
    reqDone: false,
    res: null,
    resBody: null,
    resDone: false,
    headScan: 0,
    sentToClient: false,
    keepAliveClient: fwd.keepAliveClient,
    closeClientAfter: !fwd.keepAliveClient || clientEnded,
    clientVersion: req.version,
    head: fwd.head,
    dest: fwd.dest,
    reused: false,
    retried: false,
  };
}

/**
 * What an origin closing its connection in the middle of an exchange means for that exchange:
 * - 'body-ends': the response body is delimited by the close, so it is complete;
 * - 'retry': the origin closed its idle keep-alive connection as we reused it, so the request was
 *   never processed, and one without a body can be sent again on a fresh connection (once);
 * - 'cut': part of the response already reached the client, and a truncated body can only be
 *   signalled by cutting the client's connection;
 * - 'fail': nothing reached the client yet, so it gets a 502.
 */
export function originGone(ex: Exchange): 'body-ends' | 'retry' | 'cut' | 'fail' {
  if (ex.res && ex.resBody?.framing.kind === 'close') return 'body-ends';
  if (!ex.res && !ex.sentToClient && ex.reused && !ex.retried && ex.reqDone && ex.reqBody.framing.kind === 'none') return 'retry';
  return ex.sentToClient ? 'cut' : 'fail';
}

export interface OriginHandlers {
  data(): void;
  drain(): void;
  gone(): void;
}

/**
 * Starts reading a freshly dialled origin connection. A dialled socket is handed over paused (the
 * Upstream contract in dialer.ts): a 'data' listener alone does not start one that was explicitly
 * paused, and a relay's socket is, so reading starts here, once the listeners are in place.
 */
export function openOrigin(socket: net.Socket, key: string, on: OriginHandlers): OriginConnection {
  const up: OriginConnection = { socket, key, buf: Buffer.alloc(0), reusable: true, gone: false };
  socket.on('data', (chunk: Buffer) => {
    up.buf = up.buf.length === 0 ? chunk : Buffer.concat([up.buf, chunk]);
    on.data();
  });
  socket.on('drain', () => on.drain());
  socket.on('end', () => on.gone());
  socket.on('close', () => on.gone());
  socket.resume();
  return up;
}

/** Stops the forwarder's handling of the socket (it becomes a tunnel's after a 101). */
export function detachOrigin(up: OriginConnection): void {
  for (const event of ['data', 'end', 'close', 'drain']) up.socket.removeAllListeners(event);
}

/** What the forwarder does with what the origin sent. */
export interface ResponseSink {
  /** an interim (1xx) response head, or the final one with `final` set */
  head(res: ResponseHead, final: boolean): void;
  body(bytes: Buffer): void;
  done(): void;
  switchProtocols(res: ResponseHead): void;
  fail(message: string): void;
}

/**
 * Consumes the origin's buffered bytes for the current exchange: heads (interim ones passed on,
 * the final one deciding reuse and framing), then the body as framed, until the response is done.
 */
export function readResponse(up: OriginConnection, ex: Exchange, sink: ResponseSink): void {
  for (let guard = 0; guard < 1000 && up.buf.length > 0; guard++) {
    if (!ex.res) {
      const end = findHeadEnd(up.buf, ex.headScan);
      if (end < 0) {
        if (up.buf.length > MAX_HEAD_BYTES) return sink.fail('response head from origin is too large');
        ex.headScan = up.buf.length;
        return;
      }
      let res: ResponseHead;
      try {
        res = parseResponseHead(up.buf.subarray(0, end));
      } catch (err) {
        return sink.fail(errorMessage(err));
      }
      up.buf = up.buf.subarray(end);
      ex.headScan = 0;
      if (res.status === 101) return sink.switchProtocols(res);
      if (res.status >= 100 && res.status < 200) {
        // Interim responses (100 Continue) pass through; the final one follows.
        sink.head(res, false);
        continue;
      }
      let framing;
      try {
        framing = responseFraming(ex.method, res);
      } catch (err) {
        return sink.fail(errorMessage(err));
      }
      const originTokens = headerTokens(res.headers, 'connection');
      up.reusable = res.version === '1.1' && !originTokens.includes('close') && framing.kind !== 'close';
      if (framing.kind === 'close') ex.closeClientAfter = true;
      ex.res = res;
      ex.resBody = new BodyReader(framing, 502);
      sink.head(res, true);
      if (ex.resBody.done) return sink.done();
      continue;
    }
    const n = ex.resBody!.feed(up.buf);
    if (n > 0) {
      const bytes = up.buf.subarray(0, n);
      up.buf = up.buf.subarray(n);
      sink.body(bytes);
    }
    if (ex.resBody!.done) return sink.done();
    return;
  }
}
