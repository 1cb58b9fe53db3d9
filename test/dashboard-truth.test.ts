/**
 * The dashboard says what the paths and connections actually do, checked in headless Chromium
 * against `braid up` in a two-link topology where eth0 holds the preferred default route and the
 * destination is reached only through default routes (as on a real desktop):
 *
 * - eth0's policy is off: it carries nothing, though it holds the preferred default route (Braid
 *   picks every connection's first subflow by policy); set in use from its card, the running
 *   download gets a subflow over it;
 * - the chart legend keeps every path that carried traffic after it goes idle;
 * - clients that give up (curl --max-time, against a silent destination and against one whose
 *   SYNs are dropped, in SOCKS5, HTTP CONNECT and plain HTTP) leave the connections table;
 * - the relay card names the relay's address once.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { BRAID_CLI, missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { startBraid, type BraidProxy } from './helpers/proc';
import { ipEndpoints } from './helpers/paths-harness';
import { tempRelayDir } from './helpers/relay-topology';
import { createUiTopology, killAllIn, missingBrowser, poll, UiDriver, type UiTopology } from './helpers/ui-harness';

const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'dashboard-truth');
const RATE_MBIT = 20;
const PROXY_PORT = 1080;
const CONTROL_PORT = 9797;
const BYTES_PORT = 8080;
const SILENT_PORT = 8081;   // accepts, reads, never answers, ignores EOF
const DROPPED_PORT = 8082;  // SYNs dropped by the server: a dial to it stays pending
const RELAY_PORT = 8443;
/** Reached only through the default routes: the server's own address, not on either link. */
const DEST = '198.51.100.10';
const GIVE_UP_S = 4;   // the table refreshes its rows every second: room for a few

const skip = skipUnlessRoot() ?? missingPrerequisite() ?? missingBrowser();

interface Snapshot {
  link: string | null;
  legend: { path: string; down: number; up: number }[];
  cards: { name: string; state: string; down: number; up: number; stateText: string | null; text: string }[];
  connections: { id: number; destination: string; transport: string; paths: string[] }[];
  errors: string[];
}

const SILENT_ORIGIN = `
const net = require('net');
const keep = new Set();
net.createServer({ allowHalfOpen: true }, (s) => { keep.add(s); s.on('error', () => {}); s.resume(); })
  .listen(${SILENT_PORT}, '${DEST}', () => console.log('listening'));
`;

describe('the dashboard tells the truth', { skip, timeout: 240_000 }, () => {
  let topo: UiTopology;
  let braid: BraidProxy;
  let ui: UiDriver;
  let scratch: string;
  let relayDir: string;
  const servers: NsProcess[] = [];
  let download: NsProcess | null = null;

  const snap = (): Promise<Snapshot> => ui.request<Snapshot>('snapshot');
  const shot = (name: string): Promise<unknown> => ui.request('screenshot', { path: path.join(ARTIFACTS, name) }).catch(() => {});
  const card = (s: Snapshot, name: string) => s.cards.find((c) => c.name === name);

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    topo = await createUiTopology({ rateMbit: RATE_MBIT });
    const [eth0, wwan0] = [topo.ifname[1], topo.ifname[2]];
    // Default routes on both links, eth0's preferred, as NetworkManager sets them up.
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(1), 'dev', eth0, 'metric', '100']);
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(2), 'dev', wwan0, 'metric', '200']);
    await topo.server.exec(['ip', 'addr', 'add', `${DEST}/32`, 'dev', 'lo']);
    await topo.server.exec(['nft', 'add', 'table', 'inet', 'braid_ui_drop']);
    await topo.server.exec(['nft', 'add', 'chain', 'inet', 'braid_ui_drop', 'in', '{ type filter hook input priority 0; }']);
    await topo.server.exec(['nft', 'add', 'rule', 'inet', 'braid_ui_drop', 'in', 'tcp', 'dport', String(DROPPED_PORT), 'drop']);
    servers.push(await startByteServer(topo.server, { port: BYTES_PORT }));
    const silent = topo.server.spawn([process.execPath, '-e', SILENT_ORIGIN], { label: 'silent origin' });
    servers.push(silent);
    await silent.waitForLine(/^listening/, 10_000);

    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-ui-truth-'));
    const config = path.join(scratch, 'config.json');
    fs.writeFileSync(config, JSON.stringify({
      proxy: { host: '127.0.0.1', port: PROXY_PORT, dial: 'mptcp' },
      paths: { interfaces: { [eth0]: 'off', [wwan0]: 'use' } },
      // Long enough that neither a pending dial nor an idle tunnel ends within the test by itself.
      timeouts: { connectMs: 120_000, idleMs: 600_000 },
      control: { host: '127.0.0.1', port: CONTROL_PORT, token: `ui-truth-${process.pid}-${Date.now()}` },
    }));
    braid = await startBraid(['up', '--config', config, '--state-dir', path.join(scratch, 'state')], {
      prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000,
    });
    const dashboard = await poll(async () => /dashboard: (http:\/\/\S+#token=\S+)\)/.exec(braid.stdout())?.[1], 10_000, 'braid up printing its dashboard link');
    ui = new UiDriver(topo.client);
    await ui.request('open', { url: dashboard, width: 1600, height: 1000, colorScheme: 'light' });
    await poll(async () => {
      const v = await snap();
      return v.link === 'connected' && v.cards.length >= 2 ? v : undefined;
    }, 10_000, 'dashboard connected with interface cards');
  });

  after(async () => {
    await ui?.quit().catch(() => {});
    await download?.stop();
    await braid?.stop();
    for (const s of servers) await s.stop();
    if (topo) await killAllIn(topo.client);
    await topo?.destroy();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    if (relayDir) fs.rmSync(relayDir, { recursive: true, force: true });
  });

  test('an interface set off carries nothing, even holding the default route', async () => {
    const [eth0, wwan0] = [topo.ifname[1], topo.ifname[2]];
    const eps = await ipEndpoints(topo.client);
    assert.ok(!eps.some((e) => e.address === topo.clientAddress(1)), `eth0 is off, yet has an endpoint: ${JSON.stringify(eps)}`);
    const idle = card(await snap(), eth0)!;
    assert.equal(idle.state, 'off');
    assert.equal(idle.stateText, 'off', 'an idle off interface is plainly off');

    download = topo.client.spawn([
      'curl', '--silent', '--show-error', '--max-time', '120', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`,
      '--output', '/dev/null', `http://${DEST}:${BYTES_PORT}/bytes/4000000000`,
    ], { label: 'curl download' });
    // Braid picks the first subflow by policy: the default route's eth0 is off, so wwan0 carries it all.
    const s = await poll(async () => {
      const v = await snap();
      const row = v.connections.find((c) => c.destination === `${DEST}:${BYTES_PORT}`);
      return (card(v, wwan0)?.down ?? 0) > 0 && row && row.paths.join() === wwan0 ? v : undefined;
    }, 20_000, 'the download running over wwan0');
    await new Promise((r) => setTimeout(r, 1500));
    const later = await snap();
    const e = card(later, eth0)!;
    assert.equal(e.state, 'off', 'the policy shown must stay what it is');
    assert.equal(e.stateText, 'off', 'an off interface carries nothing');
    assert.equal(e.down, 0, `eth0 carries ${e.down} B/s while off`);
    assert.deepEqual(later.connections.find((c) => c.destination === `${DEST}:${BYTES_PORT}`)?.paths, [wwan0]);
    assert.equal(card(s, wwan0)!.stateText, 'in use');
    await shot('off-carries-nothing-1600x1000-light.png');
  });

  test('the chart legend keeps every path after it goes idle', async () => {
    const [eth0, wwan0] = [topo.ifname[1], topo.ifname[2]];
    // Set in use from its card: the running download gets a subflow over it at once.
    assert.equal(await ui.request<string>('selectPolicy', { iface: eth0, value: 'use' }), 'use');
    const during = await poll(async () => {
      const v = await snap();
      return v.legend.filter((l) => l.down > 0).length === 2 ? v : undefined;
    }, 15_000, 'both paths carrying the download once eth0 is in use');
    assert.deepEqual(during.legend.filter((l) => l.down > 0).map((l) => l.path).sort(), [eth0, wwan0].sort());
    download!.child.kill('SIGKILL');   // curl killed mid-download
    await download!.exited;
    const after = await poll(async () => {
      const v = await snap();
      return v.connections.length === 0 && v.legend.every((l) => l.down === 0 && l.up === 0) ? v : undefined;
    }, 10_000, 'the download gone from the table and every legend rate at zero');
    assert.deepEqual(after.legend.map((l) => l.path).sort(), [eth0, wwan0].sort(), 'a path that went idle left the legend');
    assert.equal(card(after, eth0)!.stateText, 'in use');
    await shot('legend-idle-1600x1000-light.png');
  });

  test('clients that give up leave the connections table', async () => {
    const url = (port: number): string => `http://${DEST}:${port}/`;
    const modes: Record<string, string[]> = {
      socks5: ['--socks5-hostname', `127.0.0.1:${PROXY_PORT}`],
      'http forward': ['--proxy', `http://127.0.0.1:${PROXY_PORT}`],
      'http connect': ['--proxytunnel', '--proxy', `http://127.0.0.1:${PROXY_PORT}`],
    };
    const clients = Object.entries(modes).flatMap(([mode, args]) => [SILENT_PORT, DROPPED_PORT].map((port) => ({
      what: `${mode} to ${port === SILENT_PORT ? 'a silent destination' : 'a destination that drops SYNs'}`,
      proc: topo.client.spawn(['curl', '--silent', '--max-time', String(GIVE_UP_S), ...args, '--output', '/dev/null', url(port)], { label: `curl ${mode} :${port}` }),
    })));
    // Every one of them listed while it waits, with where it asked to go (a pending dial included)...
    const waiting = await poll(async () => {
      const v = await snap();
      return v.connections.filter((c) => c.destination).length >= clients.length ? v : undefined;
    }, GIVE_UP_S * 1000, `${clients.length} waiting clients listed`, 100);
    assert.deepEqual(waiting.connections.map((c) => c.destination).sort(),
      [...Array<string>(3).fill(`${DEST}:${SILENT_PORT}`), ...Array<string>(3).fill(`${DEST}:${DROPPED_PORT}`)]);
    await shot('clients-waiting-1600x1000-light.png');
    // ...and gone soon after it gave up (curl exits 28, operation timed out).
    for (const c of clients) assert.equal((await c.proc.exited).code, 28, `${c.what}: curl did not time out`);
    const left = await poll(async () => {
      const v = await snap();
      return v.connections.length === 0 ? v : undefined;
    }, 3000, 'the connections of clients that gave up leaving the table').catch(async (err: Error) => {
      const v = await snap();
      throw new Error(`${err.message}; still listed: ${JSON.stringify(v.connections.map((c) => c.destination))}`);
    });
    assert.deepEqual(left.errors, []);
  });

  test('the relay card names the relay once', async () => {
    relayDir = tempRelayDir();
    const relay = topo.server.spawn([process.execPath, BRAID_CLI, 'relay', '--listen', `[::]:${RELAY_PORT}`, '--dir', relayDir,
      '--metrics', 'off', '--public-host', topo.serverAddress(1)], { label: 'braid relay' });
    servers.push(relay);
    const link = (await relay.waitForLine(/^braid: share link: /, 15_000)).line.slice('braid: share link: '.length).trim();
    assert.doesNotMatch(link, /#/, 'the share link carries a name; this test is about one without');
    const text = await ui.request<string>('importRelayLink', { link });
    const address = `${topo.serverAddress(1)}:${RELAY_PORT}`;
    assert.match(text, new RegExp(address.replace(/\./g, '\\.')));
    assert.equal(text.split(topo.serverAddress(1)).length - 1, 1, `the relay's host shown more than once: '${text}'`);
    await shot('relay-card-1600x1000-light.png');
  });
});
