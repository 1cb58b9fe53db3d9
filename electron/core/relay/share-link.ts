/**
 * The share link a relay prints and the desktop imports:
 *
 *   braid://<secret>@<host>:<port>?pin=<sha256 of the certificate, base64url>#<name>
 *
 * It carries everything a client needs: where the relay is, the shared secret, and the pin that
 * replaces a CA for the relay's self-signed certificate. IPv6 hosts are bracketed as in URLs.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { BraidError } from '../errors';

export interface RelayLink {
  host: string;
  port: number;
  secret: string;
  pin: string;     // base64url SHA-256 of the DER certificate
  name?: string;
}

const SECRET_RE = /^[A-Za-z0-9_-]{16,128}$/;
const PIN_RE = /^[A-Za-z0-9_-]{43}$/;  // 32 bytes in unpadded base64url

function bad(message: string): never {
  throw new BraidError('EBADLINK', `relay link ${message}`);
}

export function formatRelayLink(link: RelayLink): string {
  const host = net.isIPv6(link.host) ? `[${link.host}]` : link.host;
  const name = link.name ? `#${encodeURIComponent(link.name)}` : '';
  return `braid://${link.secret}@${host}:${link.port}?pin=${link.pin}${name}`;
}

export function parseRelayLink(text: string): RelayLink {
  const s = text.trim();
  if (!s.startsWith('braid://')) bad(`must start with braid:// (got '${s.slice(0, 16)}…')`);
  let url: URL;
  try {
    // URL does not know braid:, but parses it as a generic hierarchical URL once given a known scheme.
    url = new URL(`http://${s.slice('braid://'.length)}`);
  } catch {
    bad('is not a valid URL');
  }
  const secret = decodeURIComponent(url.username);
  if (!SECRET_RE.test(secret)) bad('has no valid secret (16-128 characters of A-Z a-z 0-9 _ -)');
  if (url.password) bad('must not contain a password part');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) bad('has no host');
  if (!url.port) bad('has no port');
  const port = Number(url.port);
  const pin = url.searchParams.get('pin') ?? '';
  if (!PIN_RE.test(pin)) bad("has no valid 'pin' (the certificate's SHA-256, base64url)");
  const name = url.hash ? decodeURIComponent(url.hash.slice(1)) : undefined;
  return { host, port, secret, pin, ...(name ? { name } : {}) };
}

/** The pin of a DER certificate, as carried in links. */
export function certificatePin(der: Buffer): string {
  return crypto.createHash('sha256').update(der).digest('base64url');
}
