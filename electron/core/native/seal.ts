/**
 * What one end of the relay connection sends, sealed by the addon (native/src/seal.cc): plaintext
 * read from a plain socket becomes TLS 1.3 records written straight to the relay connection's
 * socket, the keys taken from Node's own handshake. Node's TLS keeps the handshake and the other
 * direction. proxy/seal-tunnel.ts decides when.
 */
import crypto from 'node:crypto';
import { binding } from './binding';

/** The TLS 1.3 suites the addon seals; any other leaves the stream in Node's TLS. */
export const SEAL_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'] as const;
export type SealSuite = (typeof SEAL_SUITES)[number];

export interface SealParams {
  suite: SealSuite;
  /** the sending end's application traffic secret (32 bytes for SHA-256 suites, 48 for SHA-384) */
  secret: Buffer;
  /** records already sent under that secret */
  seq: number;
  /** records under one key before a KeyUpdate (default 2^23; tests lower it) */
  rekeyAfter?: number;
}

export interface SealEnd {
  reason: 'done' | 'error' | 'stopped';
  code?: string;      // errno name, on 'error'
  syscall?: string;
  sealed: number;     // plaintext bytes sealed and written
}

export interface SealBinding {
  sealAvailable(): boolean;
  sealStart(fdIn: number, fdOut: number, params: SealParams, head: Buffer, onEnd: (end: SealEnd) => void, onEof?: () => void): number;
  sealStats(id: number): { sealed: number } | undefined;
  sealStop(id: number): void;
  sealNudge(id: number): boolean;
  sealRecords(suite: SealSuite, secret: Buffer, seq: number, plaintext: Buffer, rekeyAfter?: number): Buffer;
  sealDerive(suite: SealSuite, secret: Buffer): { key: Buffer; iv: Buffer };
}

/**
 * Starts sealing what fdIn (a plain socket) sends onto fdOut (the relay connection's socket), `head` first.
 * Both fds stay the caller's, used as they are (not duplicated): stop it before closing either.
 * Node must neither read fdIn nor write fdOut from now on. fdIn's EOF becomes close_notify and
 * shutdown(SHUT_WR) on fdOut.
 */
export interface SealHandle {
  stats(): { sealed: number } | undefined;
  stop(): void;
  /**
   * Queues one record with no data (empty, or a KeyUpdate after 16 empty ones in a row), sent on
   * the loop's next turn: false once ended, after EOF, while records still wait for the socket, or
   * once 16 KeyUpdates have gone with no data since (proxy/ack-nudge.ts says what it is for).
   */
  nudge(): boolean;
}

export function sealStart(fdIn: number, fdOut: number, params: SealParams, head: Buffer, onEnd: (end: SealEnd) => void, onEof?: () => void): SealHandle {
  const id = binding.sealStart(fdIn, fdOut, params, head, onEnd, onEof);
  return { stats: () => binding.sealStats(id), stop: () => binding.sealStop(id), nudge: () => binding.sealNudge(id) };
}

let checked: boolean | null = null;

/**
 * Whether the addon can seal here: a Linux build, a runtime whose libcrypto it found (Node exports
 * OpenSSL's symbols; Electron links BoringSSL), and records that the runtime's own crypto opens.
 * The last is checked once per process, so a libcrypto that differs in some way costs the speed-up,
 * never a broken stream.
 */
export function sealAvailable(): boolean {
  if (checked !== null) return checked;
  try {
    checked = typeof binding.sealAvailable === 'function' && binding.sealAvailable() && selfCheck();
  } catch {
    checked = false;
  }
  return checked;
}

/**
 * RFC 8446 7.1's HKDF-Expand-Label with SHA-256 and an empty context, for one hash block, in
 * node:crypto: the self-checks' independent derivation of the addon's keys.
 */
export function expandLabel256(secret: Buffer, name: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${name}`);
  const info = Buffer.concat([Buffer.from([0, length, full.length]), full, Buffer.from([0, 1])]);
  return crypto.createHmac('sha256', secret).update(info).digest().subarray(0, length);
}

/** Seals a record at seq 1 and opens it with node:crypto, keys derived here (RFC 8446 7.1, 7.3). */
function selfCheck(): boolean {
  const secret = crypto.randomBytes(32);
  const plain = crypto.randomBytes(100);
  const label = (name: string, length: number): Buffer => expandLabel256(secret, name, length);
  const record = binding.sealRecords('TLS_AES_128_GCM_SHA256', secret, 1, plain);
  const nonce = label('iv', 12);
  nonce[11]! ^= 1;
  const d = crypto.createDecipheriv('aes-128-gcm', label('key', 16), nonce);
  d.setAAD(record.subarray(0, 5));
  d.setAuthTag(record.subarray(record.length - 16));
  const inner = Buffer.concat([d.update(record.subarray(5, record.length - 16)), d.final()]);
  return inner.equals(Buffer.concat([plain, Buffer.from([23])]));
}

export function sealRecords(suite: SealSuite, secret: Buffer, seq: number, plaintext: Buffer, rekeyAfter?: number): Buffer {
  return binding.sealRecords(suite, secret, seq, plaintext, rekeyAfter);
}

export function sealDerive(suite: SealSuite, secret: Buffer): { key: Buffer; iv: Buffer } {
  return binding.sealDerive(suite, secret);
}
