/**
 * A small, strict HTTP/1.x message framer for the forwarding proxy. It only finds where heads and
 * bodies end; bodies are passed on byte for byte, never decoded, so what the origin sends is what
 * the client gets. Strictness (no obs-fold, no Content-Length together with Transfer-Encoding,
 * no differing Content-Lengths) keeps the proxy from disagreeing with the origin about framing,
 * which is what request smuggling exploits.
 */
import { BraidError } from '../errors';

export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 64 * 1024;

export class HttpParseError extends BraidError {
  constructor(readonly status: number, message: string) {
    super('EHTTPPARSE', message);
  }
}

export interface HeaderField {
  name: string;
  lname: string;
  value: string;
  line: string;  // the original line, so kept headers are forwarded as they came
}

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  headers: HeaderField[];
}

export interface ResponseHead {
  version: '1.0' | '1.1';
  status: number;
  statusLine: string;
  headers: HeaderField[];
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Finds the end of a head (the byte after the blank line) or -1. `from` lets callers resume the
 * scan where the previous call stopped, keeping byte-by-byte input linear.
 */
export function findHeadEnd(buf: Buffer, from = 0): number {
  let i = Math.max(0, from - 3);
  for (;;) {
    const nl = buf.indexOf(10, i);
    if (nl < 0) return -1;
    const a = buf[nl + 1];
    if (a === undefined) return -1;
    if (a === 10) return nl + 2;
    if (a === 13) {
      const b = buf[nl + 2];
      if (b === undefined) return -1;
      if (b === 10) return nl + 3;
    }
    i = nl + 1;
  }
}

/** Skips blank lines a client may send between keep-alive requests (RFC 9112 section 2.2). */
function skipLeadingNewlines(buf: Buffer): number {
  let i = 0;
  while (i < buf.length && (buf[i] === 13 || buf[i] === 10)) i++;
  return i;
}

/**
 * Takes one request head off the front of a client's buffered bytes, after any blank lines before
 * it: the head (null while it is incomplete), the bytes after it, and where the next call on the
 * same bytes plus more may resume scanning. A head larger than MAX_HEAD_BYTES is a 431.
 */
export function takeRequestHead(buf: Buffer, scanFrom: number): { head: Buffer | null; rest: Buffer; scanFrom: number } {
  const skip = skipLeadingNewlines(buf);
  if (skip > 0) {
    buf = buf.subarray(skip);
    scanFrom = 0;
  }
  const end = findHeadEnd(buf, scanFrom);
  if (end < 0 ? buf.length > MAX_HEAD_BYTES : end > MAX_HEAD_BYTES) throw new HttpParseError(431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
  if (end < 0) return { head: null, rest: buf, scanFrom: buf.length };
  return { head: buf.subarray(0, end), rest: buf.subarray(end), scanFrom: 0 };
}

function parseHeaderLines(lines: string[]): HeaderField[] {
  const out: HeaderField[] = [];
  for (const line of lines) {
    if (line.length === 0) continue;
    if (line[0] === ' ' || line[0] === '\t') throw new HttpParseError(400, 'folded header lines are not accepted');
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpParseError(400, `malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpParseError(400, `malformed header name ${JSON.stringify(name.slice(0, 80))}`);
    const value = line.slice(colon + 1).trim();
    // eslint-disable-next-line no-control-regex
    if (/[\x00\r\n]/.test(value)) throw new HttpParseError(400, `header ${name} has a control character`);
    out.push({ name, lname: name.toLowerCase(), value, line });
  }
  return out;
}

function splitHead(head: Buffer): string[] {
  // latin1 keeps every byte as one char, so lines are rebuilt byte-exactly when forwarded.
  return head.toString('latin1').split(/\r?\n/);
}

export function parseRequestHead(head: Buffer): RequestHead {
  const lines = splitHead(head);
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
  if (!m) throw new HttpParseError(400, `malformed request line ${JSON.stringify(lines[0].slice(0, 80))}`);
  const version = `${m[3]}.${m[4]}`;
  if (version !== '1.0' && version !== '1.1') throw new HttpParseError(505, `HTTP version ${version} is not supported`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(m[2])) throw new HttpParseError(400, 'request target has a control character');
  return { method: m[1], target: m[2], version, headers: parseHeaderLines(lines.slice(1)) };
}

export function parseResponseHead(head: Buffer): ResponseHead {
  const lines = splitHead(head);
  const m = /^HTTP\/(\d)\.(\d) (\d{3})(?: .*)?$/.exec(lines[0]);
  if (!m) throw new HttpParseError(502, `malformed status line from origin ${JSON.stringify(lines[0].slice(0, 80))}`);
  const version = `${m[1]}.${m[2]}` === '1.0' ? '1.0' : '1.1';
  return { version, status: Number(m[3]), statusLine: lines[0], headers: parseHeaderLines(lines.slice(1)) };
}

export function headerValues(headers: HeaderField[], lname: string): string[] {
  return headers.filter((h) => h.lname === lname).map((h) => h.value);
}

/** Comma-separated tokens of every instance of a header, lower-cased. */
export function headerTokens(headers: HeaderField[], lname: string): string[] {
  return headerValues(headers, lname)
    .flatMap((v) => v.split(','))
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t.length > 0);
}

export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

function contentLength(headers: HeaderField[], status: number): number | null {
  const values = headerValues(headers, 'content-length').flatMap((v) => v.split(',')).map((v) => v.trim());
  if (values.length === 0) return null;
  if (!values.every((v) => /^\d{1,15}$/.test(v) && v === values[0])) {
    throw new HttpParseError(status, `invalid or conflicting Content-Length ${JSON.stringify(values.join(', ').slice(0, 80))}`);
  }
  return Number(values[0]);
}

export function requestFraming(req: RequestHead): Framing {
  const te = headerTokens(req.headers, 'transfer-encoding');
  const hasCl = headerValues(req.headers, 'content-length').length > 0;
  if (te.length > 0) {
    if (hasCl) throw new HttpParseError(400, 'both Transfer-Encoding and Content-Length');
    if (req.version === '1.0') throw new HttpParseError(400, 'Transfer-Encoding in an HTTP/1.0 request');
    if (te[te.length - 1] !== 'chunked') throw new HttpParseError(400, 'request Transfer-Encoding must end with chunked');
    return { kind: 'chunked' };
  }
  const cl = contentLength(req.headers, 400);
  return cl === null || cl === 0 ? { kind: 'none' } : { kind: 'length', length: cl };
}

/** RFC 9112 section 6.3, in order. */
export function responseFraming(method: string, res: ResponseHead): Framing {
  if (method === 'HEAD' || (res.status >= 100 && res.status < 200) || res.status === 204 || res.status === 304) {
    return { kind: 'none' };
  }
  const te = headerTokens(res.headers, 'transfer-encoding');
  if (te.length > 0) return te[te.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  const cl = contentLength(res.headers, 502);
  if (cl !== null) return cl === 0 ? { kind: 'none' } : { kind: 'length', length: cl };
  return { kind: 'close' };
}

type ChunkState = 'size' | 'ext' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'done';

/**
 * Tells how many of the offered bytes belong to the current body. Call feed() with the unconsumed
 * input; it returns the count that is body (to be forwarded as is) and sets `done` at the end.
 */
export class BodyReader {
  done: boolean;
  private remaining: number;
  private chunk: ChunkState = 'size';
  private size = 0;
  private sizeDigits = 0;
  private lineLen = 0;
  private trailerBytes = 0;

  constructor(readonly framing: Framing, private readonly errorStatus: number) {
    this.done = framing.kind === 'none';
    this.remaining = framing.kind === 'length' ? framing.length : 0;
  }

  feed(buf: Buffer): number {
    if (this.done) return 0;
    switch (this.framing.kind) {
      case 'none':
        return 0;
      case 'close':
        return buf.length;
      case 'length': {
        const n = Math.min(this.remaining, buf.length);
        this.remaining -= n;
        if (this.remaining === 0) this.done = true;
        return n;
      }
      case 'chunked':
        return this.feedChunked(buf);
    }
  }

  private bad(msg: string): never {
    throw new HttpParseError(this.errorStatus, `bad chunked encoding: ${msg}`);
  }

  private feedChunked(buf: Buffer): number {
    let i = 0;
    while (i < buf.length && !this.done) {
      if (this.chunk === 'data') {
        const n = Math.min(this.remaining, buf.length - i);
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.chunk = 'data-cr';
        continue;
      }
      const c = buf[i++];
      switch (this.chunk) {
        case 'size': {
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.sizeDigits > 12) this.bad('chunk size too large');
            this.size = this.size * 16 + d;
          } else if (this.sizeDigits === 0) {
            this.bad('missing chunk size');
          } else if (c === 0x3b || c === 0x20 || c === 0x09) {
            this.chunk = 'ext';
            this.lineLen = 0;
          } else if (c === 13) {
            this.chunk = 'size-lf';
          } else if (c === 10) {
            this.endSizeLine();
          } else {
            this.bad('invalid character in chunk size');
          }
          break;
        }
        case 'ext':
          if (++this.lineLen > MAX_CHUNK_LINE) this.bad('chunk extension too long');
          if (c === 13) this.chunk = 'size-lf';
          else if (c === 10) this.endSizeLine();
          break;
        case 'size-lf':
          if (c !== 10) this.bad('expected LF after chunk size');
          this.endSizeLine();
          break;
        case 'data-cr':
          if (c === 13) this.chunk = 'data-lf';
          else if (c === 10) this.chunk = 'size';
          else this.bad('chunk data longer than its size');
          break;
        case 'data-lf':
          if (c !== 10) this.bad('expected LF after chunk data');
          this.chunk = 'size';
          break;
        case 'trailer':
          if (++this.trailerBytes > MAX_TRAILER_BYTES) this.bad('trailers too large');
          if (c === 10) {
            if (this.lineLen === 0) this.done = true;
            this.lineLen = 0;
          } else if (c !== 13) {
            this.lineLen++;
          }
          break;
      }
    }
    return i;
  }

  private endSizeLine(): void {
    if (this.size === 0) {
      this.chunk = 'trailer';
      this.lineLen = 0;
    } else {
      this.chunk = 'data';
      this.remaining = this.size;
    }
    this.size = 0;
    this.sizeDigits = 0;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
