/**
 * What the relay client receives over the relay connection, opened by the addon
 * (native/src/open.cc): TLS 1.3 records read straight from the connection's socket and decrypted,
 * the plaintext handed over one read (up to 256 KiB of records) at a time. Node's TLS keeps the
 * handshake and the other direction. relay/open-tls.ts decides when.
 */
import crypto from 'node:crypto';
import { binding } from './binding';
import { expandLabel256, type SealSuite } from './seal';

export interface OpenParams {
  suite: SealSuite;
  /** the peer's application traffic secret */
  secret: Buffer;
  /** records the peer sent under it that Node read (0 when Node stopped at the handshake's end) */
  seq: number;
}

export interface OpenEnd {
  reason: 'done' | 'error' | 'stopped';
  code?: string;      // errno name, on 'error' (EBADMSG: a record that does not authenticate)
  syscall?: string;
  detail?: string;    // what was wrong with the stream, for protocol errors
  opened: number;     // plaintext bytes opened
  written: number;    // of them, written to fdOut (openOutput)
}

export interface OpenStats {
  opened: number;
  written: number;
  /** piped, with plaintext waiting for fdOut: its reader is not keeping up */
  held: boolean;
}

export interface OpenBinding {
  openStart(fd: number, params: OpenParams, onRead: (chunk: Buffer | null) => boolean, onEnd: (end: OpenEnd) => void): number;
  openResume(id: number): void;
  openStats(id: number): OpenStats | undefined;
  openOutput(id: number, fdOut: number, head: Buffer): boolean;
  openStop(id: number): void;
  openRecords(suite: SealSuite, secret: Buffer, seq: number, records: Buffer): Buffer;
}

export interface OpenHandle {
  /** reads again after onRead returned false */
  resume(): void;
  /**
   * From here the plaintext is written to fdOut by the addon (`head` first), never handed to
   * onRead again but for its null at the end, which comes after shutdown(fdOut, SHUT_WR). False
   * once ended. fdOut stays the caller's: Node must not write it from now on.
   */
  output(fdOut: number, head: Buffer): boolean;
  stats(): OpenStats | undefined;
  stop(): void;
}

/**
 * Starts opening what arrives on fd. `onRead` gets each read's plaintext (false pauses until
 * resume()), then null at the end of the stream; `onEnd` once, last. The fd stays the caller's:
 * Node must not read it from now on, and the handle must be stopped before the socket closes.
 */
export function openStart(fd: number, params: OpenParams, onRead: (chunk: Buffer | null) => boolean, onEnd: (end: OpenEnd) => void): OpenHandle {
  const b = binding as OpenBinding;
  const id = b.openStart(fd, params, onRead, onEnd);
  return {
    resume: () => b.openResume(id),
    output: (fdOut, head) => b.openOutput(id, fdOut, head),
    stats: () => b.openStats(id),
    stop: () => b.openStop(id),
  };
}

export function openRecords(suite: SealSuite, secret: Buffer, seq: number, records: Buffer): Buffer {
  return (binding as OpenBinding).openRecords(suite, secret, seq, records);
}

let checked: boolean | null = null;

/**
 * Whether the addon can open records here: a Linux build whose libcrypto it found, and a record
 * that node:crypto sealed (at seq 2, with padding) opened to the same bytes; checked once per process.
 */
export function openAvailable(): boolean {
  if (checked !== null) return checked;
  try {
    checked = typeof binding.openStart === 'function' && selfCheck();
  } catch {
    checked = false;
  }
  return checked;
}

function selfCheck(): boolean {
  const secret = crypto.randomBytes(32);
  const plain = crypto.randomBytes(100);
  const label = (name: string, length: number): Buffer => expandLabel256(secret, name, length);
  const inner = Buffer.concat([plain, Buffer.from([23, 0, 0, 0])]);
  const header = Buffer.from([23, 3, 3, 0, inner.length + 16]);
  const nonce = label('iv', 12);
  nonce[11]! ^= 2;
  const c = crypto.createCipheriv('aes-128-gcm', label('key', 16), nonce);
  c.setAAD(header);
  const body = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
  return openRecords('TLS_AES_128_GCM_SHA256', secret, 2, Buffer.concat([header, body])).equals(plain);
}
