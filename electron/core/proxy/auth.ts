import crypto from 'node:crypto';
import type { ProxyAuth } from '../config/schema';

/** Hashing first gives equal lengths for timingSafeEqual without leaking the secret's length. */
export function safeEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}

/** Both fields are always compared so that timing does not tell which one was wrong. */
export function credentialsMatch(auth: ProxyAuth, username: string, password: string): boolean {
  const u = safeEqual(username, auth.username);
  const p = safeEqual(password, auth.password);
  return u && p;
}

/** Checks a `Proxy-Authorization: Basic ...` value (RFC 7617). */
export function basicAuthMatches(auth: ProxyAuth, header: string | undefined): boolean {
  if (!header) return false;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  return credentialsMatch(auth, decoded.slice(0, colon), decoded.slice(colon + 1));
}
