/**
 * `braid doctor --speed`: each path alone (plain TCP bound to its interface, so no other path can
 * join), then every path together (one MPTCP connection, routed as any connection is), in both
 * directions, against the relay's speed-test endpoint (relay/speed.ts) inside the authenticated
 * tunnel, or without a relay by downloading a URL the user gives.
 *
 * Rates leave out the first moments of each transfer (TCP slow start), as the relay does for uploads.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import type { SpeedPathView, SpeedView } from '../contract';
import { BraidError, errorCode, errorMessage } from '../errors';
import type { RelayLink } from '../relay/share-link';
import { warmupMs } from '../relay/speed';
import type { Findings } from './findings';
import type { PathCandidate } from './interfaces';
import { connectRaw, connectSpeedTarget, readLine, tlsToRelay, type Bind } from './tunnel';

const ASK_BYTES = 1024 * 1024 * 1024;   // the relay grants what its limits allow
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

export interface SpeedRun {
  cands: PathCandidate[];            // the paths to measure one by one (usable, reachable)
  link: RelayLink | null;
  relayAddress: string | null;       // where the unbound "all paths" connection goes
  url: URL | null;                   // without a relay
  seconds: number;
  progress(step: string): void;
}

export type Direction = 'down' | 'up';
type Rate = number | null;

const mbit = (bytes: number, ms: number): number => (ms > 0 ? (bytes * 8) / (ms * 1000) : 0);

/** Bytes that arrive on `s` until it ends, and the rate after the warm-up (Mbit/s). */
function receiveRate(s: Readable, early: Buffer, warm: number, limitMs: number): Promise<{ bytes: number; mbit: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let first = -1;
    let warmAt = -1;
    let warmTime = 0;
    let last = 0;
    const count = (n: number): void => {
      const t = performance.now();
      if (first < 0) first = t;
      bytes += n;
      last = t;
      if (warmAt < 0 && t - first >= warm) {
        warmAt = bytes;
        warmTime = t;
      }
    };
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes, mbit: warmAt < 0 ? mbit(bytes, last - first) : mbit(bytes - warmAt, last - warmTime) });
    };
    // Bounded even when the far end never stops: a URL that streams forever, a relay that ignores its limit.
    const timer = setTimeout(finish, limitMs);
    if (early.length) count(early.length);
    s.on('data', (c: Buffer) => count(c.length));
    s.once('end', finish);
    s.once('close', finish);
    s.resume();
  });
}

async function relayTunnel(run: SpeedRun, bind: Bind | null, mptcp: boolean, address: string): Promise<{ socket: tls.TLSSocket; rest: Buffer }> {
  const link = run.link!;
  const raw = await connectRaw(address, link.port, { bind: bind ?? undefined, mptcp, timeoutMs: 5000 });
  const t = await tlsToRelay(raw.socket, link, 5000);
  if (!t.pinOk) {
    t.socket.destroy();
    throw new BraidError('ERELAYPIN', "the relay's certificate does not match the link's pin");
  }
  const a = await connectSpeedTarget(t.socket, link, 5000);
  if (a.status !== 200) {
    t.socket.destroy();
    throw new BraidError(a.code ?? 'ERELAY', `the relay refused the speed test: ${a.status} ${a.message}`);
  }
  return { socket: t.socket, rest: a.rest };
}

async function relayDirection(run: SpeedRun, dir: Direction, bind: Bind | null, mptcp: boolean, address: string): Promise<number> {
  const ms = run.seconds * 1000;
  const { socket, rest } = await relayTunnel(run, bind, mptcp, address);
  try {
    socket.write(`${dir === 'down' ? 'DOWN' : 'UP'} ${ASK_BYTES} ${ms}\n`);
    const ok = await readLine(socket, rest, 5000);
    const m = ok && /^OK (DOWN|UP) (\d+) (\d+)$/.exec(ok.line);
    if (!ok || !m) throw new BraidError('EPROTO', `the relay's speed test answered ${JSON.stringify(ok?.line ?? 'nothing')}`);
    const granted = Number(m[3]);
    if (dir === 'down') return (await receiveRate(socket, ok.rest, warmupMs(granted), granted + 15_000)).mbit;
    return await sendUntilDone(socket, ok.rest, granted);
  } finally {
    socket.destroy();
  }
}

/** Sends as fast as the connection takes until the relay's DONE line; the relay's count is the rate. */
async function sendUntilDone(s: tls.TLSSocket, early: Buffer, grantedMs: number): Promise<number> {
  let stop = false;
  let wake: (() => void) | null = null;
  const done = readLine(s, early, grantedMs + 15_000).finally(() => {
    stop = true;
    wake?.();
  });
  const drained = (): Promise<void> => new Promise<void>((resolve) => {
    const on = (): void => {
      s.off('drain', on);
      s.off('close', on);
      wake = null;
      resolve();
    };
    wake = on;
    s.on('drain', on);
    s.on('close', on);
  });
  const pump = async (): Promise<void> => {
    while (!stop && !s.destroyed) {
      if (!s.write(CHUNK)) await drained();
    }
  };
  void pump().catch(() => {});
  const line = await done;
  const m = line && /^DONE (\d+) (\d+) (\d+) (\d+)$/.exec(line.line);
  if (!m) throw new BraidError('EPROTO', `the relay's upload test answered ${JSON.stringify(line?.line ?? 'nothing')}`);
  const [bytes, ms, warmBytes, warmMsV] = m.slice(1).map(Number);
  return warmMsV > 0 ? mbit(warmBytes, warmMsV) : mbit(bytes, ms);
}

/** Downloads `url` for run.seconds over one path (bind) or all (unbound MPTCP). */
async function urlDownload(run: SpeedRun, bind: Bind | null, mptcp: boolean, family: 4 | 6): Promise<number> {
  const url = run.url!;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const address = (await dns.promises.lookup(host, { family })).address;
  const secure = url.protocol === 'https:';
  const port = Number(url.port || (secure ? 443 : 80));
  const raw = await connectRaw(address, port, { bind: bind ?? undefined, mptcp, timeoutMs: 5000 });
  const socket: net.Socket = secure ? tls.connect({ socket: raw.socket, servername: host }) : raw.socket;
  const ms = run.seconds * 1000;
  return new Promise<number>((resolve, reject) => {
    const mod = secure ? https : http;
    const req = mod.request({
      host, port, path: `${url.pathname}${url.search}`, method: 'GET',
      headers: { 'User-Agent': 'braid-doctor', Connection: 'close' }, createConnection: () => socket,
    }, (res) => {
      if ((res.statusCode ?? 0) >= 400) {
        socket.destroy();
        return reject(new BraidError('EHTTP', `${url.href} answered HTTP ${res.statusCode}`));
      }
      void receiveRate(res, Buffer.alloc(0), warmupMs(ms), ms).then((r) => {
        socket.destroy();
        resolve(r.mbit);
      });
    });
    req.on('error', (err) => reject(err));
    req.end();
  });
}

async function measure(run: SpeedRun, label: string, dir: Direction, bind: Bind | null, mptcp: boolean, family: 4 | 6, errors: string[]): Promise<Rate> {
  run.progress(`speed: ${label} ${dir === 'down' ? 'download' : 'upload'}`);
  try {
    if (run.link) return await relayDirection(run, dir, bind, mptcp, bind ? (run.cands.find((c) => c.iface.name === bind.device)?.targetAddress ?? run.relayAddress!) : run.relayAddress!);
    if (dir === 'up') return null;
    return await urlDownload(run, bind, mptcp, family);
  } catch (err) {
    errors.push(`${label} ${dir}: ${errorMessage(err)}${errorCode(err) !== 'EUNKNOWN' ? ` (${errorCode(err)})` : ''}`);
    return null;
  }
}

const fmt = (r: Rate): string => (r === null ? '–' : r.toFixed(1));

export function speedSummary(paths: SpeedPathView[], all: { downMbit: Rate; upMbit: Rate }, dir: Direction): string | null {
  const key = dir === 'down' ? 'downMbit' : 'upMbit';
  const measured = paths.filter((p) => p[key] !== null);
  if (measured.length === 0 && all[key] === null) return null;
  const sum = measured.reduce((a, p) => a + (p[key] as number), 0);
  const parts = measured.map((p) => `${p.path} ${fmt(p[key])}`).join(' + ');
  const together = all[key];
  const share = together !== null && sum > 0 ? `, ${Math.round((100 * together) / sum)} % of the sum` : '';
  return `${parts}${parts ? ' Mbit/s; ' : ''}together ${fmt(together)}${share}`;
}

export async function measureSpeed(run: SpeedRun, f: Findings): Promise<SpeedView> {
  const errors: string[] = [];
  const paths: SpeedPathView[] = [];
  for (const c of run.cands) {
    const bind = { device: c.iface.name, localAddress: c.address ?? undefined };
    const family = c.address?.includes(':') ? 6 : 4;
    const downMbit = await measure(run, c.iface.name, 'down', bind, false, family, errors);
    const upMbit = await measure(run, c.iface.name, 'up', bind, false, family, errors);
    paths.push({ path: c.iface.name, downMbit, upMbit });
  }
  const family = run.relayAddress?.includes(':') ? 6 : 4;
  const all = {
    downMbit: await measure(run, 'all paths', 'down', null, true, family, errors),
    upMbit: await measure(run, 'all paths', 'up', null, true, family, errors),
  };
  const down = speedSummary(paths, all, 'down');
  const up = speedSummary(paths, all, 'up');
  const summary = [down && `down: ${down}`, up && `up: ${up}`].filter(Boolean).join('; ') || 'nothing could be measured';
  if (errors.length) f.warn('speed.errors', null, `Some speed measurements failed: ${errors.join('; ')}.`);
  for (const dir of ['down', 'up'] as const) aggregateFinding(paths, all, dir, f);
  return { via: run.link ? 'relay' : 'url', paths, all, summary };
}

function aggregateFinding(paths: SpeedPathView[], all: { downMbit: Rate; upMbit: Rate }, dir: Direction, f: Findings): void {
  const key = dir === 'down' ? 'downMbit' : 'upMbit';
  const alone = paths.map((p) => p[key]).filter((r): r is number => r !== null);
  const together = all[key];
  if (together === null || alone.length < 2) return;
  const sum = alone.reduce((a, b) => a + b, 0);
  const best = Math.max(...alone);
  const word = dir === 'down' ? 'Downloads' : 'Uploads';
  const text = `${word} over all paths together reach ${together.toFixed(1)} Mbit/s: ${Math.round((100 * together) / sum)} % of the sum of the paths alone (${sum.toFixed(1)}), ${(together / best).toFixed(2)}× the best one (${best.toFixed(1)}).`;
  if (together < 1.15 * best) f.fail(`speed.${dir}`, null, `${text} The paths are not aggregated.`, 'see the failing path findings above');
  else if (together < 0.8 * sum) f.warn(`speed.${dir}`, null, `${text} Aggregation works, but below the sum.`, 'a path with a much longer round trip, or a backup path, carries less; see the path findings');
  else f.ok(`speed.${dir}`, null, text);
}
