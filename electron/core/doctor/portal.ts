/**
 * Captive-portal check, per interface: an HTTP GET of `doctor.portalUrl` bound to the interface. A
 * network that wants a login first (hotel, airport, train WiFi) answers it with a redirect or its own
 * page instead of the expected empty answer, and carries nothing else until then.
 */
import dns from 'node:dns';
import http from 'node:http';
import { errorCode } from '../errors';
import type { Findings } from './findings';
import type { PathCandidate } from './interfaces';
import { connectRaw } from './tunnel';

export type PortalOutcome =
  | { kind: 'clear'; status: number }
  | { kind: 'redirect'; status: number; location: string | null }
  | { kind: 'page'; status: number; contentType: string }
  | { kind: 'error'; code: string };

export async function portalProbe(url: URL, c: PathCandidate, timeoutMs = 5000): Promise<PortalOutcome> {
  const family = c.address?.includes(':') ? 6 : 4;
  let address: string;
  try {
    address = (await dns.promises.lookup(url.hostname.replace(/^\[(.*)\]$/, '$1'), { family })).address;
  } catch (err) {
    return { kind: 'error', code: errorCode(err) };
  }
  const port = Number(url.port || 80);
  let raw;
  try {
    raw = await connectRaw(address, port, { bind: { device: c.iface.name, localAddress: c.address ?? undefined }, mptcp: false, timeoutMs });
  } catch (err) {
    return { kind: 'error', code: errorCode(err) };
  }
  const socket = raw.socket;
  return new Promise<PortalOutcome>((resolve) => {
    const timer = setTimeout(() => done({ kind: 'error', code: 'ETIMEDOUT' }), timeoutMs);
    let settled = false;
    const done = (o: PortalOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const req = http.request({
      host: url.hostname, port, path: `${url.pathname}${url.search}`, method: 'GET',
      headers: { 'User-Agent': 'braid-doctor', Connection: 'close' },
      createConnection: () => socket,
    }, (res) => {
      const status = res.statusCode ?? 0;
      const type = String(res.headers['content-type'] ?? '');
      res.resume();
      if (status >= 300 && status < 400) done({ kind: 'redirect', status, location: typeof res.headers.location === 'string' ? res.headers.location : null });
      else if (status === 204 || (status >= 200 && status < 300 && !/html/i.test(type))) done({ kind: 'clear', status });
      else done({ kind: 'page', status, contentType: type || 'unknown' });
    });
    req.on('error', (err) => done({ kind: 'error', code: errorCode(err) }));
    req.end();
  });
}

export function portalFinding(c: PathCandidate, url: string, o: PortalOutcome, f: Findings): void {
  const name = c.iface.name;
  switch (o.kind) {
    case 'clear':
      f.ok('path.portal', name, `No captive portal on ${name}: ${url} answered ${o.status} as expected.`);
      return;
    case 'redirect':
      f.fail('path.portal', name, `${name} is behind a captive portal: ${url} was redirected${o.location ? ` to ${o.location}` : ''} (HTTP ${o.status}). The network carries nothing else until you log in.`,
        `open ${o.location ?? url} in a browser that uses ${name} and log in (or accept the terms)`);
      return;
    case 'page':
      f.fail('path.portal', name, `${name} looks like it is behind a captive portal: ${url} answered with a web page (HTTP ${o.status}, ${o.contentType}) instead of an empty answer.`,
        `open ${url} in a browser that uses ${name} and log in`);
      return;
    case 'error':
      f.warn('path.portal', name, `The captive-portal check over ${name} could not fetch ${url}: ${o.code}.`, 'check doctor.portalUrl in the config');
  }
}
