/**
 * The doctor's own connections: a TCP or MPTCP socket bound to one interface (SO_BINDTODEVICE and
 * its address, as a subflow over that interface is), TLS to the relay checked against the link's
 * pin, and a CONNECT to the relay's speed-test target inside it.
 */
import net from 'node:net';
import tls from 'node:tls';
import { BraidError, errorCode, errorMessage } from '../errors';
import { loadNative } from '../proxy/native';
import type { RelayLink } from '../relay/share-link';
export { tlsToRelay, type RelayTls } from '../relay/tls-client';
import { SPEED_TARGET_HOST, SPEED_TARGET_PORT } from '../relay/speed';
import { requestConnect } from '../relay/wire';

export interface Bind {
  device?: string;
  localAddress?: string;
}

export interface RawConnection {
  socket: net.Socket;
  fd: number;
  ms: number;          // connect() to established: one round trip (SYN to SYN/ACK) plus a little
}

/** A connected socket, bound to an interface when asked; rejects with the errno as code. */
export async function connectRaw(address: string, port: number, opts: { bind?: Bind; mptcp: boolean; timeoutMs: number }): Promise<RawConnection> {
  const native = loadNative().mod;
  if (!native) throw new BraidError('ENOADDON', 'the native addon is not loaded: probes bound to an interface need it');
  const t0 = performance.now();
  const fd = await native.connectFd({
    address, port, mptcp: opts.mptcp, timeoutMs: opts.timeoutMs,
    ...(opts.bind?.device ? { device: opts.bind.device } : {}),
    ...(opts.bind?.localAddress ? { localAddress: opts.bind.localAddress } : {}),
  });
  const ms = performance.now() - t0;
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  socket.setNoDelay(true);
  socket.on('error', () => {});
  return { socket, fd, ms };
}


export interface Answer {
  status: number;
  code: string | null;     // X-Braid-Error
  message: string;
  rest: Buffer;
}

/** Sends CONNECT to the speed-test target and reads the relay's answer head. */
export async function connectSpeedTarget(s: tls.TLSSocket, link: RelayLink, timeoutMs: number): Promise<Answer> {
  const { head, status } = await requestConnect(s, { host: SPEED_TARGET_HOST, port: SPEED_TARGET_PORT }, link.secret, { timeoutMs });
  const body = status === 200 ? '' : head.rest.toString('utf8').trim();
  return { status, code: head.headers.get('x-braid-error') ?? null, message: body || head.startLine.slice(13), rest: head.rest };
}

/** Reads one "\n"-terminated line, keeping what follows it; null when the peer closes first. */
export function readLine(s: net.Socket, early: Buffer, timeoutMs: number): Promise<{ line: string; rest: Buffer } | null> {
  return new Promise((resolve, reject) => {
    let buf = early;
    const finish = (v: { line: string; rest: Buffer } | null, err?: Error): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      s.pause();
      if (err) reject(err);
      else resolve(v);
    };
    const check = (): boolean => {
      const nl = buf.indexOf(10);
      if (nl < 0) return false;
      finish({ line: buf.subarray(0, nl).toString('utf8'), rest: buf.subarray(nl + 1) });
      return true;
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (!check() && buf.length > 64 * 1024) finish(null, new BraidError('EPROTO', 'the relay sent a line longer than 64 KiB'));
    };
    const onEnd = (): void => finish(null);
    const timer = setTimeout(() => finish(null, new BraidError('ETIMEDOUT', `no answer within ${timeoutMs} ms`)), timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    if (check()) return;
    s.resume();
  });
}

/** The code of an error from a connect: the errno name (ETIMEDOUT, EHOSTUNREACH, …). */
export const codeOf = (err: unknown): string => errorCode(err);
