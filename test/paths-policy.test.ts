// The path policy governs every byte, end to end: `braid up` in a client namespace whose WiFi
// (wlan0) and cellular (wwan0) links are each shaped to 20 Mbit/s and each hold a default route
// (WiFi preferred), the destination reached only through them. Bytes are counted by the client's
// interface counters, never by Braid itself.
//
// - off: the default route's link set off carries under 1 % of a 30 MB download;
// - backup: it carries nothing while a use path works, and takes the transfer over when that fails;
// - a connection no allowed path reaches is refused with the reason (SOCKS and HTTP); one that
//   only a backup path reaches runs there and its entry in the connections list says why;
// - secondary: a stream read at 2 Mbit/s for 20 s puts at most 3 % of its bytes on it, a bulk
//   60 MB download reaches at least 1.8x one link, and when a connection's need ends its
//   secondary subflow is flagged backup (seen from the server);
// - rules: a rule pinning a destination to WiFi puts at least 99 % of its bytes there, and the
//   connection names the rule;
// - Braid as the namespace's path manager: another program's MPTCP connection gets subflows by the
//   same policies; net.mptcp.path_manager is put back on exit, and by the guardian after kill -9.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { startBraid, type BraidProxy } from './helpers/proc';
import { curlDownload, missingPrerequisite, nextReport, startByteServer } from './helpers/multipath-harness';
import { expectedSha256 } from './helpers/byte-stream';
import { killOnSignal, scratchDir, until } from './helpers/paths-harness';
import { createPolicyTopology, type PolicyTopology } from './helpers/policy-topology';
import type { ResponseReport } from './helpers/mptcp-server';
import { requireFor } from './helpers/prerequisites';
import { BRAID_CLI } from './helpers/multipath-harness';
import { tempRelayDir } from './helpers/relay-topology';
import fs from 'node:fs';
import type { ConfigInput } from '../electron/core/config/schema';

const skip = requireFor('the path policy end to end (paths-policy.test.ts)', skipUnlessRoot() ?? missingPrerequisite());
const RATE_MBIT = 20;
const PORT = 8080;
const CONTROL_PORT = 9797;
const TOKEN = `policy-${process.pid}`;
const MB = 1_000_000;
const SOCKS_FETCH = path.join(__dirname, 'helpers', 'socks-fetch.js');
const PACED_READER = path.join(__dirname, 'helpers', 'paced-reader.js');

interface ConnRow { id: number; destination: string | null; route: { rule: string | null; via: string | null; note: string | null; secondary: string | null } | null }

describe('the path policy governs every byte', { skip, timeout: 420_000 }, () => {
  let topo: PolicyTopology;
  let server: NsProcess;
  let braid: BraidProxy | null = null;
  const files = scratchDir('policy');

  const pm = async (): Promise<string> => (await topo.client.exec(['cat', '/proc/sys/net/mptcp/path_manager'])).stdout.trim();
  const up = async (paths: NonNullable<ConfigInput['paths']>): Promise<BraidProxy> => {
    await braid?.stop('SIGTERM', 5000);
    files.write({ paths, control: { host: '127.0.0.1', port: CONTROL_PORT, token: TOKEN } });
    braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state],
      { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 }));
    return braid;
  };
  const api = async <T>(command: string, params: unknown = {}): Promise<T> => {
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${TOKEN}`, '-X', 'POST', '--data', JSON.stringify(params), `http://127.0.0.1:${CONTROL_PORT}/api/${command}`]);
    const body = JSON.parse(r.stdout) as { ok: boolean; result: T; error?: { message: string } };
    assert.ok(body.ok, body.error?.message);
    return body.result;
  };
  /** Client interface counters around `fn`: bytes received on each link meanwhile. */
  const counted = async <T>(fn: () => Promise<T>): Promise<{ result: T; wlan0: number; wwan0: number }> => {
    const a = [await topo.rx('wlan0'), await topo.rx('wwan0')];
    const result = await fn();
    return { result, wlan0: (await topo.rx('wlan0')) - a[0]!, wwan0: (await topo.rx('wwan0')) - a[1]! };
  };
  const socksGet = (bytes: number, dest = topo.dest) => curlDownload(topo.client, `http://${dest}:${PORT}/bytes/${bytes}`, { socksPort: braid!.port, hash: true, maxSeconds: 90 });
  const pct = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(2)} %`;

  before(async () => {
    topo = await createPolicyTopology({ rateMbit: RATE_MBIT });
    server = await startByteServer(topo.server, { port: PORT });
  });

  after(async () => {
    await braid?.stop('SIGTERM', 5000);
    await topo?.destroy();
  });

  test('off: the link holding the preferred default route carries under 1 % of a 30 MB download', async (t) => {
    const b = await up({ interfaces: { wlan0: 'off', wwan0: 'use' } });
    assert.match(b.stdout(), /braid: {3}MPTCP path manager kernel → userspace/, 'braid up lists the change it made');
    assert.equal(await pm(), 'userspace');
    const c = await counted(() => socksGet(30 * MB));
    t.diagnostic(`wlan0 (off, default route) received ${c.wlan0} B = ${pct(c.wlan0, 30 * MB)}; wwan0 ${c.wwan0} B; ${c.result.mbit.toFixed(1)} Mbit/s`);
    assert.equal(c.result.sha256, expectedSha256(30 * MB));
    assert.ok(c.wlan0 < 0.01 * 30 * MB, `wlan0 is off yet received ${c.wlan0} bytes`);
    assert.ok(c.wwan0 >= 30 * MB, `wwan0 received only ${c.wwan0} bytes`);
  });

  test('backup: nothing while a use path works, the whole transfer once it fails', async (t) => {
    await up({ interfaces: { wlan0: 'backup', wwan0: 'use' } });
    const bytes = 12 * MB;
    const rx0 = await topo.rx('wlan0');
    const from = server.lines.length;
    const p = topo.client.spawn([process.execPath, SOCKS_FETCH, '--proxy-port', String(braid!.port), '--address', topo.dest, '--port', String(PORT),
      '--bytes', String(bytes), '--progress', '500000', '--timeout-ms', '60000'], { label: 'socks-fetch' });
    await p.waitForLine((l) => l.startsWith('progress ') && Number(l.split(' ')[1]) >= 4 * MB, 60_000);
    const before = (await topo.rx('wlan0')) - rx0;
    await topo.setDown(topo.cell);
    try {
      const r = JSON.parse((await p.waitForLine(/^\{/, 60_000)).line) as { status: number; bytes: number; sha256: string; maxGapMs: number };
      const total = (await topo.rx('wlan0')) - rx0;
      const report: ResponseReport = await nextReport(server, from, 10_000);
      const onWlan = report.info?.subflows.filter((s) => s.remoteAddress.replace(/^::ffff:/, '') === topo.wifi.client) ?? [];
      t.diagnostic(`wlan0 (backup) received ${before} B while wwan0 carried 4 MB, ${total} B in all; longest stall ${r.maxGapMs.toFixed(0)} ms`);
      assert.equal(r.sha256, expectedSha256(bytes));
      assert.ok(before < 0.01 * 4 * MB, `the backup link received ${before} bytes while the use link worked`);
      assert.ok(total >= 0.9 * (bytes - 4 * MB), `the backup link took over only ${total} bytes`);
      assert.equal(onWlan.length, 1, JSON.stringify(report.info?.subflows));
      assert.equal(onWlan[0]!.backup, true, 'the server does not see the wlan0 subflow as backup');
    } finally {
      await topo.setUp(topo.cell);
    }
  });

  test('a connection no allowed path reaches is refused with the reason; one only a backup reaches says why', async (t) => {
    await up({ interfaces: { wlan0: 'use', wwan0: 'backup' }, rules: [{ name: 'wired only', match: { port: PORT }, paths: ['ethernet'], backup: [] }] });
    const http = await topo.client.exec(['curl', '-sS', '-o', '-', '-w', '\n%{http_code}', '-x', `http://127.0.0.1:${braid!.port}`, `http://${topo.dest}:${PORT}/bytes/10`], { allowFailure: true });
    t.diagnostic(`HTTP: ${http.stdout.replace(/\n/g, ' | ')}`);
    assert.match(http.stdout, /no allowed path reaches 198\.51\.100\.1: wlan0 is not allowed by rule "wired only"; wwan0 is not allowed by rule "wired only"/);
    assert.match(http.stdout, /502$/);
    const socks = await topo.client.exec(['curl', '-sS', '--socks5-hostname', `127.0.0.1:${braid!.port}`, `http://${topo.dest}:${PORT}/bytes/10`], { allowFailure: true });
    assert.equal(socks.code, 97, 'curl: SOCKS5 connect refused');
    assert.match(socks.stderr, /\(2\)/, 'SOCKS5 reply 2: connection not allowed by ruleset');
    assert.match(braid!.stderr(), /socks5 198\.51\.100\.1:8080: ENOPATH no allowed path reaches/);

    // Only a backup path has a route to dest2 (a more specific one, on wwan0).
    await up({ interfaces: { wlan0: 'use', wwan0: 'backup' } });
    await topo.client.exec(['ip', 'route', 'add', `${topo.dest2}/32`, 'via', topo.cell.server, 'dev', 'wwan0']);
    try {
      const reader = topo.client.spawn([process.execPath, PACED_READER, '--proxy-port', String(braid!.port), '--address', topo.dest2, '--port', String(PORT),
        '--bytes', '1000000', '--rate', '250000'], { label: 'paced reader' });
      const row = (await until(async () => (await api<ConnRow[]>('connections.list')).find((c) => c.destination === `${topo.dest2}:${PORT}` && c.route), 10_000, 'the connection listed')).value;
      t.diagnostic(`route: ${JSON.stringify(row.route)}`);
      assert.equal(row.route!.via, 'wwan0');
      assert.match(row.route!.note ?? '', /no use path reaches 198\.51\.100\.2.*first subflow on backup path wwan0/);
      assert.equal(JSON.parse((await reader.waitForLine(/^\{/, 30_000)).line).status, 200);
    } finally {
      await topo.client.exec(['ip', 'route', 'del', `${topo.dest2}/32`]);
    }
  });

  test('secondary: a 2 Mbit/s stream leaves it alone; a bulk download takes it and reaches 1.8x one link', async (t) => {
    // One link, measured in this run the same way: through Braid, the cellular link off.
    await up({ interfaces: { wlan0: 'use', wwan0: 'off' } });
    const single = await socksGet(20 * MB);
    await up({ interfaces: { wlan0: 'use', wwan0: 'secondary' } });

    const bytes = 5 * MB;   // 20 s at 2 Mbit/s
    const stream = await counted(async () => {
      const p = topo.client.spawn([process.execPath, PACED_READER, '--proxy-port', String(braid!.port), '--address', topo.dest, '--port', String(PORT),
        '--bytes', String(bytes), '--rate', '250000', '--timeout-ms', '60000'], { label: 'paced reader' });
      return JSON.parse((await p.waitForLine(/^\{/, 60_000)).line) as { status: number; bytes: number; seconds: number };
    });
    t.diagnostic(`2 Mbit/s stream: ${stream.result.bytes} B in ${stream.result.seconds.toFixed(1)} s; wwan0 (secondary) received ${stream.wwan0} B = ${pct(stream.wwan0, bytes)}, wlan0 ${stream.wlan0} B`);
    assert.equal(stream.result.bytes, bytes);
    assert.ok(stream.result.seconds >= 18, 'the reader kept its pace');
    assert.ok(stream.wwan0 <= 0.03 * bytes, `the secondary link carried ${pct(stream.wwan0, bytes)} of a 2 Mbit/s stream`);

    const seen = new Set<string>();
    const watch = setInterval(() => void api<ConnRow[]>('connections.list').then((l) => l.forEach((c) => c.route?.secondary && seen.add(c.route.secondary))).catch(() => {}), 250);
    const bulk = await counted(() => socksGet(60 * MB)).finally(() => clearInterval(watch));
    const ratio = bulk.result.mbit / single.mbit;
    t.diagnostic(`bulk 60 MB: ${bulk.result.mbit.toFixed(1)} Mbit/s against ${single.mbit.toFixed(1)} Mbit/s on one link = ${ratio.toFixed(2)}x; wwan0 ${pct(bulk.wwan0, 60 * MB)}; states seen ${[...seen].join(',')}`);
    assert.equal(bulk.result.sha256, expectedSha256(60 * MB));
    assert.ok(ratio >= 1.8, `bulk download at ${ratio.toFixed(2)}x one link`);
    assert.ok(seen.has('active'), 'the connections list never showed the secondary path carrying');
  });

  test('secondary: when the need ends, its subflow on the connection is flagged backup', async (t) => {
    await up({ interfaces: { wlan0: 'use', wwan0: 'secondary' } });
    const from = server.lines.length;
    // One keep-alive connection: a bulk response, some seconds of nothing (the next request starts 12 s after the first), then a small one.
    const url = (n: number): string => `http://${topo.dest}:${PORT}/bytes/${n}`;
    const r = await topo.client.exec(['curl', '-sS', '--rate', '5/m', '--socks5-hostname', `127.0.0.1:${braid!.port}`, '-o', '/dev/null', '-o', '/dev/null',
      '-w', '%{num_connects}\n', url(20 * MB), url(100_000)], { timeoutMs: 60_000 });
    assert.deepEqual(r.stdout.trim().split('\n'), ['1', '0'], 'both responses on one connection');
    const reports = (): ResponseReport[] => server.lines.slice(from).filter((l) => l.includes('"event":"response"')).map((l) => JSON.parse(l) as ResponseReport);
    await until(async () => (reports().length >= 2 ? true : undefined), 10_000, 'the server reporting both responses');
    const first = reports().find((x) => x.bytes === 20 * MB)!;
    const second = reports().find((x) => x.bytes === 100_000)!;
    const onCell = (rep: ResponseReport) => rep.info?.subflows.find((s) => s.remoteAddress.replace(/^::ffff:/, '') === topo.cell.client);
    t.diagnostic(`after the bulk: ${JSON.stringify(onCell(first))}; after the pause: ${JSON.stringify(onCell(second))}`);
    assert.ok(onCell(first) && onCell(first)!.bytesAcked > MB, 'the bulk response did not use the secondary path');
    assert.equal(onCell(second)?.backup, true, 'after the need ended the secondary subflow is not backup');
  });

  test('a rule pinning a destination to WiFi keeps at least 99 % of its bytes there, and the connection names it', async (t) => {
    await up({ interfaces: { wlan0: 'use', wwan0: 'use' }, rules: [{ name: 'pin to wifi', match: { cidr: `${topo.dest}/32`, port: PORT }, paths: ['wifi'], backup: [] }] });
    let row: ConnRow | undefined;
    const watch = setInterval(() => void api<ConnRow[]>('connections.list').then((l) => (row ??= l.find((c) => c.route?.rule))).catch(() => {}), 200);
    const c = await counted(() => socksGet(30 * MB)).finally(() => clearInterval(watch));
    const share = c.wlan0 / (c.wlan0 + c.wwan0);
    t.diagnostic(`pinned to wifi: wlan0 ${c.wlan0} B, wwan0 ${c.wwan0} B: ${(100 * share).toFixed(2)} % on wlan0; route ${JSON.stringify(row?.route)}`);
    assert.equal(c.result.sha256, expectedSha256(30 * MB));
    assert.ok(share >= 0.99, `only ${(100 * share).toFixed(2)} % on the pinned path`);
    assert.equal(row?.route?.rule, 'pin to wifi');
    // Another destination no rule matches: both links carry it.
    const free = await counted(() => curlDownload(topo.client, `http://${topo.dest2}:${PORT}/bytes/${20 * MB}`, { socksPort: braid!.port, maxSeconds: 60 }));
    t.diagnostic(`not matched: wlan0 ${free.wlan0} B, wwan0 ${free.wwan0} B`);
    assert.ok(free.wwan0 > 0.3 * 20 * MB && free.wlan0 > 0.3 * 20 * MB, 'a destination no rule matches uses both paths');
  });

  test('through a relay, a rule steers the connection to the relay: pinned on its own, others on warm ones over both links', async (t) => {
    const dir = tempRelayDir();
    const second = await startByteServer(topo.server, { port: PORT + 1 });
    const relay = topo.server.spawn([process.execPath, BRAID_CLI, 'relay', '--listen', '[::]:8443', '--allow', '198.51.100.0/24', '--dir', dir,
      '--metrics', 'off', '--public-host', topo.dest], { label: 'braid relay' });
    try {
      const link = (await relay.waitForLine(/^braid: share link: /, 15_000)).line.slice('braid: share link: '.length).trim();
      await braid?.stop('SIGTERM', 5000);
      files.write({ relay: { link }, paths: { interfaces: { wlan0: 'use', wwan0: 'use' }, rules: [{ name: 'pin to wifi', match: { port: PORT }, paths: ['wifi'], backup: [] }] },
        control: { host: '127.0.0.1', port: CONTROL_PORT, token: TOKEN } });
      braid = killOnSignal(await startBraid(['up', '-v', '--port', '0', '--config', files.config, '--state-dir', files.state],
        { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 }));
      let row: ConnRow | undefined;
      const watch = setInterval(() => void api<ConnRow[]>('connections.list').then((l) => (row ??= l.find((c) => c.route?.rule))).catch(() => {}), 200);
      const pinned = await counted(() => socksGet(20 * MB)).finally(() => clearInterval(watch));
      const free = await counted(() => curlDownload(topo.client, `http://${topo.dest}:${PORT + 1}/bytes/${20 * MB}`, { socksPort: braid!.port, maxSeconds: 60 }));
      t.diagnostic(`through the relay, pinned: wlan0 ${pinned.wlan0} B wwan0 ${pinned.wwan0} B (route ${JSON.stringify(row?.route)}); not pinned: wlan0 ${free.wlan0} B wwan0 ${free.wwan0} B`);
      assert.equal(pinned.result.sha256, expectedSha256(20 * MB));
      assert.ok(pinned.wlan0 / (pinned.wlan0 + pinned.wwan0) >= 0.99, 'the pinned connection to the relay used the other link');
      assert.equal(row?.route?.rule, 'pin to wifi');
      assert.ok(free.wwan0 > 0.3 * 20 * MB && free.wlan0 > 0.3 * 20 * MB, 'an unpinned connection through the relay did not use both links');
    } finally {
      await relay.stop();
      await second.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('another program\'s MPTCP connection gets the same policies; the setting is put back on exit and after kill -9', async (t) => {
    await up({ interfaces: { wlan0: 'use', wwan0: 'backup' } });
    const direct = await counted(() => curlDownload(topo.client, `http://${topo.dest}:${PORT}/bytes/${20 * MB}`, { mptcpize: true, maxSeconds: 60 }));
    await up({ interfaces: { wlan0: 'use', wwan0: 'use' } });
    const both = await counted(() => curlDownload(topo.client, `http://${topo.dest}:${PORT}/bytes/${20 * MB}`, { mptcpize: true, maxSeconds: 60 }));
    t.diagnostic(`mptcpize curl, wwan0 backup: wwan0 ${pct(direct.wwan0, 20 * MB)}; wwan0 use: wlan0 ${pct(both.wlan0, 20 * MB)} wwan0 ${pct(both.wwan0, 20 * MB)} at ${both.result.mbit.toFixed(1)} Mbit/s`);
    assert.ok(direct.wwan0 < 0.01 * 20 * MB, 'a backup path carried another program\'s traffic');
    assert.ok(both.wwan0 > 0.3 * 20 * MB && both.wlan0 > 0.3 * 20 * MB, 'another program\'s connection did not get a subflow per use path');

    await braid!.stop('SIGTERM', 5000);
    braid = null;
    assert.equal(await pm(), 'kernel', 'SIGTERM: the path manager is put back');
    const b = await up({ interfaces: { wlan0: 'use' } });
    assert.equal(await pm(), 'userspace');
    b.child.kill('SIGKILL');
    await b.exited;
    braid = null;
    const back = await until(async () => ((await pm()) === 'kernel' ? true : undefined), 3000, 'the guardian putting net.mptcp.path_manager back');
    t.diagnostic(`path_manager back to kernel ${back.ms.toFixed(0)} ms after kill -9`);
  });
});
