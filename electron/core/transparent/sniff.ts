/**
 * The host name a redirected connection is for, from the client's first bytes: the TLS
 * ClientHello's server_name (SNI), or the Host header of a plain HTTP request. Neither is trusted
 * for anything but naming: it goes into the relay's CONNECT line (so the relay resolves the name as
 * the client would) and into the connections list. Parsing never throws and never reads past what
 * it was given.
 */
import { isValidHostname } from '../proxy/hostname';

export type SniffResult =
  | { kind: 'name'; host: string; via: 'sni' | 'host' }
  /** Enough bytes to know there is no name in them (another protocol, or a TLS hello without SNI). */
  | { kind: 'none' }
  /** A TLS record or HTTP head that has started but is not complete yet. */
  | { kind: 'more' };

const MAX_SNIFF = 16 * 1024;

export function sniffHostname(buf: Buffer): SniffResult {
  if (buf.length === 0) return { kind: 'more' };
  if (buf[0] === 0x16) return sniffTls(buf);
  if (buf[0]! >= 0x41 && buf[0]! <= 0x5a) return sniffHttp(buf);
  return { kind: 'none' };
}

function sniffHttp(buf: Buffer): SniffResult {
  const text = buf.subarray(0, MAX_SNIFF).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (!/^[A-Z]{1,16} \S+ HTTP\/1\.[01]\r\n/.test(text)) return text.includes('\r\n') || buf.length >= MAX_SNIFF ? { kind: 'none' } : { kind: 'more' };
  const head = end >= 0 ? text.slice(0, end) : text;
  const m = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(head);
  if (!m) return end >= 0 || buf.length >= MAX_SNIFF ? { kind: 'none' } : { kind: 'more' };
  if (end < 0 && !/\r\n/.test(head.slice(m.index + 2))) return { kind: 'more' }; // the Host line itself may be cut
  let host = m[1]!.trim();
  if (host.startsWith('[')) return { kind: 'none' }; // an IPv6 literal names nothing new
  host = host.replace(/:\d{1,5}$/, '').toLowerCase();
  return isValidHostname(host) && !/^[\d.]+$/.test(host) ? { kind: 'name', host, via: 'host' } : { kind: 'none' };
}

/** TLS record (5 bytes) → Handshake ClientHello → extensions → server_name (RFC 8446 4.1.2, RFC 6066 3). */
function sniffTls(buf: Buffer): SniffResult {
  if (buf.length < 5) return { kind: 'more' };
  if (buf[1] !== 0x03) return { kind: 'none' };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen > MAX_SNIFF) return { kind: 'none' };
  if (buf.length < 5 + recordLen) return { kind: 'more' };
  const b = buf.subarray(5, 5 + recordLen);
  let p = 0;
  const need = (n: number): boolean => p + n <= b.length;
  if (!need(4) || b[0] !== 0x01) return { kind: 'none' }; // ClientHello
  const helloLen = (b[1]! << 16) | (b[2]! << 8) | b[3]!;
  p = 4;
  // A ClientHello split over several records: what arrived so far is all we look at.
  const end = Math.min(b.length, 4 + helloLen);
  p += 2 + 32; // legacy_version, random
  if (p + 1 > end) return { kind: 'none' };
  p += 1 + b[p]!; // session id
  if (p + 2 > end) return { kind: 'none' };
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (p + 1 > end) return { kind: 'none' };
  p += 1 + b[p]!; // compression methods
  if (p + 2 > end) return { kind: 'none' };
  const extEnd = Math.min(end, p + 2 + b.readUInt16BE(p));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { kind: 'none' };
    if (type === 0x0000) {
      // server_name_list: u16 length, then entries of (u8 type, u16 length, name)
      let q = p + 2;
      const listEnd = Math.min(p + len, p + 2 + (len >= 2 ? b.readUInt16BE(p) : 0));
      while (q + 3 <= listEnd) {
        const nameType = b[q]!;
        const nameLen = b.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLen > listEnd) break;
        if (nameType === 0) {
          const host = b.subarray(q, q + nameLen).toString('latin1').toLowerCase().replace(/\.$/, '');
          return isValidHostname(host) ? { kind: 'name', host, via: 'sni' } : { kind: 'none' };
        }
        q += nameLen;
      }
      return { kind: 'none' };
    }
    p += len;
  }
  return { kind: 'none' };
}
