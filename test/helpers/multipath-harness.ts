/**
 * The moves shared by the multipath tests and the benchmark: start the byte server in the server
 * namespace, start `braid up` in the client namespace, download with curl through it or with a raw
 * client, and turn the server's per-subflow report into a per-link split.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { NsProcess, TwoLinkTopology, Namespace } from './netns';
import type { ResponseReport } from './mptcp-server';

/** dist/ root, found from this compiled file (dist/test/helpers/). */
export const DIST = path.resolve(__dirname, '..', '..');
export const SERVE_BYTES = path.join(DIST, 'test', 'helpers', 'serve-bytes.js');
export const FETCH_BYTES = path.join(DIST, 'test', 'helpers', 'fetch-bytes.js');
export const BRAID_CLI = path.join(DIST, 'electron', 'core', 'cli', 'main.js');
export const NATIVE_ADDON = path.resolve(DIST, '..', 'native', 'build', 'Release', 'braid_native.node');

const START_TIMEOUT_MS = 15_000;

export function missingPrerequisite(): string | undefined {
  if (!fs.existsSync(NATIVE_ADDON)) return `native addon not built (${NATIVE_ADDON}); run npm install / node-gyp rebuild --directory native`;
  return undefined;
}

export async function startByteServer(ns: Namespace, opts: { port: number; tcp?: boolean }): Promise<NsProcess> {
  const argv = [process.execPath, SERVE_BYTES, '--port', String(opts.port), ...(opts.tcp ? ['--tcp'] : [])];
  const proc = ns.spawn(argv, { label: `serve-bytes${opts.tcp ? ' --tcp' : ''} :${opts.port}` });
  await proc.waitForLine(/^listening \d+/, START_TIMEOUT_MS);
  return proc;
}

export type DialMode = 'mptcp' | 'tcp';

export async function startProxy(ns: Namespace, opts: { port: number; dial: DialMode }): Promise<NsProcess> {
  if (!fs.existsSync(BRAID_CLI)) throw new Error(`braid CLI not built: ${BRAID_CLI} is missing`);
  const argv = [process.execPath, BRAID_CLI, 'up', '--host', '127.0.0.1', '--port', String(opts.port), '--dial', opts.dial];
  const proc = ns.spawn(argv, { label: `braid up --dial ${opts.dial}` });
  await proc.waitForLine(/listening/i, START_TIMEOUT_MS);
  return proc;
}

export interface CurlResult {
  httpCode: number;
  bytes: number;
  /** request sent (after the SOCKS handshake and the proxy's dial) to last byte */
  transferSeconds: number;
  totalSeconds: number;
  mbit: number;
  sha256: string | null;
}

/**
 * curl inside `ns`, optionally through a SOCKS5 proxy (curl resolves nothing itself with
 * --socks5-hostname; the proxy dials). `out` null discards the body (benchmarks); otherwise the body
 * goes to a temporary file that is hashed and removed.
 */
export async function curlDownload(ns: Namespace, url: string, opts: {
  socksPort?: number; mptcpize?: boolean; hash?: boolean; maxSeconds: number;
}): Promise<CurlResult> {
  const tmp = opts.hash ? path.join(fs.mkdtempSync('/tmp/braid-dl-'), 'body') : null;
  const argv = [
    ...(opts.mptcpize ? ['mptcpize', 'run'] : []),
    'curl', '--silent', '--show-error', '--fail', '--max-time', String(opts.maxSeconds),
    ...(opts.socksPort ? ['--socks5-hostname', `127.0.0.1:${opts.socksPort}`] : []),
    '--output', tmp ?? '/dev/null',
    '--write-out', '%{http_code} %{size_download} %{time_pretransfer} %{time_total}',
    url,
  ];
  try {
    const { stdout } = await ns.exec(argv, { timeoutMs: (opts.maxSeconds + 10) * 1000 });
    const [code, size, pretransfer, total] = stdout.trim().split(/\s+/).map(Number) as [number, number, number, number];
    const transferSeconds = total - pretransfer;
    let sha256: string | null = null;
    if (tmp) {
      const h = crypto.createHash('sha256');
      const fd = fs.openSync(tmp, 'r');
      try {
        const buf = Buffer.alloc(1024 * 1024);
        for (let i = 0; i < 1_000_000; i++) {
          const n = fs.readSync(fd, buf, 0, buf.length, null);
          if (n === 0) break;
          h.update(buf.subarray(0, n));
        }
      } finally { fs.closeSync(fd); }
      sha256 = h.digest('hex');
    }
    return { httpCode: code, bytes: size, transferSeconds, totalSeconds: total, mbit: (size * 8) / transferSeconds / 1e6, sha256 };
  } finally {
    if (tmp) fs.rmSync(path.dirname(tmp), { recursive: true, force: true });
  }
}

export interface RawResult {
  status: number;
  bytes: number;
  sha256: string | null;
  seconds: number;
  mbit: number;
  info: import('../../electron/core/native/mptcp').MptcpInfo | null;
  infoError: string | null;
}

/** Our own client with connectFd: kernel MPTCP (or TCP) sockets, no proxy. */
export async function rawDownload(ns: Namespace, opts: { address: string; port: number; bytes: number; tcp?: boolean; hash?: boolean; maxSeconds: number }): Promise<RawResult> {
  const argv = [process.execPath, FETCH_BYTES, '--address', opts.address, '--port', String(opts.port), '--bytes', String(opts.bytes),
    '--timeout-ms', String(opts.maxSeconds * 1000), ...(opts.tcp ? ['--tcp'] : []), ...(opts.hash === false ? ['--no-hash'] : [])];
  const { stdout } = await ns.exec(argv, { timeoutMs: (opts.maxSeconds + 10) * 1000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RawResult;
}

/** The next response report the server printed at or after line `from`. */
export async function nextReport(server: NsProcess, from: number, timeoutMs = 10_000): Promise<ResponseReport> {
  const { line } = await server.waitForLine((l) => l.startsWith('{') && l.includes('"event":"response"'), timeoutMs, from);
  return JSON.parse(line) as ResponseReport;
}

export interface LinkSplit {
  /** bytes acked per link number, from the sender's subflows */
  bytesByLink: Record<number, number>;
  shareByLink: Record<number, number>;
  total: number;
  subflowsWithData: number;
  unmatched: number;
}

/**
 * Maps the sender's subflows to links by the peer address: on the server every subflow has the same
 * local address (the client dialled link 1's) and the same interface, only the client end differs.
 */
export function splitByLink(report: ResponseReport, topo: TwoLinkTopology): LinkSplit {
  const bytesByLink: Record<number, number> = { 1: 0, 2: 0 };
  let unmatched = 0;
  let subflowsWithData = 0;
  for (const s of report.info?.subflows ?? []) {
    const acked = s.bytesAcked;
    if (acked > 1024) subflowsWithData++;
    const link = topo.linkOf(s.remoteAddress) ?? topo.linkOf(s.localAddress);
    if (link === null) unmatched += acked;
    else bytesByLink[link] = (bytesByLink[link] ?? 0) + acked;
  }
  const total = Object.values(bytesByLink).reduce((a, b) => a + b, 0) + unmatched;
  const shareByLink: Record<number, number> = {};
  for (const [k, v] of Object.entries(bytesByLink)) shareByLink[Number(k)] = total > 0 ? v / total : 0;
  return { bytesByLink, shareByLink, total, subflowsWithData, unmatched };
}

export function counterDelta(before: Record<string, number>, after: Record<string, number>, name: string): number {
  return (after[name] ?? 0) - (before[name] ?? 0);
}

export function fmtSplit(s: LinkSplit): string {
  return `link1 ${(s.shareByLink[1]! * 100).toFixed(1)}% / link2 ${(s.shareByLink[2]! * 100).toFixed(1)}%`;
}
