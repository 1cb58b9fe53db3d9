/**
 * The dashboard end to end: `braid up` serving the built renderer on its control port inside the
 * client namespace of a two-link topology, and headless Chromium (playwright-core, Debian's
 * chromium) in the same namespace loading it from there. What the page shows is checked against the
 * kernel (MPTCP endpoints) and against a real download (curl through the proxy).
 *
 * Screenshots land in test-artifacts/ for a person to look at.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { CLI_PATH, LISTENING_LINE, startBraid, startProcess, type BraidProxy, type Running } from './helpers/proc';
import { capabilityDropper, ipEndpoints, shellQuote } from './helpers/paths-harness';
import { createUiTopology, killAllIn, missingBrowser, poll, UiDriver, type UiTopology } from './helpers/ui-harness';
import { requireFor, skipOrFail } from './helpers/prerequisites';

const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'renderer');
const RATE_MBIT = 20;
const SERVER_PORT = 8080;
const PROXY_PORT = 1080;
const CONTROL_PORT = 9797;
const DOWNLOAD_BYTES = 4_000_000_000;   // far more than the test lets it move: it is closed from the UI

const skip = requireFor('dashboard in Chromium against braid up in namespaces (renderer.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingBrowser());

interface Snapshot {
  proxyOn: string | null;
  /** the master switch's label: "Proxy on", "Proxy off", or "Proxy …" until the status has arrived */
  proxyLabel: string | null;
  link: string | null;
  legend: { path: string; down: number; up: number }[];
  cards: { name: string; state: string; down: number; up: number; policy: string | null; stateText: string | null; text: string }[];
  connections: { id: number; destination: string; transport: string; paths: string[]; program: string | null; programText: string | null }[];
  errors: string[];
  charts: { width: number; height: number }[];
  scroll: { width: number; client: number };
}

describe('dashboard in Chromium against braid up in the two-link namespaces', { skip, timeout: 240_000 }, () => {
  let topo: UiTopology;
  let server: NsProcess;
  let braid: BraidProxy;
  let unprivileged: Running | null = null;
  let configFile: string;
  let ui: UiDriver;
  let dashboard: string;
  let download: NsProcess | null = null;
  let scratch: string;
  let startIt: () => Promise<BraidProxy>;

  const snap = (): Promise<Snapshot> => ui.request<Snapshot>('snapshot');
  const shot = (name: string): Promise<unknown> => ui.request('screenshot', { path: path.join(ARTIFACTS, name) });
  const destination = (): string => `${topo.serverAddress(1)}:${SERVER_PORT}`;

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    topo = await createUiTopology({ rateMbit: RATE_MBIT });
    server = await startByteServer(topo.server, { port: SERVER_PORT });
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-ui-'));
    const config = (configFile = path.join(scratch, 'config.json'));
    fs.writeFileSync(config, JSON.stringify({
      proxy: { host: '127.0.0.1', port: PROXY_PORT, dial: 'mptcp' },
      // The cards' policy is checked against kernel endpoints: the kernel path manager, pinned.
      paths: { manager: 'kernel', interfaces: { [topo.ifname[1]]: 'use', [topo.ifname[2]]: 'use' } },
      // Fixed, so that the page's link stays valid across the restart in the reconnect test.
      control: { host: '127.0.0.1', port: CONTROL_PORT, token: `ui-test-${process.pid}-${Date.now()}` },
    }));
    startIt = () => startBraid(['up', '--config', config, '--state-dir', path.join(scratch, 'state')], {
      prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000,
    });
    braid = await startIt();
    dashboard = await poll(async () => /dashboard: (http:\/\/\S+#token=\S+)\)/.exec(braid.stdout())?.[1], 10_000, 'braid up printing its dashboard link');
    ui = new UiDriver(topo.client);
  });

  after(async () => {
    await ui?.quit().catch(() => {});
    await download?.stop();
    await braid?.stop();
    await unprivileged?.stop();
    if (topo) await killAllIn(topo.client);   // anything Chromium left behind keeps the namespace alive
    await topo?.destroy();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('the page loads from the control port with the CSP, the real proxy state and both interfaces', async () => {
    const opened = await ui.request<{ status: number; csp: string | null }>('open', { url: dashboard, width: 1600, height: 1000, colorScheme: 'light' });
    assert.equal(opened.status, 200);
    assert.match(opened.csp ?? '', /default-src 'self'/);
    const s = await poll(async () => {
      const v = await snap();
      // The cards may come from paths.list before the status call has answered (the switch then
      // reads "Proxy …", unchecked): wait for both.
      return v.link === 'connected' && v.cards.length >= 2 && !v.proxyLabel?.endsWith('…') ? v : undefined;
    }, 10_000, 'dashboard connected with interface cards and the proxy state');
    assert.equal(s.proxyOn, 'true', 'the master switch does not show the running proxy');
    const names = s.cards.map((c) => c.name).sort();
    assert.deepEqual(names, [topo.ifname[1], topo.ifname[2]].sort());
    for (const c of s.cards) {
      assert.equal(c.state, 'active', `${c.name}: ${c.stateText}`);
      assert.equal(c.policy, 'use');
    }
    assert.match(s.cards.find((c) => c.name === topo.ifname[1])!.text, /Ethernet/);
    assert.match(s.cards.find((c) => c.name === topo.ifname[2])!.text, /Cellular/);
    assert.match(s.cards.find((c) => c.name === topo.ifname[2])!.text, new RegExp(topo.clientAddress(2).replace(/\./g, '\\.')));
    assert.deepEqual(s.errors, []);
    assert.deepEqual(await ui.request('console'), [], 'console errors (CSP violations show up here)');
  });

  test('keyboard: Tab reaches the master switch first, then "All apps", then the theme control', async () => {
    const order = await ui.request<string[]>('tabOrder', { count: 3 });
    assert.match(order[0]!, /^button\[switch\] Proxy on/);
    assert.match(order[1]!, /^button\[switch\] All apps off/);
    assert.match(order[2]!, /^button .*theme/i);
  });

  test('during a download the chart and two cards show two paths with non-zero rates', async () => {
    download = topo.client.spawn([
      'curl', '--silent', '--show-error', '--max-time', '120', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`,
      '--output', '/dev/null', `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${DOWNLOAD_BYTES}`,
    ], { label: 'curl download' });
    const [a, b] = [topo.ifname[1], topo.ifname[2]];
    const s = await poll(async () => {
      const v = await snap();
      const legend = new Map(v.legend.map((l) => [l.path, l.down]));
      const cards = new Map(v.cards.map((c) => [c.name, c.down]));
      return (legend.get(a) ?? 0) > 0 && (legend.get(b) ?? 0) > 0 && (cards.get(a) ?? 0) > 0 && (cards.get(b) ?? 0) > 0 ? v : undefined;
    }, 20_000, 'both paths with a non-zero download rate in the chart legend and the cards');
    const row = await poll(async () => (await snap()).connections.find((c) => c.destination === destination() && c.paths.length >= 2), 10_000,
      'the download in the connections table over two paths');
    assert.equal(row.transport, 'mptcp');
    assert.deepEqual([...row.paths].sort(), [a, b].sort());
    assert.ok(s.charts.length === 2 && s.charts.every((c) => c.width > 100 && c.height > 40), `charts not drawn: ${JSON.stringify(s.charts)}`);
    // Let a few seconds of history build up for the pictures.
    await new Promise((r) => setTimeout(r, 6000));
    await shot('dashboard-1600x1000-light.png');
    assert.equal(await ui.request('colorScheme', { scheme: 'dark' }), 'dark');
    await shot('dashboard-1600x1000-dark.png');
    await ui.request('viewport', { width: 800, height: 600 });
    await shot('dashboard-800x600-dark.png');
    await ui.request('colorScheme', { scheme: 'light' });
    await shot('dashboard-800x600-light.png');
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'dashboard-800x600-light-fullpage.png'), fullPage: true });
    const narrow = await snap();
    assert.ok(narrow.scroll.width <= narrow.scroll.client + 1, `horizontal scrolling at 800x600 (${narrow.scroll.width} > ${narrow.scroll.client})`);
    await ui.request('viewport', { width: 1600, height: 1000 });
  });

  test('choosing a policy in a card changes the kernel endpoint', async () => {
    const iface = topo.ifname[2];
    const addr = topo.clientAddress(2);
    const has = async (): Promise<boolean> => (await ipEndpoints(topo.client)).some((e) => e.address === addr);
    assert.ok(await has(), `no endpoint for ${addr} before the change`);
    assert.equal(await ui.request('selectPolicy', { iface, value: 'off' }), 'off');
    await poll(async () => ((await has()) ? undefined : true), 5000, `endpoint ${addr} removed after choosing off`);
    await poll(async () => (await snap()).cards.find((c) => c.name === iface && c.state === 'off'), 5000, 'the card showing off');
    await ui.request('selectPolicy', { iface, value: 'backup' });
    const backup = await poll(async () => (await ipEndpoints(topo.client)).find((e) => e.address === addr && e.backup), 5000, `endpoint ${addr} back, flagged backup`);
    assert.ok(backup.subflow, 'a backup endpoint must still be a subflow endpoint');
    await ui.request('selectPolicy', { iface, value: 'use' });
    await poll(async () => (await ipEndpoints(topo.client)).find((e) => e.address === addr && !e.backup && e.subflow), 5000, `endpoint ${addr} back in use`);
    assert.deepEqual((await snap()).errors, []);
  });

  test('the download\'s program is shown; a filter by program or host keeps only matching rows', async () => {
    const row = await poll(async () => (await snap()).connections.find((c) => c.destination === destination() && c.program), 10_000, 'the program of the download');
    assert.equal(row.program, 'curl');
    assert.equal(row.programText, `curl (${download!.pid})`);
    assert.deepEqual(await ui.request('filterConnections', { text: 'no-such-program' }), []);
    assert.deepEqual(await ui.request('filterConnections', { text: 'CURL' }), [destination()]);
    assert.deepEqual(await ui.request('filterConnections', { text: topo.serverAddress(1) }), [destination()]);
    await ui.request('filterConnections', { text: '' });
  });

  test('the close button in the connections table ends the download', async () => {
    assert.ok(download?.running, 'the download ended before the UI closed it');
    await ui.request('closeConnection', { destination: destination() });
    const end = await Promise.race([download!.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
    assert.ok(end, 'curl still running 10 s after the close button');
    assert.notEqual(end.code, 0, 'curl exited successfully: the connection was not cut');
    await poll(async () => ((await snap()).connections.some((c) => c.destination === destination()) ? undefined : true), 5000, 'the row leaving the table');
    assert.deepEqual((await snap()).errors, []);
  });

  test('"close the filtered" closes every connection of the filtered program', async () => {
    const second = topo.client.spawn([
      'curl', '--silent', '--max-time', '60', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`,
      '--output', '/dev/null', `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/${DOWNLOAD_BYTES}`,
    ], { label: 'curl download 2' });
    try {
      await poll(async () => (await snap()).connections.find((c) => c.program === 'curl'), 10_000, 'the second download listed with its program');
      await ui.request('filterConnections', { text: 'curl' });
      assert.equal(await ui.request('closeFiltered'), 'Close the 1 shown');
      const end = await Promise.race([second.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
      assert.ok(end && end.code !== 0, 'curl was not cut by "close the filtered"');
    } finally {
      await second.stop();
      await ui.request('filterConnections', { text: '' });
    }
  });

  test('an invalid relay link is refused plainly, next to the field', async () => {
    const r = await ui.request<{ text: string; role: string | null }>('importRelay', { link: 'braid://not-a-relay' });
    assert.match(r.text, /EBADLINK|link/i);
    assert.ok(r.text.length > 15, `unhelpful message: '${r.text}'`);
    assert.equal(r.role, 'alert');
    await shot('relay-error-1600x1000-light.png');
  });

  test('the master switch stops and starts the proxy', async () => {
    assert.equal(await ui.request('toggleProxy'), false);
    const refused = await topo.client.exec(['curl', '--silent', '--max-time', '5', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, '--output', '/dev/null',
      `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/1000`], { allowFailure: true, timeoutMs: 15_000 });
    assert.notEqual(refused.code, 0, 'the proxy still answered with the switch off');
    await shot('proxy-off-1600x1000-light.png').catch(() => {});
    assert.equal(await ui.request('toggleProxy'), true);
    const ok = await topo.client.exec(['curl', '--silent', '--show-error', '--fail', '--max-time', '10', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`,
      '--output', '/dev/null', '--write-out', '%{size_download}', `http://${topo.serverAddress(1)}:${SERVER_PORT}/bytes/100000`], { timeoutMs: 20_000 });
    assert.equal(ok.stdout.trim(), '100000');
    assert.deepEqual(await ui.request('console'), []);
  });

  test('the "All apps" switch turns transparent mode on (nftables inet braid, QUIC notice) and off', async () => {
    const tables = async (): Promise<string> => (await topo.client.exec(['nft', 'list', 'tables'])).stdout;
    assert.doesNotMatch(await tables(), /inet braid/);
    const on = await ui.request<{ on: boolean; notice: string[] }>('toggleAllApps');
    assert.equal(on.on, true);
    assert.match(await tables(), /table inet braid/);
    assert.ok(on.notice.some((n) => /every app's TCP goes through Braid\. QUIC \(UDP 443\) is blocked/.test(n)), on.notice.join(' | '));
    const off = await ui.request<{ on: boolean; notice: string[] }>('toggleAllApps');
    assert.equal(off.on, false);
    assert.doesNotMatch(await tables(), /inet braid/);
    assert.deepEqual(await ui.request('console'), []);
  });

  test('the page says when braid up is gone and reconnects by itself when it is back', async () => {
    await braid.stop();
    const gone = await poll(async () => {
      const v = await snap();
      return /retrying/.test(v.link ?? '') ? v : undefined;
    }, 10_000, 'the page noticing that braid up stopped');
    assert.match(gone.link!, /cannot reach|lost/);
    await ui.request('viewport', { width: 800, height: 600 });
    await shot('reconnecting-800x600-light.png');
    await ui.request('viewport', { width: 1600, height: 1000 });
    braid = await startIt();
    await poll(async () => ((await snap()).link === 'connected' ? true : undefined), 20_000, 'the page reconnecting');
    const s = await poll(async () => {
      const v = await snap();
      return v.proxyOn === 'true' && v.cards.length === 2 ? v : undefined;
    }, 10_000, 'state reloaded after reconnecting');
    assert.deepEqual(s.errors, [], 'errors left over from the restart');
  });

  test('"managed elsewhere" and "needs privileges" are shown as such', async (t) => {
    const drop = await capabilityDropper();
    if (!drop) return skipOrFail(t, 'dashboard against braid up without CAP_NET_ADMIN (renderer.test.ts)', 'no capsh or setpriv to run braid up without CAP_NET_ADMIN');
    await braid.stop();
    // Someone else's endpoint on eth0 (as NetworkManager or mptcpd would add), then a Braid that may not change endpoints.
    await poll(async () => ((await ipEndpoints(topo.client)).length === 0 ? true : undefined), 5000, 'Braid removing its endpoints at exit');
    await topo.client.exec(['ip', 'mptcp', 'endpoint', 'add', topo.clientAddress(1), 'dev', topo.ifname[1], 'subflow']);
    const cmd = `exec ${shellQuote(process.execPath)} ${shellQuote(CLI_PATH)} up --config ${shellQuote(configFile)} --state-dir ${shellQuote(path.join(scratch, 'state2'))}`;
    unprivileged = await startProcess('ip', ['netns', 'exec', topo.client.name, ...drop(cmd)], { ready: LISTENING_LINE, timeoutMs: 15_000 });
    const s = await poll(async () => {
      const v = await snap();
      const states = new Map(v.cards.map((c) => [c.name, c.stateText]));
      return v.link === 'connected' && states.get(topo.ifname[1]) === 'managed elsewhere' && states.get(topo.ifname[2]) === 'needs privileges' ? v : undefined;
    }, 25_000, 'eth0 managed elsewhere and wwan0 needing privileges');
    assert.match(s.cards.find((c) => c.name === topo.ifname[2])!.text, /CAP_NET_ADMIN/);
    await ui.request('viewport', { width: 1600, height: 1000 });
    await shot('unprivileged-1600x1000-light.png');
    // The policy can still be chosen (it is saved), but the kernel is not touched.
    await ui.request('selectPolicy', { iface: topo.ifname[2], value: 'off' });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual((await ipEndpoints(topo.client)).map((e) => e.address), [topo.clientAddress(1)]);
  });
});
