/**
 * Data caps, path quality and bytes per program in the dashboard, in headless Chromium against
 * `braid up` in a two-link topology (eth0 and wwan0, 20 Mbit/s each, both `use`, each with its own
 * default route), a cap of 5 MB/day on wwan0 and a 20 MB download through curl:
 *
 * - wwan0's card shows a used/cap bar whose numbers are the control API's, full once reached;
 * - a notice names the cap, as the demotion's reason says it;
 * - the cards show a measured RTT while traffic runs; "By program" lists curl on both paths.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { skipUnlessRoot, type NsProcess } from './helpers/netns';
import { missingPrerequisite, startByteServer } from './helpers/multipath-harness';
import { startBraid, type BraidProxy } from './helpers/proc';
import { createUiTopology, killAllIn, missingBrowser, poll, UiDriver, type UiTopology } from './helpers/ui-harness';
import { requireFor } from './helpers/prerequisites';

const skip = requireFor('caps and quality in the dashboard (paths-caps-ui.test.ts)', skipUnlessRoot() ?? missingPrerequisite() ?? missingBrowser());
const PROXY_PORT = 1080;
const CONTROL_PORT = 9797;
const PORT = 8080;
const DEST = '198.51.100.21';
const MB = 1_000_000;
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'paths-caps-ui');

describe('caps and quality in the dashboard', { skip, timeout: 180_000 }, () => {
  let topo: UiTopology;
  let braid: BraidProxy;
  let ui: UiDriver;
  let scratch: string;
  const servers: NsProcess[] = [];
  const token = `caps-ui-${process.pid}-${Date.now()}`;

  const api = async <T>(command: string): Promise<T> => {
    const r = await topo.client.exec(['curl', '-sS', '--max-time', '5', '-H', `Authorization: Bearer ${token}`, '-X', 'POST', '--data', '{}', `http://127.0.0.1:${CONTROL_PORT}/api/${command}`]);
    return (JSON.parse(r.stdout) as { result: T }).result;
  };

  before(async () => {
    topo = await createUiTopology({ rateMbit: 20 });
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(1), 'dev', 'eth0', 'metric', '100']);
    await topo.client.exec(['ip', 'route', 'add', 'default', 'via', topo.serverAddress(2), 'dev', 'wwan0', 'metric', '200']);
    await topo.server.exec(['ip', 'addr', 'add', `${DEST}/32`, 'dev', 'lo']);
    servers.push(await startByteServer(topo.server, { port: PORT }));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'braid-caps-ui-'));
    const config = path.join(scratch, 'config.json');
    fs.writeFileSync(config, JSON.stringify({
      proxy: { host: '127.0.0.1', port: PROXY_PORT },
      paths: { interfaces: { eth0: 'use', wwan0: 'use' }, caps: { wwan0: { bytes: 5 * MB, period: 'day', atCap: 'off' } } },
      control: { host: '127.0.0.1', port: CONTROL_PORT, token },
    }));
    braid = await startBraid(['up', '--config', config, '--state-dir', path.join(scratch, 'state')], { prefix: ['ip', 'netns', 'exec', topo.client.name], timeoutMs: 15_000 });
    const dashboard = await poll(async () => /dashboard: (http:\/\/\S+#token=\S+)\)/.exec(braid.stdout())?.[1], 10_000, 'the dashboard link');
    ui = new UiDriver(topo.client);
    await ui.request('open', { url: dashboard, width: 1400, height: 1400, colorScheme: 'light' });
    await ui.request('waitFor', { expr: `document.querySelectorAll('article[data-interface]').length >= 2` });
  });

  after(async () => {
    await ui?.quit().catch(() => {});
    await braid?.stop();
    for (const s of servers) await s.stop();
    if (topo) await killAllIn(topo.client);
    await topo?.destroy();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('the card shows data used against the cap, a notice names the cap, RTT and programs show', async (t) => {
    const bar0 = await ui.request<{ used: number; cap: number } | null>('waitFor', {
      expr: `(() => { const d = document.querySelector('article[data-interface="wwan0"] dd[data-cap]'); return d ? { used: Number(d.dataset.used), cap: Number(d.dataset.cap) } : null; })()`,
    });
    assert.deepEqual(bar0, { used: 0, cap: 5 * MB }, 'the bar is there before any traffic, empty');
    const p = topo.client.spawn(['curl', '-sS', '--max-time', '60', '--socks5-hostname', `127.0.0.1:${PROXY_PORT}`, '-o', '/dev/null', `http://${DEST}:${PORT}/bytes/${20 * MB}`], { label: 'curl' });
    // While it runs: a measured RTT on the cards.
    const rtt = await ui.request<string>('waitFor', { expr: `document.querySelector('article[data-interface="eth0"] dd[data-quality]')?.dataset.quality || null`, timeoutMs: 15_000 });
    t.diagnostic(`eth0's card while downloading: RTT ${rtt}`);
    assert.match(rtt, /^\d+(\.\d)? (ms|µs)/);
    const { code } = await p.exited;
    assert.equal(code, 0, 'curl failed');
    const notice = await ui.request<string>('waitFor', { expr: `document.querySelector('[data-demoted="wwan0"]')?.textContent || null`, timeoutMs: 10_000 });
    t.diagnostic(`notice: ${notice}`);
    assert.match(notice, /^Data cap: wwan0 reached its cap 5 MB\/day \(off until \d{4}-\d\d-\d\d\)$/);
    // The bar's numbers are the API's (the dashboard polls every 2 s: wait for it to catch up).
    const usage = (await api<{ interfaces: { name: string; used: number }[] }>('paths.usage')).interfaces.find((i) => i.name === 'wwan0')!;
    const bar = await ui.request<{ used: number; full: boolean; text: string }>('waitFor', {
      expr: `(() => { const d = document.querySelector('article[data-interface="wwan0"] dd[data-cap]'); return d && Number(d.dataset.used) === ${usage.used} ? { used: Number(d.dataset.used), full: !!d.querySelector('.bar.full'), text: d.textContent.trim() } : null; })()`,
      timeoutMs: 10_000,
    });
    t.diagnostic(`wwan0's card: ${bar.text}`);
    assert.ok(bar.full, 'the bar shows the cap reached');
    assert.match(bar.text, /of 5\.00 MB\/day$/);
    const programs = await ui.request<string[]>('waitFor', {
      expr: `(() => { const r = document.querySelector('tr[data-program="curl"]'); return r ? [...r.querySelectorAll('[data-path]')].map((e) => e.dataset.path).sort() : null; })()`,
      timeoutMs: 10_000,
    });
    assert.deepEqual(programs, ['eth0', 'wwan0']);
    await ui.request('screenshot', { path: path.join(ARTIFACTS, 'caps-1400x1400-light.png'), fullPage: true });
  });
});
