/**
 * The HTTP proxy's messages, as pure functions of parsed heads: the error responses the proxy
 * itself sends, a request rewritten for the origin (origin-form target, Host, hop-by-hop headers
 * dropped), and a response head rewritten for the client.
 */
import net from 'node:net';
import { isValidHostname } from './hostname';
import { headerTokens, headerValues, requestFraming, type Framing, type RequestHead, type ResponseHead } from './http-parse';

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

/** A request to forward to an origin: where to, and its head as the origin gets it. */
export interface OriginRequest {
  dest: { host: string; port: number };
  head: Buffer;
  framing: Framing;
  keepAliveClient: boolean;
}

/** An absolute-URI request rewritten for its origin, or the status and message to refuse it with. */
export function originRequest(req: RequestHead): OriginRequest | { status: number; message: string } {
  const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(req.target);
  if (!m) {
    if (/^https:\/\//i.test(req.target)) return { status: 400, message: 'https:// URIs need CONNECT' };
    return { status: 400, message: `request target must be an absolute http:// URI, got ${JSON.stringify(req.target.slice(0, 80))}` };
  }
  const authority = m[1].slice(m[1].lastIndexOf('@') + 1);
  const dest = parseAuthority(authority, 80);
  if (!dest) return { status: 400, message: `bad host in ${JSON.stringify(req.target.slice(0, 80))}` };
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
  return { dest, head: Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), framing, keepAliveClient };
}

/** The origin's response head as the client gets it; `close` announces that the client connection ends. */
export function responseHead(res: ResponseHead, close: boolean): Buffer {
  const tokens = headerTokens(res.headers, 'connection').filter((t) => !FRAMING.has(t));
  const drop = new Set([...HOP_BY_HOP, ...tokens]);
  const lines = [res.statusLine];
  for (const h of res.headers) if (!drop.has(h.lname)) lines.push(h.line);
  if (close) lines.push('Connection: close');
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/** A 101 passed on as is (the Upgrade and Connection headers are what the client asked for). */
export function switchingProtocolsHead(res: ResponseHead): Buffer {
  const lines = [res.statusLine];
  for (const h of res.headers) if (h.lname !== 'keep-alive' && h.lname !== 'proxy-connection') lines.push(h.line);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}
